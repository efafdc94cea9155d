import numpy as np
import pytest

from synthetic import encode, synthetic_pixels
from xray.io.images import decode_image
from xray.ml.preprocessing import make_dataset, prepare_image

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [("JPEG", "L"), ("JPEG", "RGB"), ("PNG", "L"), ("PNG", "RGBA"), ("PNG", "I;16"), ("PNG", "P")],
)
def test_decodes_every_accepted_variant_to_rgb_uint8(fmt: str, mode: str) -> None:
    pixels = synthetic_pixels(1, 50, RNG)
    image = decode_image(encode(pixels, fmt, mode)).pixels
    assert image.shape == (50, 50, 3) and image.dtype == np.uint8
    if fmt == "PNG" and mode == "L":
        assert np.array_equal(image[..., 0], pixels)  # lossless
    if mode == "I;16":  # windowed from the lowest to the highest value present
        low, high = int(pixels.min()), int(pixels.max())
        expected = np.round((pixels.astype(float) - low) / (high - low) * 255)
        assert np.abs(image[..., 0] - expected).max() <= 1


def test_prepare_image_resizes_to_square() -> None:
    data = encode(synthetic_pixels(0, 90, RNG))
    out = prepare_image(data, 48)
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


def test_make_dataset_runs_without_autotuning() -> None:
    """tf.data's autotune thread made destroying an iterator wait up to its sleep (about
    18 s, every third training epoch on 2 cores; issue #18): the pipeline has fixed
    settings instead, for training and for validation."""
    images = [encode(synthetic_pixels(i % 2, 40, RNG)) for i in range(3)]
    for labels in (np.array([0, 1, 0]), None):
        ds = make_dataset(images, labels, 32, batch_size=2, shuffle=labels is not None)
        assert ds.options().autotune.enabled is False


def _large_jpeg(side: int = 1400, mode: str = "L") -> bytes:
    """A smooth X-ray-like image at the originals' size (the Kaggle originals are
    400-2,900 px): large enough for a reduced-scale JPEG decode."""
    from PIL import Image

    small = synthetic_pixels(1, 96, np.random.default_rng(1))
    image = Image.fromarray(small).resize((side, side - 200), Image.Resampling.BICUBIC)
    return encode(np.asarray(image), "JPEG", mode)


def test_a_large_jpeg_is_decoded_once_at_a_reduced_scale_for_the_model() -> None:
    """Resizing at decode (JPEG DCT scaling) gives nearly the input a full decode and a
    resize give, and the statistics come from that same decode, unchanged."""
    from xray.io.image_stats import decoded_statistics, image_statistics
    from xray.ml.preprocessing import decode_for_model, draft_side, resize_pixels

    data = _large_jpeg()
    decoded = decode_for_model(data, 224)
    assert draft_side(224) <= min(decoded.pixels.shape[:2]) < 1200 / 2  # 1/4 scale, not full
    assert decoded.info.width == 1400  # what the file says, not the decoded size
    full = resize_pixels(decode_image(data).pixels, 224).astype(int)
    assert np.abs(prepare_image(data, 224).astype(int) - full).mean() < 1.0
    assert decoded_statistics(decoded, data) == image_statistics(data)  # one decode serves both
    assert draft_side(384) == 384  # a larger model input is decoded at least that large


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_gray_and_colour_files_of_one_image_give_one_model_input(mode: str) -> None:
    """A grayscale image is resized on its one channel; the result equals resizing the
    three equal channels of its RGB form."""
    from xray.io.images import decode_image
    from xray.ml.preprocessing import resize_pixels

    pixels = synthetic_pixels(0, 90, RNG)
    decoded = decode_image(encode(pixels, "PNG", mode))
    assert (decoded.gray is not None) == (mode == "L")
    assert np.array_equal(resize_pixels(decoded, 40), resize_pixels(decoded.pixels, 40))
