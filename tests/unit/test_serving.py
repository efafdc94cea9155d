import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from synthetic import encode, synthetic_pixels
from xray.ml.gradcam import gradcam, overlay_png
from xray.ml.model import build_model
from xray.ml.serving import DISCLAIMER, RequestError, answer, decode_upload


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 100))
        + chunk(b"IEND", b"")
    )


GOOD = encode(synthetic_pixels(1, 64, np.random.default_rng(0)))


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"", 400, "empty file"),
        (b"hello, I am text", 400, "not an image"),
        (GOOD[: len(GOOD) // 2], 400, "truncated"),
        (_png_header(20000, 20000), 400, "decompression bomb"),
        (encode(np.zeros((16, 16), np.uint8), "PNG"), 400, "at least 32 px"),
        (b"\xff" * (2 * 2**20), 413, "limit is 1 MB"),
    ],
    ids=["empty", "text", "truncated", "bomb", "tiny", "too-large"],
)
def test_bad_uploads_are_refused_with_a_reason(data: bytes, status: int, words: str) -> None:
    with pytest.raises(RequestError) as error:
        decode_upload(data, 48, "image", max_bytes=2**20)
    assert error.value.status == status and words in error.value.message
    assert error.value.body()["disclaimer"] == DISCLAIMER


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "I;16"])
def test_accepted_uploads_become_model_input(mode: str) -> None:
    data = encode(synthetic_pixels(0, 80, np.random.default_rng(1)), "PNG", mode)
    pixels = decode_upload(data, 48)
    assert pixels.shape == (48, 48, 3) and pixels.dtype == np.uint8


def test_answer_applies_the_evaluation_threshold() -> None:
    assert answer(0.3, 0.25, "7")["label"] == "PNEUMONIA"  # above 0.25, below 0.5
    low = answer(0.2, 0.25, "7")
    assert low["label"] == "NORMAL" and low["threshold"] == 0.25 and low["model_version"] == "7"
    assert "not a medical device" in low["disclaimer"]


def test_gradcam_matches_the_prediction_and_renders() -> None:
    model = build_model(backbone="compact_cnn", image_size=64, weights=None).model
    image = decode_upload(GOOD, 64)
    heatmap, probability = gradcam(model, image)
    assert heatmap.ndim == 2 and heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    expected = float(model.predict(image[None], verbose=0)[0, 0])
    assert probability == pytest.approx(expected, abs=1e-5)
    png = overlay_png(image, heatmap)
    assert Image.open(io.BytesIO(png)).size == (64, 64)


def test_guard_mode_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from xray.ml.serving import guard_mode

    monkeypatch.delenv("XRAY_GUARD_MODE", raising=False)
    assert guard_mode() == "refuse"
    monkeypatch.setenv("XRAY_GUARD_MODE", "Flag")
    assert guard_mode() == "flag"
    monkeypatch.setenv("XRAY_GUARD_MODE", "sometimes")
    with pytest.raises(ValueError, match="XRAY_GUARD_MODE='sometimes'.*refuse, flag, off"):
        guard_mode()


def test_decode_upload_reads_dicom_and_refuses_multi_frame() -> None:
    from synthetic import encode_dicom
    from xray.ml.serving import decode_upload

    pixels = synthetic_pixels(0, 64, np.random.default_rng(4))
    assert decode_upload(encode_dicom(pixels), 48).shape == (48, 48, 3)
    with pytest.raises(RequestError) as error:
        decode_upload(encode_dicom(pixels, frames=2), 48, "images[3]")
    assert error.value.status == 400 and "images[3]" in error.value.message
    assert "multi-frame" in error.value.message


def test_the_forward_batcher_shares_passes_and_returns_each_request_its_rows() -> None:
    """Concurrent requests share forward passes (at most max_batch images each); every
    request gets exactly its own rows; a failing pass fails the requests in it only; a
    full queue is refused (the service answers 503)."""
    import asyncio
    import threading

    from xray.ml.serving import ForwardBatcher, Overloaded

    passes: list[int] = []
    gate = threading.Event()

    def forward(images: np.ndarray) -> np.ndarray:
        gate.wait(5)  # the first pass holds until every request is queued
        passes.append(len(images))
        if (images == 99).any():
            raise ValueError("a bad batch")
        return images.reshape(len(images), -1)[:, :1].astype(float) * 2

    batcher = ForwardBatcher(forward, max_batch=4, max_queue=9)

    async def scenario() -> None:
        requests = [np.full((n, 2, 2, 3), i, np.uint8) for i, n in enumerate([1, 2, 1, 3, 1])]
        tasks = [asyncio.create_task(batcher(r)) for r in requests]
        await asyncio.sleep(0.05)
        # the first pass took 4 images (1 + 2 + 1) and holds; 4 wait, 6 more would be 10 > 9
        with pytest.raises(Overloaded):
            await batcher(np.zeros((6, 2, 2, 3), np.uint8))
        gate.set()
        answers = await asyncio.gather(*tasks)
        for i, (request, rows) in enumerate(zip(requests, answers, strict=True)):
            assert rows.shape == (len(request), 1) and (rows == 2 * i).all()
        assert passes == [4, 4]  # five requests, two shared passes of at most max_batch
        bad, good = np.full((1, 2, 2, 3), 99, np.uint8), np.full((1, 2, 2, 3), 5, np.uint8)
        with pytest.raises(ValueError, match="a bad batch"):
            await batcher(bad)
        assert (await batcher(good) == 10).all()  # the batcher outlives a failed pass

    asyncio.run(scenario())
    passes.clear()
    gate.clear()
    asyncio.run(scenario())  # the same batcher on a new event loop (each asyncio.run)
