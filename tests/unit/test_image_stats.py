import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from synthetic import encode, synthetic_pixels
from xray.io.image_stats import (
    DRIFT_COLUMNS,
    ID_COLUMNS,
    image_statistics,
    pixel_statistics,
    statistics_table,
)
from xray.io.loading import load_images


def test_pixel_statistics_on_known_images() -> None:
    flat = pixel_statistics(np.full((64, 64), 100, np.uint8))
    assert flat["mean"] == 100 and flat["std"] == 0 and flat["entropy"] == 0
    assert flat["sharpness"] == 0 and flat["p5"] == flat["p95"] == 100
    half = np.zeros((64, 64), np.uint8)
    half[:, 32:] = 255
    stats = pixel_statistics(half)
    assert stats["mean"] == pytest.approx(127.5)
    assert stats["frac_black"] == pytest.approx(0.5) and stats["frac_white"] == pytest.approx(0.5)
    assert stats["entropy"] == pytest.approx(1.0)
    assert stats["p5"] == 0 and stats["p95"] == 255 and stats["sharpness"] > 0


def test_file_facts_and_16_bit_windowing() -> None:
    # 12-bit detector data in a 16-bit PNG: a horizontal ramp 0..4095. Scaled by the
    # type's range it would be nearly black (mean 8); windowed it spans 0..255.
    wide = np.tile(np.linspace(0, 4095, 60).astype(np.uint16), (40, 1))
    buffer = io.BytesIO()
    Image.fromarray(wide).save(buffer, format="PNG")
    stats = image_statistics(buffer.getvalue())
    assert (stats["width"], stats["height"], stats["bit_depth"]) == (60, 40, 16)
    assert stats["aspect_ratio"] == pytest.approx(1.5)
    assert stats["mean"] == pytest.approx(127.5, abs=3)
    assert stats["p5"] < 20 and stats["p95"] > 235
    rgba = encode(synthetic_pixels(0, 50, np.random.default_rng(0)), "PNG", "RGBA")
    facts = image_statistics(rgba)
    assert facts["mode"] == "RGBA" and facts["channels"] == 4
    assert facts["file_size"] == len(rgba) and len(facts["sha256"]) == 64


def test_statistics_respond_to_darkening_and_blur() -> None:
    pixels = synthetic_pixels(1, 128, np.random.default_rng(1))
    base = image_statistics(encode(pixels, "PNG"))
    dark = image_statistics(encode((pixels * 0.4).astype(np.uint8), "PNG"))
    blurred_image = Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(3))
    blurred = image_statistics(encode(np.asarray(blurred_image), "PNG"))
    assert dark["mean"] < base["mean"] * 0.5 and dark["p95"] < base["p5"] + 60
    assert blurred["sharpness"] < base["sharpness"] * 0.2
    assert blurred["mean"] == pytest.approx(base["mean"], abs=2)


def test_statistics_table(kaggle_tree) -> None:
    ds = load_images(str(kaggle_tree), min_images=10)
    parts = {o: ds.subset(i for i, x in enumerate(ds.origins) if x == o) for o in ("train", "test")}
    table = statistics_table(parts)
    assert len(table) == len(parts["train"]) + len(parts["test"])
    assert set(ID_COLUMNS) | set(DRIFT_COLUMNS) <= set(table.columns)
    assert set(table["split"]) == {"train", "test"} and set(table["label"]) == {
        "NORMAL",
        "PNEUMONIA",
    }
    assert table[list(DRIFT_COLUMNS)].notna().all().all()


def test_sharpness_is_the_laplacian_variance_exactly() -> None:
    """Integer arithmetic (the fast path) gives the float Laplacian's variance exactly."""
    gray = np.random.default_rng(7).integers(0, 256, (64, 80), dtype=np.uint8)
    x = gray.astype(np.float64)
    laplacian = x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:] - 4 * x[1:-1, 1:-1]
    assert pixel_statistics(gray)["sharpness"] == pytest.approx(laplacian.var(), rel=1e-6)
