"""`bentoml serve` of a model with an input guard: refusals, DICOM, and a hostile corpus
that must get no 5xx and leave the server live."""

import http.server
import io
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import bento_server
from PIL import Image, ImageDraw

from synthetic import encode, encode_dicom, synthetic_pixels
from xray.integrations.packaging import save_to_model_store
from xray.ml.guard import features_and_embeddings, fit_guard
from xray.ml.model import KerasModelFile, build_model
from xray.ml.preprocessing import prepare_image

pytestmark = pytest.mark.integration
SIZE = 48


def _xrays(n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [encode(synthetic_pixels(i % 2, 64, rng)) for i in range(n)]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    import keras

    keras.utils.set_random_seed(3)  # the weights, whatever other tests drew before
    model = build_model(backbone="compact_cnn", image_size=SIZE, weights=None, seed=3).model

    def prepared(files: list[bytes]) -> list[np.ndarray]:
        return [np.stack([prepare_image(f, SIZE) for f in files])]

    train = features_and_embeddings(model, prepared(_xrays(120, 1)))
    val = features_and_embeddings(model, prepared(_xrays(120, 2)))
    guard = fit_guard(train[0], train[1], val[0], val[1], target_acceptance=0.99)
    tag = save_to_model_store(
        KerasModelFile.from_model(model),
        metadata={"threshold": 0.5, "image_size": SIZE},
        labels={"zenml_model_version": "9"},
        guard=guard.to_dict(),
    )
    env = {
        **os.environ,
        "XRAY_MODEL_TAG": tag,
        "XRAY_MAX_UPLOAD_MB": "2",
        "XRAY_MAX_BATCH_FILES": "4",
    }
    with bento_server(env) as url:
        yield url


def _post(url: str, data: bytes, name: str = "x.png", route: str = "predict") -> httpx.Response:
    return httpx.post(f"{url}/{route}", files={"image": (name, data)}, timeout=60)


def _photo() -> bytes:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return path.read_bytes()


def _text_image() -> bytes:
    image = Image.new("RGB", (300, 200), "white")
    draw = ImageDraw.Draw(image)
    for row in range(8):
        draw.text((10, 10 + 22 * row), "Quarterly report: revenue up 4 %", fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_in_distribution_images_are_answered_and_marked_accepted(server: str) -> None:
    answers = [_post(server, f, "x.jpeg").json() for f in _xrays(6, 7)]
    assert sum(a.get("accepted") is True for a in answers) >= 5, answers
    accepted = next(a for a in answers if a.get("accepted"))
    assert accepted["label"] in ("NORMAL", "PNEUMONIA") and "disclaimer" in accepted


@pytest.mark.parametrize("kind", ["photo", "text", "noise"])
def test_what_is_not_a_chest_xray_is_refused_with_422_and_no_label(server: str, kind: str) -> None:
    data = {
        "photo": _photo(),
        "text": _text_image(),
        "noise": encode(
            np.random.default_rng(0).integers(0, 256, (96, 96, 3), np.uint8), "PNG", "RGB"
        ),
    }[kind]
    response = _post(server, data)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["accepted"] is False and "not a chest X-ray" in body["error"]
    assert "label" not in body and "probability" not in body


def test_dicom_is_answered_like_the_same_image_as_png(server: str) -> None:
    # The pixels of an in-distribution JPEG, so that the guard accepts all three files.
    pixels = np.asarray(Image.open(io.BytesIO(_xrays(1, 7)[0])))
    png = _post(server, encode(pixels, "PNG")).json()
    dicom = _post(server, encode_dicom(pixels, bits=12, window=(2047.5, 4096)), "x.dcm").json()
    mono1 = _post(server, encode_dicom(pixels, photometric="MONOCHROME1"), "x.dcm").json()
    assert abs(dicom["probability"] - png["probability"]) <= 0.01
    assert abs(mono1["probability"] - png["probability"]) <= 0.01
    text = json.dumps([png, dicom, mono1])
    for value in ("Testpatient", "Wilhelmina", "19230417", "MRN-0042", "dcm-"):
        assert value not in text
    multi = _post(server, encode_dicom(pixels, frames=2), "x.dcm")
    assert multi.status_code == 400 and "multi-frame" in multi.json()["error"]


def test_batch_marks_refused_items_and_caps_the_file_count(server: str) -> None:
    good = _xrays(1, 7)[0]
    response = httpx.post(
        f"{server}/predict_batch",
        files=[("images", ("a.jpeg", good)), ("images", ("b.jpg", _photo()))],
        timeout=60,
    )
    assert response.status_code == 200, response.text
    first, second = response.json()
    assert "label" in first
    assert second["accepted"] is False and "label" not in second and "images[1]" in second["error"]
    too_many = httpx.post(
        f"{server}/predict_batch", files=[("images", ("a.jpeg", good))] * 5, timeout=60
    )
    assert too_many.status_code == 413 and "at most 4" in too_many.json()["error"]


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        type(self).hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(_xrays(1, 7)[0])

    def log_message(self, *args: object) -> None:
        pass


def test_urls_in_form_fields_or_bodies_are_never_fetched(server: str) -> None:
    recorder = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{recorder.server_address[1]}/image.jpeg"
    try:
        as_field = httpx.post(f"{server}/predict", data={"image": url}, timeout=30)
        as_body = httpx.post(
            f"{server}/predict",
            content=url.encode(),
            headers={"content-type": "application/json"},
            timeout=30,
        )
    finally:
        recorder.shutdown()
    assert 400 <= as_field.status_code < 500, as_field.text
    assert 400 <= as_body.status_code < 500, as_body.text
    assert _Recorder.hits == []


def test_chunked_upload_over_the_limit_is_refused_while_streaming(server: str) -> None:
    """3 MB of a chunked body (no Content-Length), then the client stops sending without
    ending the body: only a server that counts while it reads can answer now."""
    import socket

    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
        )
        head = b"--b\r\nContent-Disposition: form-data; name=image; filename=x.png\r\n\r\n"
        sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        chunk = b"\0" * 65536
        for _ in range(48):  # 3 MB; the limit is 2 MB
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert httpx.get(f"{server}/livez", timeout=10).status_code == 200


def _hostile_corpus() -> dict[str, tuple[str, bytes]]:
    from pydicom.data import get_testdata_file

    good = _xrays(1, 7)[0]
    rng = np.random.default_rng(5)
    cmyk = io.BytesIO()
    Image.fromarray(synthetic_pixels(0, 64, rng)).convert("CMYK").save(cmyk, format="JPEG")
    formats = {}
    for fmt in ("GIF", "BMP", "TIFF", "WEBP", "ICO"):
        buffer = io.BytesIO()
        Image.fromarray(synthetic_pixels(0, 64, rng)).save(buffer, format=fmt)
        formats[fmt] = buffer.getvalue()
    huge_dicom = encode_dicom(synthetic_pixels(0, 64, rng)).replace(
        b"\x28\x00\x10\x00US\x02\x00\x40\x00", b"\x28\x00\x10\x00US\x02\x00\xff\xff"
    )
    wide16 = io.BytesIO()
    Image.fromarray((rng.integers(0, 4096, (64, 64))).astype(np.uint16)).save(wide16, "PNG")
    return {
        "random bytes": ("x.jpeg", rng.bytes(5000)),
        "png header then garbage": ("x.png", b"\x89PNG\r\n\x1a\n" + rng.bytes(3000)),
        "jpeg header then garbage": ("x.jpg", b"\xff\xd8\xff\xe0" + rng.bytes(3000)),
        "truncated jpeg": ("x.jpg", good[: len(good) // 3]),
        "svg": ("x.svg", b"<svg xmlns='http://www.w3.org/2000/svg'><rect/></svg>"),
        "pdf": ("x.pdf", b"%PDF-1.4\n" + rng.bytes(500)),
        "zip": ("x.zip", b"PK\x03\x04" + rng.bytes(500)),
        **{f"{fmt} image": (f"x.{fmt.lower()}", data) for fmt, data in formats.items()},
        "cmyk jpeg": ("x.jpg", cmyk.getvalue()),
        "12-bit png": ("x.png", wide16.getvalue()),
        "1x4000 png": ("x.png", encode(np.zeros((1, 4000), np.uint8), "PNG")),
        "dicom truncated": ("x.dcm", encode_dicom(synthetic_pixels(0, 64, rng))[:-900]),
        "dicom multi-frame": ("x.dcm", encode_dicom(synthetic_pixels(0, 64, rng), frames=3)),
        "dicom without pixels": ("x.dcm", Path(get_testdata_file("rtplan.dcm")).read_bytes()),
        "dicom lying about its size": ("x.dcm", huge_dicom),
        "dicom ct slice": ("x.dcm", Path(get_testdata_file("CT_small.dcm")).read_bytes()),
        "dicom preamble only": ("x.dcm", b"\0" * 128 + b"DICM"),
        "traversal name": ("../../../etc/passwd", good),
        "unicode name": ("röntgen 胸部.jpeg", good),
    }


def test_hostile_corpus_gets_no_5xx_and_the_server_stays_live(server: str) -> None:
    statuses = {}
    for name, (filename, data) in _hostile_corpus().items():
        for route in ("predict", "explain"):
            response = _post(server, data, filename, route)
            statuses[f"{name} /{route}"] = response.status_code
    odd_requests = {
        "json body": httpx.post(f"{server}/predict", json={"image": 3}, timeout=30),
        "no body": httpx.post(f"{server}/predict", timeout=30),
        "form without file": httpx.post(f"{server}/predict", data={"x": "1"}, timeout=30),
        "empty batch": httpx.post(f"{server}/predict_batch", data={"x": "1"}, timeout=30),
        "get on predict": httpx.get(f"{server}/predict", timeout=30),
    }
    statuses.update({k: r.status_code for k, r in odd_requests.items()})
    server_errors = {k: s for k, s in statuses.items() if s >= 500}
    assert not server_errors, server_errors
    assert httpx.get(f"{server}/livez", timeout=10).status_code == 200
    assert _post(server, _xrays(1, 7)[0], "x.jpeg").status_code in (200, 422)


def test_decoding_a_large_image_does_not_stall_other_requests(server: str) -> None:
    """Decodes run in threads: while large uploads are decoded, /livez answers at once."""
    import concurrent.futures
    import time

    rng = np.random.default_rng(9)
    big = np.repeat(rng.integers(0, 256, (7000, 1), np.uint8), 7000, axis=1)  # 49 MP
    data = encode(big, "PNG")
    assert len(data) < 2 * 2**20  # under the server's upload limit
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        uploads = [pool.submit(_post, server, data) for _ in range(3)]
        time.sleep(0.3)
        latencies = []
        while not all(u.done() for u in uploads) and len(latencies) < 20:
            start = time.perf_counter()
            assert httpx.get(f"{server}/livez", timeout=30).status_code == 200
            latencies.append(time.perf_counter() - start)
            time.sleep(0.05)
        statuses = [u.result().status_code for u in uploads]
    assert all(s in (200, 422) for s in statuses), statuses
    assert latencies and sorted(latencies)[len(latencies) // 2] < 0.5, latencies
