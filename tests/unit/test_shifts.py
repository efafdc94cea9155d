"""The acquisition shifts of the shift suite."""

import io

import numpy as np
import pytest
from PIL import Image

from synthetic import encode, synthetic_pixels
from xray.logic.shifts import SHIFT_NAMES, SHIFTS, get_shift, shift_image, shift_images


def _gray(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"), np.float64)


@pytest.fixture(scope="module")
def image() -> bytes:
    return encode(synthetic_pixels(1, 120, np.random.default_rng(0)), "PNG")


def test_every_shift_gives_a_readable_changed_image(image: bytes) -> None:
    original = _gray(image)
    assert SHIFT_NAMES[0] == "none" and len(set(SHIFT_NAMES)) == len(SHIFTS)
    for shift in SHIFTS:
        out = _gray(shift_image(image, shift, seed=1))
        assert out.min() >= 0 and out.max() <= 255
        if shift.name == "none":
            np.testing.assert_array_equal(out, original)
        elif out.shape == original.shape:
            assert np.abs(out - original).mean() > 0.5, shift.name
    assert _gray(shift_image(image, get_shift("zoom_in"))).shape == (102, 102)
    assert _gray(shift_image(image, get_shift("borders"))).shape == (144, 144)


def test_shifts_move_the_statistics_they_name(image: bytes) -> None:
    original = _gray(image)

    def laplacian_variance(x: np.ndarray) -> float:
        lap = x[1:-1, :-2] + x[1:-1, 2:] + x[:-2, 1:-1] + x[2:, 1:-1] - 4 * x[1:-1, 1:-1]
        return float(lap.var())

    assert _gray(shift_image(image, get_shift("brighter"))).mean() > original.mean() + 20
    assert _gray(shift_image(image, get_shift("darker"))).mean() < original.mean() - 20
    assert _gray(shift_image(image, get_shift("low_contrast"))).std() < original.std()
    sharpness = laplacian_variance(original)
    assert laplacian_variance(_gray(shift_image(image, get_shift("blur")))) < sharpness
    assert laplacian_variance(_gray(shift_image(image, get_shift("sharpen")))) > sharpness


def test_random_shifts_are_seeded(image: bytes) -> None:
    noise = get_shift("noise")
    assert shift_image(image, noise, seed=3) == shift_image(image, noise, seed=3)
    assert shift_image(image, noise, seed=3) != shift_image(image, noise, seed=4)
    assert shift_images([image, image], noise) == [
        shift_image(image, noise, 0),
        shift_image(image, noise, 1),
    ]


def test_unknown_shift_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="choose from none, brighter"):
        get_shift("fog")


def test_balanced_sample_keeps_class_shares() -> None:
    from xray.logic.shifts import balanced_sample

    labels = np.array([0] * 300 + [1] * 900)
    picked = balanced_sample(labels, 400)
    assert len(picked) == 400 and len(set(picked)) == 400
    assert (labels[picked] == 0).sum() == 100
    assert balanced_sample(labels, 400) == picked
    assert balanced_sample(labels[:50], 400) == list(range(50))
