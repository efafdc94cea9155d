"""Request checks and answers of the prediction service (no BentoML imports: unit-testable)."""

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from xray.constants import CLASS_NAMES
from xray.images import MAX_PIXELS, ImageError, inspect_image

DISCLAIMER = (
    "Research demonstration, not a medical device: this output is not a diagnosis and "
    "must not be used for clinical decisions."
)
DEFAULT_MAX_UPLOAD_MB = 20


def max_upload_bytes() -> int:
    """Largest accepted upload, from ``XRAY_MAX_UPLOAD_MB`` (default 20 MB)."""
    return int(float(os.environ.get("XRAY_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB)) * 2**20)


@dataclass
class RequestError(Exception):
    """A request the service refuses, with the HTTP status and a message for the caller."""

    status: int
    message: str

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "disclaimer": DISCLAIMER}


def check_upload(data: bytes, name: str = "image", max_bytes: int | None = None) -> None:
    """Refuses empty, oversized, non-image, truncated, tiny or bomb uploads.

    Raises:
        RequestError: 413 for a file over the size limit, 400 for anything else unusable.
    """
    limit = max_bytes if max_bytes is not None else max_upload_bytes()
    if len(data) > limit:
        raise RequestError(
            413, f"'{name}' is {len(data) / 2**20:.1f} MB; the limit is {limit / 2**20:.0f} MB"
        )
    try:
        inspect_image(data, max_pixels=MAX_PIXELS)
    except ImageError as exc:
        raise RequestError(400, f"'{name}' cannot be used: {exc}") from None


def prepare_upload(data: bytes, image_size: int) -> np.ndarray:
    """The model input for one upload: the shared preprocessing, ``[S, S, 3]`` uint8."""
    from xray.preprocessing import prepare_image

    return prepare_image(data, image_size).numpy()


def answer(probability: float, threshold: float, model_version: str) -> dict[str, Any]:
    """The JSON answer for one image: label at the evaluation threshold, not 0.5."""
    return {
        "label": CLASS_NAMES[1] if probability >= threshold else CLASS_NAMES[0],
        "probability": float(probability),
        "threshold": float(threshold),
        "model_version": model_version,
        "disclaimer": DISCLAIMER,
    }
