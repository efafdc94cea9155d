"""`bentoml serve` as a subprocess on 127.0.0.1: good and bad images, health, contract."""

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from conftest import bento_server

from synthetic import encode, synthetic_pixels
from xray.integrations.packaging import CORE_DISTRIBUTION, build_bento, save_to_model_store
from xray.ml.model import KerasModelFile, build_model, with_temperature
from xray.ml.training import predict_probabilities

PROJECT_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration
SIZE = 48
THRESHOLD = 0.37


@pytest.fixture(scope="module")
def model_and_tag() -> tuple:
    model = build_model(backbone="compact_cnn", image_size=SIZE, weights=None, seed=3).model
    tag = save_to_model_store(
        KerasModelFile.from_model(model),
        metadata={
            "threshold": THRESHOLD,
            "image_size": SIZE,
            "class_names": ["NORMAL", "PNEUMONIA"],
        },
        labels={"zenml_model_version": "42"},
    )
    return model, tag


@pytest.fixture(scope="module")
def server(model_and_tag: tuple) -> Iterator[str]:
    env = {**os.environ, "XRAY_MODEL_TAG": model_and_tag[1], "XRAY_MAX_UPLOAD_MB": "2"}
    with bento_server(env) as url:
        yield url


def _post(url: str, data: bytes, name: str = "image.png", field: str = "image") -> httpx.Response:
    return httpx.post(f"{url}/predict", files={field: (name, data)}, timeout=60)


@pytest.mark.parametrize(
    ("mode", "fmt", "size"),
    [
        ("L", "JPEG", 64),
        ("RGB", "JPEG", 64),
        ("RGBA", "PNG", 70),
        ("I;16", "PNG", 64),
        ("L", "JPEG", 1200),
    ],
)
def test_good_images_are_classified_with_the_evaluation_threshold(
    server: str, mode: str, fmt: str, size: int
) -> None:
    data = encode(synthetic_pixels(1, size, np.random.default_rng(size)), fmt, mode)
    response = _post(server, data, f"x.{fmt.lower()}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "label",
        "probability",
        "threshold",
        "model_version",
        "disclaimer",
        "inference_id",
    }
    assert response.headers["x-inference-id"] == body["inference_id"]
    assert body["threshold"] == pytest.approx(THRESHOLD) and body["model_version"] == "42"
    assert body["label"] == ("PNEUMONIA" if body["probability"] >= THRESHOLD else "NORMAL")
    assert response.headers["x-disclaimer"].startswith("Not a medical device")


def test_service_agrees_with_training_time_prediction(server: str, model_and_tag: tuple) -> None:
    """The contract: the same file gives the same probability in both paths (1e-5)."""
    files = [
        encode(synthetic_pixels(i % 2, 90 + 7 * i, np.random.default_rng(i))) for i in range(4)
    ]
    offline = predict_probabilities(model_and_tag[0], files, SIZE)
    served = [_post(server, f, "x.jpeg").json()["probability"] for f in files]
    np.testing.assert_allclose(served, offline, atol=1e-5)


def _bomb() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_bad_input_gets_a_4xx_and_the_server_stays_healthy(server: str) -> None:
    good = encode(synthetic_pixels(0, 64, np.random.default_rng(0)))
    cases = {
        "empty file": _post(server, b""),
        "text file": _post(server, b"just text", "notes.txt"),
        "text named .png": _post(server, b"I am not a PNG", "fake.png"),
        "truncated JPEG": _post(server, good[: len(good) // 2], "cut.jpeg"),
        "zero-size image": _post(server, encode(np.zeros((1, 1), np.uint8), "PNG")),
        "decompression bomb": _post(server, _bomb()),
        "too large": _post(server, b"\xff" * (3 * 2**20), "big.jpeg"),
        "wrong field": _post(server, good, "x.jpeg", field="file"),
        "empty body": httpx.post(f"{server}/predict", timeout=30),
    }
    for name, response in cases.items():
        assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
        assert "error" in response.json(), name
    assert cases["too large"].status_code == 413
    assert "decompression bomb" in cases["decompression bomb"].json()["error"]
    assert httpx.get(f"{server}/readyz", timeout=5).status_code == 200
    assert httpx.get(f"{server}/livez", timeout=5).status_code == 200
    assert _post(server, good, "x.jpeg").status_code == 200


def test_batch_and_explain(server: str) -> None:
    images = [encode(synthetic_pixels(i % 2, 64, np.random.default_rng(i))) for i in range(3)]
    response = httpx.post(
        f"{server}/predict_batch",
        files=[("images", (f"{i}.jpeg", d)) for i, d in enumerate(images)],
        timeout=60,
    )
    assert response.status_code == 200, response.text
    singles = [_post(server, d, "x.jpeg").json()["probability"] for d in images]
    np.testing.assert_allclose([r["probability"] for r in response.json()], singles, atol=1e-5)
    explained = httpx.post(f"{server}/explain", files={"image": ("x.jpeg", images[0])}, timeout=60)
    assert explained.status_code == 200 and explained.headers["content-type"] == "image/png"
    assert explained.content.startswith(b"\x89PNG")
    assert float(explained.headers["x-probability"]) == pytest.approx(singles[0], abs=1e-5)


def test_bento_contains_only_what_the_service_needs(model_and_tag: tuple) -> None:
    import bentoml

    tag = build_bento(model_and_tag[1])
    bento = bentoml.get(tag)
    src = Path(bento.path) / "src"
    files = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}
    assert files == {"service.py", "bentofile.yaml", "model_tag.txt"}
    # the core is one wheel holding every module of xray/, nothing chosen by hand
    (wheel,) = (Path(bento.path) / "env" / "python" / "wheels").glob(f"{CORE_DISTRIBUTION}-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        record = next(n for n in names if n.endswith(".dist-info/RECORD"))
        recorded = {line.split(",")[0] for line in archive.read(record).decode().splitlines()}
    core = {
        f"xray/{p.relative_to(PROJECT_ROOT / 'xray').as_posix()}"
        for p in (PROJECT_ROOT / "xray").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert "xray/ml/model.py" in core and "xray/logic/settings.py" in core
    assert {n for n in names if n.startswith("xray/") and n.endswith(".py")} == core
    assert recorded == names  # a valid wheel: every file is in RECORD
    info = yaml.safe_load((Path(bento.path) / "bento.yaml").read_text())
    assert (src / "model_tag.txt").read_text().strip() == model_and_tag[1]
    served = {m["tag"] for service in info["services"] for m in service["models"]}
    assert served == {model_and_tag[1]}
    assert info["entry_service"] == "PneumoniaClassifier"
    requirements = (Path(bento.path) / "env" / "python" / "requirements.txt").read_text()
    assert "tensorflow==" in requirements and "bentoml==" in requirements
    assert "sqlalchemy==" in requirements and "pg8000==" in requirements  # the prediction log


# Runs inside the Bento's own files: ``python -S`` (no site hooks, so the project's
# editable install is invisible) with the Bento's src/ first and the bare site-packages.
_IN_BENTO = """
import io, json, sys
import numpy as np
from PIL import Image
import service
import xray
assert xray.__file__.startswith(sys.argv[1]) and ".whl" in xray.__file__, xray.__file__
from xray.ml.gradcam import gradcam
from xray.ml.model import load_model, model_temperature
from xray.ml.serving import decode_upload
import bentoml
model = load_model(bentoml.models.get(service.MODEL_TAG).path_of("model.keras"))
buffer = io.BytesIO()
Image.fromarray(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)).save(buffer, "PNG")
pixels = decode_upload(buffer.getvalue(), 48)
heatmap, probability = gradcam(model, pixels)
print(json.dumps({"temperature": model_temperature(model), "probability": float(probability),
                  "p": float(model(pixels[None], training=False).numpy().ravel()[0])}))
"""


def test_built_bento_runs_a_calibrated_model_without_the_project(tmp_path: Path) -> None:
    """What `bentoml containerize` ships must load and run on its own files: a module the
    service reaches only at call time (the temperature layer's) must be inside."""
    import bentoml
    from PIL import Image

    from xray.ml.serving import decode_upload

    model = with_temperature(
        build_model(backbone="compact_cnn", image_size=SIZE, weights=None, seed=5).model, 0.66
    )
    tag = save_to_model_store(
        KerasModelFile.from_model(model),
        metadata={"threshold": 0.5, "image_size": SIZE, "class_names": ["NORMAL", "PNEUMONIA"]},
        labels={"zenml_model_version": "7"},
    )
    bento = Path(bentoml.get(build_bento(tag)).path)
    src = bento / "src"
    site_packages = sysconfig.get_paths()["purelib"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), site_packages])}
    env.pop("XRAY_MODEL_TAG", None)  # the Bento's model_tag.txt decides
    result = subprocess.run(
        [sys.executable, "-S", "-c", _IN_BENTO, str(bento)],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["temperature"] == pytest.approx(0.66)
    png = tmp_path / "x.png"
    Image.fromarray(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)).save(png)
    expected = float(model(decode_upload(png.read_bytes(), SIZE)[None], training=False)[0, 0])
    assert answer["p"] == pytest.approx(expected, abs=1e-5)
    assert answer["probability"] == pytest.approx(expected, abs=1e-5)
