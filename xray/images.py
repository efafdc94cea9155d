"""Checks that a file is an image the pipeline and the service can use (Pillow only).

Decoding for the model happens in :mod:`xray.preprocessing` (TensorFlow); this module
catches what would break it or the run first: non-images, truncated files, images too
small to classify and decompression bombs, each with a reason a person can act on.
"""

import io
import warnings
from dataclasses import dataclass

from PIL import Image

ACCEPTED_FORMATS = frozenset({"JPEG", "PNG"})
MIN_SIDE = 32
"""Smallest accepted width or height in pixels."""
MAX_PIXELS = 60_000_000
"""Largest accepted width x height (about 7,700 x 7,700); larger files are refused before
they are decoded, so that a crafted header cannot exhaust memory."""


class ImageError(ValueError):
    """A file that is not a usable image; the message says why."""


@dataclass(frozen=True)
class ImageInfo:
    """What decoding an image told us about it."""

    format: str
    width: int
    height: int
    mode: str


def inspect_image(data: bytes, max_pixels: int = MAX_PIXELS) -> ImageInfo:
    """Fully decodes ``data`` with Pillow and returns its format, size and mode.

    Args:
        data: The encoded file content.
        max_pixels: Refuse images with more pixels than this without decoding them.

    Returns:
        The image's format, width, height and mode.

    Raises:
        ImageError: With a human-readable reason if the bytes are empty, not a JPEG or
            PNG, truncated or corrupt, smaller than ``MIN_SIDE`` or larger than
            ``max_pixels``.
    """
    if not data:
        raise ImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image_format = image.format or "unknown"
            if image_format not in ACCEPTED_FORMATS:
                raise ImageError(f"unsupported image format {image_format} (use JPEG or PNG)")
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"image is {width}x{height} = {width * height:,} pixels, more than the "
                    f"{max_pixels:,} accepted; downscale it first"
                )
            if min(width, height) < MIN_SIDE:
                raise ImageError(
                    f"image is {width}x{height}; both sides must be at least {MIN_SIDE} px"
                )
            image.load()
            return ImageInfo(format=image_format, width=width, height=height, mode=image.mode)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"refused as a decompression bomb: {exc}") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageError("not an image (cannot identify the file as JPEG or PNG)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"corrupt or truncated image: {exc}") from exc
