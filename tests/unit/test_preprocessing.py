import numpy as np
import pytest

from synthetic import encode, synthetic_pixels
from xray.ml.preprocessing import decode_pixels, make_dataset, prepare_image

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [("JPEG", "L"), ("JPEG", "RGB"), ("PNG", "L"), ("PNG", "RGBA"), ("PNG", "I;16"), ("PNG", "P")],
)
def test_decodes_every_accepted_variant_to_rgb_uint8(fmt: str, mode: str) -> None:
    pixels = synthetic_pixels(1, 50, RNG)
    image = decode_pixels(encode(pixels, fmt, mode))
    assert image.shape == (50, 50, 3) and image.dtype == np.uint8
    if fmt == "PNG" and mode == "L":
        assert np.array_equal(image[..., 0], pixels)  # lossless
    if mode == "I;16":  # windowed from the lowest to the highest value present
        low, high = int(pixels.min()), int(pixels.max())
        expected = np.round((pixels.astype(float) - low) / (high - low) * 255)
        assert np.abs(image[..., 0] - expected).max() <= 1


def test_prepare_image_resizes_to_square() -> None:
    data = encode(synthetic_pixels(0, 90, RNG))
    out = prepare_image(data, 48).numpy()
    assert out.shape == (48, 48, 3) and out.dtype == np.uint8


def test_make_dataset_batches_and_labels() -> None:
    images = [encode(synthetic_pixels(i % 2, 40 + i, RNG)) for i in range(5)]
    ds = make_dataset(images, np.array([0, 1, 0, 1, 0]), 32, batch_size=2)
    batches = list(ds)
    assert [b[0].shape[0] for b in batches] == [2, 2, 1]
    assert batches[0][0].dtype.name == "uint8"
    assert np.concatenate([b[1].numpy() for b in batches]).tolist() == [0, 1, 0, 1, 0]
    unlabelled = list(make_dataset(images, None, 32, batch_size=5))
    assert unlabelled[0].shape == (5, 32, 32, 3)
