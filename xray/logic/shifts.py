"""Controlled acquisition shifts: the same X-ray as another scanner, site or export would
give it (exposure, contrast, gamma, blur, sharpening, noise, JPEG quality, crop, borders,
rotation, resolution).

A model that only holds up on images exactly like its training images fails on the next
hospital's. The shift suite (``benchmarks/shift_suite.py``) scores a model on its test
images under each of :data:`SHIFTS`; :func:`shift_image` is also what
``evaluate_model`` uses to report the chosen threshold's sensitivity and specificity under
shift. Pure Pillow and NumPy: no TensorFlow, usable in any step.
"""

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter


@dataclass(frozen=True)
class Shift:
    """One acquisition change.

    Attributes:
        name: Short name (a column of the shift suite's table).
        description: What it imitates, for reports.
        apply: Grayscale ``float32`` pixels (0-255, ``[H, W]``) and a per-image seed in,
            shifted pixels out (same range; size may change).
        jpeg_quality: Re-encode as JPEG at this quality instead of lossless PNG.
    """

    name: str
    description: str
    apply: Callable[[np.ndarray, int], np.ndarray]
    jpeg_quality: int | None = None


def _pil(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8), mode="L")


def _gamma(gamma: float) -> Callable[[np.ndarray, int], np.ndarray]:
    return lambda x, _seed: 255.0 * (x / 255.0) ** gamma


def _contrast(factor: float) -> Callable[[np.ndarray, int], np.ndarray]:
    return lambda x, _seed: (x - x.mean()) * factor + x.mean()


def _exposure(offset: float) -> Callable[[np.ndarray, int], np.ndarray]:
    return lambda x, _seed: x + offset


def _blur(radius_fraction: float) -> Callable[[np.ndarray, int], np.ndarray]:
    def apply(x: np.ndarray, _seed: int) -> np.ndarray:
        radius = radius_fraction * max(x.shape)
        return np.asarray(_pil(x).filter(ImageFilter.GaussianBlur(radius)), np.float32)

    return apply


def _sharpen(x: np.ndarray, _seed: int) -> np.ndarray:
    sharp = _pil(x).filter(ImageFilter.UnsharpMask(radius=max(1, max(x.shape) // 112), percent=150))
    return np.asarray(sharp, np.float32)


def _noise(sigma: float) -> Callable[[np.ndarray, int], np.ndarray]:
    return lambda x, seed: x + np.random.default_rng(seed).normal(0.0, sigma, x.shape)


def _resolution(scale: float) -> Callable[[np.ndarray, int], np.ndarray]:
    def apply(x: np.ndarray, _seed: int) -> np.ndarray:
        h, w = x.shape
        small = _pil(x).resize((max(8, round(w * scale)), max(8, round(h * scale))), Image.BILINEAR)
        return np.asarray(small.resize((w, h), Image.BILINEAR), np.float32)

    return apply


def _zoom(fraction: float) -> Callable[[np.ndarray, int], np.ndarray]:
    def apply(x: np.ndarray, _seed: int) -> np.ndarray:
        h, w = x.shape
        dy, dx = round(h * (1 - fraction) / 2), round(w * (1 - fraction) / 2)
        return x[dy : h - dy, dx : w - dx]

    return apply


def _border(fraction: float) -> Callable[[np.ndarray, int], np.ndarray]:
    def apply(x: np.ndarray, _seed: int) -> np.ndarray:
        h, w = x.shape
        return np.pad(x, ((round(h * fraction),) * 2, (round(w * fraction),) * 2))

    return apply


def _rotate(degrees: float) -> Callable[[np.ndarray, int], np.ndarray]:
    def apply(x: np.ndarray, seed: int) -> np.ndarray:
        angle = degrees if seed % 2 else -degrees
        return np.asarray(_pil(x).rotate(angle, Image.BILINEAR, fillcolor=0), np.float32)

    return apply


def _identity(x: np.ndarray, _seed: int) -> np.ndarray:
    return x


SHIFTS: tuple[Shift, ...] = (
    Shift("none", "the test images as they are (re-encoded losslessly)", _identity),
    Shift("brighter", "exposure +30 grey levels", _exposure(30.0)),
    Shift("darker", "exposure -30 grey levels", _exposure(-30.0)),
    Shift("low_contrast", "contrast x0.7 around the mean", _contrast(0.7)),
    Shift("high_contrast", "contrast x1.3 around the mean", _contrast(1.3)),
    Shift("gamma_0.7", "gamma 0.7 (brighter mid-tones)", _gamma(0.7)),
    Shift("gamma_1.4", "gamma 1.4 (darker mid-tones)", _gamma(1.4)),
    Shift("blur", "Gaussian blur, radius 0.5 % of the side", _blur(0.005)),
    Shift("blur_strong", "Gaussian blur, radius 1 % of the side", _blur(0.01)),
    Shift("sharpen", "unsharp mask (150 %)", _sharpen),
    Shift("noise", "Gaussian noise, sigma 8 grey levels", _noise(8.0)),
    Shift("jpeg_q20", "JPEG re-encoded at quality 20", _identity, jpeg_quality=20),
    Shift("low_resolution", "down to 40 % of the side and back up", _resolution(0.4)),
    Shift("zoom_in", "central 85 % crop (tighter collimation)", _zoom(0.85)),
    Shift("borders", "10 % black border on each side (wider field)", _border(0.10)),
    Shift("rotation", "rotated by 7 degrees, alternating direction", _rotate(7.0)),
)
"""The shift suite, in report order; ``none`` is the reference."""

SHIFT_NAMES: tuple[str, ...] = tuple(s.name for s in SHIFTS)


def get_shift(name: str) -> Shift:
    """The shift called ``name``.

    Raises:
        ValueError: For an unknown name (the message lists the known ones).
    """
    for shift in SHIFTS:
        if shift.name == name:
            return shift
    raise ValueError(f"Unknown shift {name!r}; choose from {', '.join(SHIFT_NAMES)}.")


def shift_image(data: bytes, shift: Shift, seed: int = 0) -> bytes:
    """Applies one shift to an encoded image.

    The image is read as 8-bit grayscale (chest X-rays are; an RGB copy has three equal
    channels), shifted, clipped to 0-255 and encoded as PNG, or as JPEG for a
    JPEG-quality shift.

    Args:
        data: Encoded image bytes (anything Pillow reads).
        shift: The shift to apply.
        seed: Per-image seed of random shifts (noise; the rotation's direction).

    Returns:
        The shifted image, encoded.
    """
    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image.convert("L"), np.float32)
    shifted = _pil(shift.apply(pixels, seed))
    buffer = io.BytesIO()
    if shift.jpeg_quality is not None:
        shifted.save(buffer, format="JPEG", quality=shift.jpeg_quality)
    else:
        shifted.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def shift_images(images: list[bytes], shift: Shift) -> list[bytes]:
    """:func:`shift_image` over a list, image ``i`` seeded with ``i``."""
    return [shift_image(data, shift, seed=i) for i, data in enumerate(images)]


def shifted_predictions(
    images: list[bytes],
    predict: Callable[[list[bytes]], np.ndarray],
    names: tuple[str, ...] = SHIFT_NAMES,
) -> dict[str, np.ndarray]:
    """P(PNEUMONIA) of every image under each named shift (``predict`` scores a list)."""
    return {name: predict(shift_images(images, get_shift(name))) for name in names}


def operating_points(
    labels: np.ndarray, predictions: dict[str, np.ndarray], threshold: float
) -> dict[str, dict[str, float]]:
    """Sensitivity, specificity and ROC-AUC at ``threshold`` under each shift, plus the
    mean and the worst over the shifts (``none`` excluded) as ``mean``/``worst`` rows.

    Args:
        labels: Class per image (1 = PNEUMONIA).
        predictions: Per shift name, P(PNEUMONIA) of the same images.
        threshold: The operating threshold.

    Returns:
        ``{shift: {"sensitivity", "specificity", "roc_auc"}, ..., "mean": ..., "worst": ...}``.
    """
    from xray.logic.metrics import classification_metrics

    keys = ("sensitivity", "specificity", "roc_auc")
    points = {}
    for name, p in predictions.items():
        metrics = classification_metrics(labels, p, threshold)
        points[name] = {k: float(metrics[k]) for k in keys}
    shifted = [v for k, v in points.items() if k != "none"]
    if shifted:
        points["mean"] = {k: float(np.mean([v[k] for v in shifted])) for k in keys}
        points["worst"] = {k: float(np.min([v[k] for v in shifted])) for k in keys}
    return points


def balanced_sample(labels: np.ndarray, limit: int, seed: int = 0) -> list[int]:
    """At most ``limit`` indices, each class keeping its share, seeded; all when fewer."""
    labels = np.asarray(labels)
    if len(labels) <= limit:
        return list(range(len(labels)))
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        take = max(1, round(limit * len(members) / len(labels)))
        chosen += rng.choice(members, size=min(take, len(members)), replace=False).tolist()
    return sorted(chosen)
