import io

import numpy as np
import pytest
from PIL import Image

from synthetic import encode, synthetic_pixels
from xray.ml.model import build_model, with_temperature
from xray.reporting.error_analysis import gradcam_examples


@pytest.fixture(scope="module")
def data() -> tuple[list[bytes], np.ndarray, list[str]]:
    rng = np.random.default_rng(0)
    labels = np.array([0] * 5 + [1] * 4)
    images = [encode(synthetic_pixels(int(label), 80, rng)) for label in labels]
    paths = [f"IM-{i:04d}-0001.jpeg" for i in range(5)]
    paths += [f"person{i}_virus_{i}.jpeg" for i in range(4)]
    return images, labels, paths


def test_gradcam_examples_is_a_png_grid(data: tuple[list[bytes], np.ndarray, list[str]]) -> None:
    images, labels, paths = data
    model = with_temperature(
        build_model(backbone="compact_cnn", image_size=64, weights=None).model, 1.5
    )
    png = gradcam_examples(model, images, labels, paths, per_class=3)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) < 1_500_000
    width, height = Image.open(io.BytesIO(png)).size
    assert width > height > 100
    assert gradcam_examples(model, images, labels, paths, per_class=3) == png  # same picks
    # A class without images still renders; the image size can be set.
    only_normal = gradcam_examples(model, images[:5], labels[:5], paths[:5], image_size=48)
    assert only_normal.startswith(b"\x89PNG")


def test_gradcam_examples_checks_inputs(data: tuple[list[bytes], np.ndarray, list[str]]) -> None:
    images, labels, paths = data
    model = build_model(backbone="compact_cnn", image_size=32, weights=None).model
    with pytest.raises(ValueError, match="one label and path per image"):
        gradcam_examples(model, images, labels[:3], paths)
    with pytest.raises(ValueError, match="per_class"):
        gradcam_examples(model, images, labels, paths, per_class=0)
