"""Data validation cost on the full Kaggle train split: statistics + both reports.

Target (issue #3): image statistics, the quality report and the drift report together
under 60 s on 2 cores for the 5,216 images. For comparison, the same statistics are also
computed the straightforward way in the same run: full-resolution decode, single thread,
NumPy percentiles.

usage: python benchmarks/validation.py [DATA_DIR]
"""

import argparse
import io
import time
from pathlib import Path

import numpy as np
from common import SHARED_TRAIN, save


def naive_statistics(images: list[bytes]) -> float:
    from PIL import Image

    start = time.perf_counter()
    for data in images:
        gray = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float64)
        np.percentile(gray, [5, 50, 95])
        gray.mean(), gray.std()
        hist = np.bincount(gray.astype(np.uint8).ravel(), minlength=256) / gray.size
        -(hist[hist > 0] * np.log2(hist[hist > 0])).sum()
        np.var(
            gray[:-2, 1:-1]
            + gray[2:, 1:-1]
            + gray[1:-1, :-2]
            + gray[1:-1, 2:]
            - 4 * gray[1:-1, 1:-1]
        )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=SHARED_TRAIN)
    args = parser.parse_args()

    from xray.integrations.validation import (
        DriftGateConfig,
        QualityGateConfig,
        drift_report,
        quality_report,
    )
    from xray.io.image_stats import statistics_table
    from xray.io.loading import load_images
    from xray.logic.split import split_by_patient

    dataset = load_images(str(args.data))
    splits, _ = split_by_patient(dataset, 0.2, 0.2, seed=42)
    start = time.perf_counter()
    table = statistics_table(splits)
    stats_s = time.perf_counter() - start
    start = time.perf_counter()
    quality, quality_html = quality_report(table, dataset.skipped, QualityGateConfig())
    quality_s = time.perf_counter() - start
    start = time.perf_counter()
    drift, drift_html = drift_report(table, DriftGateConfig())
    drift_s = time.perf_counter() - start
    total = stats_s + quality_s + drift_s
    naive_s = naive_statistics(dataset.images)
    save(
        "validation",
        {
            "images": len(table),
            "statistics_s": round(stats_s, 2),
            "quality_report_s": round(quality_s, 2),
            "drift_report_s": round(drift_s, 2),
            "total_s": round(total, 2),
            "target_s": 60,
            "fraction_of_target": round(total / 60, 3),
            "naive_statistics_s": round(naive_s, 2),
            "ratio_naive_vs_ours_statistics": round(naive_s / stats_s, 1),
            "quality_passed": quality.passed,
            "drift_passed": drift.passed,
            "drift_share": drift.details["drift_share"],
            "quality_html_mb": round(len(quality_html) / 1e6, 2),
            "drift_html_mb": round(len(drift_html) / 1e6, 2),
        },
    )


if __name__ == "__main__":
    main()
