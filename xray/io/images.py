"""The one decode of an image file, shared by training, batch inference and the service.

:func:`decode_image` turns the bytes of a JPEG, PNG or DICOM file into RGB ``uint8``
pixels, or refuses them with an :class:`ImageError` whose message a person can act on
(non-images, truncated files, tiny images, decompression bombs, multi-frame DICOM, ...).
Everything that reads images calls it: :func:`xray.ml.preprocessing.prepare_image` (the
model input), :func:`xray.io.image_stats.image_statistics` (drift statistics) and the file
checks of the loaders and the service. So a file is read the same way everywhere.

What decoding does beyond reading the pixels:

- EXIF orientation is applied (a phone photo of a film is upright, as a viewer shows it).
- CMYK, palette, gray+alpha and RGBA become RGB (alpha is dropped).
- 16-bit images (PNG ``I;16``, DICOM with more than 8 stored bits) are **windowed**: with
  the DICOM VOI LUT or window centre/width when the file has one, else from the lowest
  to the highest value present. Scaling by the type's range would turn 12-bit detector
  data nearly black.
- DICOM: rescale slope/intercept (modality LUT), then the window, then MONOCHROME1 is
  inverted so that bone is bright as in every other format. Compressed transfer syntaxes
  are read by pydicom's pixel-data plugins (JPEG baseline/extended through Pillow, JPEG
  2000 and RLE through pylibjpeg, JPEG lossless and JPEG-LS through GDCM).

**No DICOM tag value leaves this module**: the only thing taken from the header besides
the pixel description is PatientID, and only as a salted hash (:func:`patient_key`).
Error messages never quote a tag value, and pydicom's own warnings (which can quote
one) are silenced while reading.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps

ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "DICOM"})
MIN_SIDE = 32
"""Smallest accepted width or height in pixels."""
MAX_PIXELS = 60_000_000
"""Largest accepted width x height (about 7,700 x 7,700); larger files are refused before
they are decoded, so that a crafted header cannot exhaust memory."""
PATIENT_SALT_ENV = "XRAY_PATIENT_ID_SALT"
"""Environment variable holding the salt of :func:`patient_key` (set it in production)."""
_DEFAULT_SALT = "xray-zenml-patient-id-v1"


class ImageError(ValueError):
    """A file that is not a usable image; the message says why."""


@dataclass(frozen=True)
class ImageInfo:
    """What decoding an image told us about it (never a DICOM tag value)."""

    format: str
    width: int
    height: int
    mode: str
    bit_depth: int = 8
    patient: str | None = None
    """Salted hash of the DICOM PatientID (``dcm-...``), None for other files."""


@dataclass(frozen=True)
class DecodedImage:
    """Pixels of one file as the model and the statistics see them."""

    pixels: np.ndarray
    """``[height, width, 3]`` uint8, RGB."""
    info: ImageInfo
    gray: np.ndarray | None = None
    """``[height, width]`` uint8 when the image is single-channel (most X-rays): the one
    channel ``pixels`` repeats three times, so grayscale work need not convert back."""


def is_dicom(data: bytes) -> bool:
    """True for a DICOM Part 10 file (``DICM`` after the 128-byte preamble)."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def patient_key(patient_id: str) -> str:
    """A stable pseudonym for a DICOM PatientID: ``dcm-`` + 16 hex digits of a salted SHA-256.

    The salt comes from ``XRAY_PATIENT_ID_SALT``. Set it to a secret value in production
    (the default is public, and short identifiers can be guessed from an unsalted hash).
    """
    salt = os.environ.get(PATIENT_SALT_ENV) or _DEFAULT_SALT
    digest = hashlib.sha256(f"{salt}\x00{patient_id.strip()}".encode()).hexdigest()
    return f"dcm-{digest[:16]}"


def window(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Maps ``[low, high]`` linearly onto 0..255 (clipped), as uint8."""
    values = np.asarray(values, dtype=np.float64)
    if high <= low:
        return np.where(values > low, 255, 0).astype(np.uint8)
    scaled = (values - low) / (high - low) * 255.0
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def _full_range(values: np.ndarray) -> np.ndarray:
    """Window from the lowest to the highest value present (no window in the file)."""
    return window(values, float(values.min()), float(values.max()))


def _to_rgb(gray_or_rgb: np.ndarray) -> np.ndarray:
    if gray_or_rgb.ndim == 2:
        return np.repeat(gray_or_rgb[:, :, None], 3, axis=2)
    return np.ascontiguousarray(gray_or_rgb[:, :, :3])


def _decoded(pixels: np.ndarray, info: ImageInfo) -> DecodedImage:
    gray = np.ascontiguousarray(pixels) if pixels.ndim == 2 else None
    return DecodedImage(_to_rgb(pixels), info, gray)


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageError(
            f"image is {width}x{height} = {width * height:,} pixels, more than the "
            f"{max_pixels:,} accepted; downscale it first"
        )
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"image is {width}x{height}; both sides must be at least {MIN_SIDE} px")


def _bit_depth(mode: str) -> int:
    """Bits per sample of a Pillow mode."""
    if mode == "1":
        return 1
    if mode.startswith("I;16") or mode == "I":
        return 16
    return 8


def _decode_pillow(data: bytes, max_pixels: int, draft: int | None) -> DecodedImage:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(data))
        image_format = image.format or "unknown"
        if image_format not in ACCEPTED_FORMATS:
            raise ImageError(f"unsupported image format {image_format} (use JPEG, PNG or DICOM)")
        width, height = image.size
        _check_size(width, height, max_pixels)
        mode = image.mode
        if draft and image_format == "JPEG":
            image.draft("RGB", (draft, draft))  # decode at a reduced DCT scale
        image.load()
        image = ImageOps.exif_transpose(image)
        if mode.startswith("I") or mode == "F":
            pixels = _full_range(np.asarray(image))
        elif mode in ("RGB", "L"):
            pixels = np.asarray(image)
        else:  # CMYK, YCbCr, LAB, HSV, P, PA, LA, RGBA, RGBa, La, 1
            target = "L" if mode in ("1", "LA", "La") else "RGB"
            pixels = np.asarray(image.convert(target))
        info = ImageInfo(image_format, width, height, mode, _bit_depth(mode))
        return _decoded(pixels, info)


def _pydicom() -> Any:
    """pydicom, imported on first use, with its read-time warnings off (they can quote
    tag values such as a malformed birth date)."""
    import pydicom
    from pydicom import config

    config.settings.reading_validation_mode = config.IGNORE
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    return pydicom


def _first(value: Any) -> float:
    """A window value, which DICOM allows to be multi-valued: the first one counts."""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def _decode_dicom(data: bytes, max_pixels: int) -> DecodedImage:
    pydicom = _pydicom()
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
        except Exception as exc:  # noqa: BLE001 - the message could quote a tag value
            raise ImageError(
                f"not a readable DICOM file ({type(exc).__name__} while parsing the header)"
            ) from None
        if "PixelData" not in ds:
            raise ImageError("DICOM file without pixel data (no image to classify)")
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if frames > 1:
            raise ImageError(
                f"multi-frame DICOM ({frames} frames); send one frame per file "
                "(a single radiograph)"
            )
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        _check_size(cols, rows, max_pixels)
        meta = getattr(ds, "file_meta", None)
        syntax = meta.get("TransferSyntaxUID") if meta is not None else None
        syntax_name = getattr(syntax, "name", None) or "unknown transfer syntax"
        try:
            stored = ds.pixel_array
        except Exception as exc:  # noqa: BLE001
            detail = " ".join(str(exc).split())[:300]
            hint = (
                "; 12-bit JPEG Extended needs the optional plugin pylibjpeg-libjpeg "
                "(GPL-3.0), installed into this environment (see the README)"
                if "JPEG Extended" in syntax_name
                else ""
            )
            raise ImageError(
                f"cannot decode the DICOM pixel data ({syntax_name}): "
                f"{type(exc).__name__}: {detail}{hint}"
            ) from None
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
        bits_stored = int(ds.get("BitsStored", 8) or 8)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        if photometric == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            stored, samples = apply_color_lut(stored, ds), 3
            bits_stored = 16 if np.asarray(stored).dtype.itemsize > 1 else 8
        if samples == 1:
            values = apply_modality_lut(stored, ds)
            if "VOILUTSequence" in ds:
                pixels = _full_range(apply_voi_lut(values, ds, prefer_lut=True))
            elif "WindowCenter" in ds and "WindowWidth" in ds:
                center, width = _first(ds.WindowCenter), max(_first(ds.WindowWidth), 1.0)
                # DICOM PS3.3 C.11.2.1.2.1, linear: [c - 0.5 - (w-1)/2, c - 0.5 + (w-1)/2]
                low = center - 0.5 - (width - 1) / 2
                pixels = window(values, low, low + width - 1)
            elif bits_stored <= 8 and values.min() >= 0 and values.max() <= 255:
                pixels = np.asarray(values).astype(np.uint8)  # 8-bit data: as stored
            else:
                pixels = _full_range(values)
            if photometric == "MONOCHROME1":
                pixels = 255 - pixels
            mode = photometric
        else:
            rgb = np.asarray(stored)
            pixels = rgb.astype(np.uint8) if bits_stored <= 8 else _full_range(rgb)
            mode = "RGB"
        patient_id = str(ds.get("PatientID", "") or "").strip()
    info = ImageInfo(
        "DICOM",
        cols,
        rows,
        mode,
        bits_stored,
        patient_key(patient_id) if patient_id else None,
    )
    return _decoded(np.asarray(pixels), info)


def decode_image(
    data: bytes, max_pixels: int = MAX_PIXELS, draft: int | None = None
) -> DecodedImage:
    """Decodes a JPEG, PNG or DICOM file to RGB uint8 pixels (see the module docstring).

    Args:
        data: The file content.
        max_pixels: Refuse images with more pixels than this without decoding them.
        draft: A JPEG may be decoded at a reduced DCT scale (1/2, 1/4 or 1/8), keeping
            both sides at least this long: what is resized to a smaller side afterwards
            anyway (the model input, the statistics) need not be decoded in full.

    Returns:
        The pixels ``[H, W, 3]`` uint8 and what the file told about itself.

    Raises:
        ImageError: With a human-readable reason if the bytes are empty, not a JPEG, PNG
            or single-frame DICOM, truncated or corrupt, smaller than ``MIN_SIDE`` or
            larger than ``max_pixels``.
    """
    if not data:
        raise ImageError("empty file (0 bytes)")
    if is_dicom(data):
        return _decode_dicom(data, max_pixels)
    try:
        return _decode_pillow(data, max_pixels, draft)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"refused as a decompression bomb: {exc}") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageError("not an image (cannot identify the file as JPEG, PNG or DICOM)") from exc
    except (OSError, SyntaxError, ValueError, TypeError) as exc:
        raise ImageError(f"corrupt or truncated image: {exc}") from exc


def inspect_image(data: bytes, max_pixels: int = MAX_PIXELS) -> ImageInfo:
    """Fully decodes ``data`` (:func:`decode_image`) and returns what it told about itself.

    Raises:
        ImageError: As :func:`decode_image`.
    """
    return decode_image(data, max_pixels).info


def encode_png(pixels: np.ndarray) -> bytes:
    """Lossless PNG of decoded pixels (gray when the three channels agree).

    Used to keep DICOM pixels in data sets and artifacts without the DICOM header, so no
    tag value is ever stored.
    """
    image = np.asarray(pixels, dtype=np.uint8)
    if (
        image.ndim == 3
        and np.array_equal(image[:, :, 0], image[:, :, 1])
        and np.array_equal(image[:, :, 1], image[:, :, 2])
    ):
        image = image[:, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
