"""Step: one row of image statistics per image, for Evidently to judge."""

import time
from typing import Annotated

import pandas as pd
from zenml import log_metadata, step

from xray.constants import IMAGE_STATISTICS_ARTIFACT
from xray.dataset import ImageDataset
from xray.image_stats import statistics_table


@step
def compute_image_statistics(
    train_set: ImageDataset, val_set: ImageDataset, test_set: ImageDataset
) -> Annotated[pd.DataFrame, IMAGE_STATISTICS_ARTIFACT]:
    """Computes size, intensity, entropy and sharpness statistics for every image.

    Args:
        train_set: Training images.
        val_set: Validation images.
        test_set: Test images.

    Returns:
        The statistics table (see :mod:`xray.image_stats`); the training rows are the
        drift reference for this model.
    """
    start = time.perf_counter()
    table = statistics_table({"train": train_set, "val": val_set, "test": test_set})
    log_metadata(metadata={"rows": len(table), "seconds": round(time.perf_counter() - start, 2)})
    return table
