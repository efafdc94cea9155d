"""Intensity statistics of a grayscale image (pure NumPy: the service imports this)."""

import numpy as np

NEAR_BLACK = 10
NEAR_WHITE = 245


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
    x = gray.astype(np.float32)
    laplacian = x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:] - 4.0 * x[1:-1, 1:-1]
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
