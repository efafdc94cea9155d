"""Per-image statistics: the table that Evidently judges instead of pixels.

Intensity statistics are computed on the image as the model sees it: decoded by the shared
decode (16-bit and DICOM windowed), converted to 8-bit grayscale and resized to
``ANALYSIS_SIZE`` squared (aspect ratio not kept), so they compare across data sets of
different native resolutions. Width, height, mode, bit depth and file size describe the
file as stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from xray.io.images import DecodedImage, decode_image
from xray.logic.constants import CLASS_NAMES
from xray.logic.dataset import ImageDataset
from xray.logic.settings import DRIFT_COLUMNS

if TYPE_CHECKING:  # the service computes statistics without pandas
    import pandas as pd

ANALYSIS_SIZE = 256
NEAR_BLACK = 10
NEAR_WHITE = 245

CATEGORICAL_COLUMNS: tuple[str, ...] = ("mode", "channels", "bit_depth", "label")
ID_COLUMNS: tuple[str, ...] = ("path", "split", "patient", "sha256")


def _grayscale_uint8(decoded: DecodedImage) -> np.ndarray:
    """Decoded pixels as 8-bit grayscale at ``ANALYSIS_SIZE`` squared (a grayscale
    image's own channel: Pillow's RGB-to-L of three equal channels is that channel)."""
    if decoded.gray is not None:
        image = Image.fromarray(decoded.gray)
    else:
        image = Image.fromarray(decoded.pixels).convert("L")
    resized = image.resize((ANALYSIS_SIZE, ANALYSIS_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def _channels(mode: str) -> int:
    try:
        return int(Image.getmodebands(mode))
    except (KeyError, ValueError):  # DICOM MONOCHROME1/2 (a DICOM in colour says RGB)
        return 1


def pixel_statistics(gray: np.ndarray) -> dict[str, float]:
    """Intensity statistics of an 8-bit grayscale image.

    Mean, standard deviation and percentiles come from the 256-bin histogram (exact for
    integer pixels); entropy is in bits; sharpness is the variance of the 4-neighbour
    Laplacian; ``frac_black``/``frac_white`` are the shares of pixels <= 10 / >= 245.
    """
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    p = hist / total
    levels = np.arange(256, dtype=np.float64)
    mean = float((p * levels).sum())
    std = float(np.sqrt(max((p * (levels - mean) ** 2).sum(), 0.0)))
    cdf = np.cumsum(p)

    def percentile(q: float) -> float:
        return float(np.searchsorted(cdf, q / 100.0 - 1e-12))

    nonzero = p[p > 0]
    x = gray.astype(np.int16)  # exact: the Laplacian of 8-bit pixels lies in [-1020, 1020]
    laplacian = (
        x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:] - 4 * x[1:-1, 1:-1]
    ).astype(np.float32)
    return {
        "mean": mean,
        "std": std,
        "p5": percentile(5),
        "p50": percentile(50),
        "p95": percentile(95),
        "entropy": float(-(nonzero * np.log2(nonzero)).sum()),
        "sharpness": float(laplacian.var()),
        "frac_black": float(hist[: NEAR_BLACK + 1].sum() / total),
        "frac_white": float(hist[NEAR_WHITE:].sum() / total),
    }


def image_statistics(data: bytes) -> dict[str, float | int | str]:
    """All statistics of one encoded image (see the module docstring).

    Args:
        data: A JPEG, PNG or DICOM file, read with the shared decode
            (:func:`xray.io.images.decode_image`; JPEGs at a reduced scale, faster).

    Returns:
        File facts (width, height, aspect_ratio, mode, channels, bit_depth, file_size,
        sha256) and pixel statistics (:func:`pixel_statistics`).
    """
    return decoded_statistics(decode_image(data, draft=ANALYSIS_SIZE), data)


def decoded_statistics(decoded: DecodedImage, data: bytes) -> dict[str, float | int | str]:
    """:func:`image_statistics` of a file already decoded with ``draft=ANALYSIS_SIZE``
    (or at full size when it is not a JPEG), so that a caller that also needs the
    pixels decodes once (:func:`xray.ml.preprocessing.decode_for_model`).

    Args:
        decoded: ``decode_image(data, draft=ANALYSIS_SIZE)``, or any decode of ``data``
            whose JPEG draft side is ``ANALYSIS_SIZE``.
        data: The file's bytes (its size and hash).
    """
    info = decoded.info
    facts: dict[str, float | int | str] = {
        "width": info.width,
        "height": info.height,
        "aspect_ratio": info.width / info.height,
        "mode": info.mode,
        "channels": _channels(info.mode),
        "bit_depth": info.bit_depth,
        "file_size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    facts.update(pixel_statistics(_grayscale_uint8(decoded)))
    return facts


def statistics_table(splits: Mapping[str, ImageDataset], workers: int = 4) -> pd.DataFrame:
    """One row of statistics per image, with its split, class name, patient and path.

    Args:
        splits: Split name -> data set (e.g. ``{"train": ..., "val": ..., "test": ...}``,
            or ``{"new": ...}`` for data to score).
        workers: Threads (Pillow decodes without holding the GIL).

    Returns:
        A DataFrame with :data:`ID_COLUMNS`, :data:`CATEGORICAL_COLUMNS` and
        :data:`DRIFT_COLUMNS`.
    """
    import pandas as pd

    rows: list[dict[str, float | int | str]] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for split, part in splits.items():
            stats = pool.map(image_statistics, part.images)
            for i, row in enumerate(stats):
                row.update(
                    path=part.paths[i],
                    split=split,
                    patient=part.patients[i],
                    label=CLASS_NAMES[int(part.labels[i])],
                )
                rows.append(row)
    columns = [*ID_COLUMNS, *CATEGORICAL_COLUMNS, *DRIFT_COLUMNS]
    return pd.DataFrame(rows, columns=columns)
