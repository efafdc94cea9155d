"""Step: one row of image statistics per image, for Evidently to judge."""

import time
from typing import Annotated

import pandas as pd
from zenml import log_metadata, step

from materializers import PngFigureMaterializer
from xray.io.image_stats import statistics_table
from xray.logic.constants import DATA_OVERVIEW_ARTIFACT, IMAGE_STATISTICS_ARTIFACT
from xray.logic.dataset import ImageDataset
from xray.reporting.plots import PngFigure, data_overview_figure


@step(output_materializers={DATA_OVERVIEW_ARTIFACT: PngFigureMaterializer})
def compute_image_statistics(
    train_set: ImageDataset, val_set: ImageDataset, test_set: ImageDataset
) -> tuple[
    Annotated[pd.DataFrame, IMAGE_STATISTICS_ARTIFACT],
    Annotated[PngFigure, DATA_OVERVIEW_ARTIFACT],
]:
    """Computes size, intensity, entropy and sharpness statistics for every image.

    Args:
        train_set: Training images.
        val_set: Validation images.
        test_set: Test images.

    Returns:
        The statistics table (see :mod:`xray.io.image_stats`; the training rows are the
        drift reference for this model), and an overview figure: images and patients
        per class and split, and a few training images per class with their patients.
    """
    start = time.perf_counter()
    table = statistics_table({"train": train_set, "val": val_set, "test": test_set})
    log_metadata(metadata={"rows": len(table), "seconds": round(time.perf_counter() - start, 2)})
    splits = {"train": train_set, "val": val_set, "test": test_set}
    overview = PngFigure(
        data_overview_figure(splits), "Class counts per split and sample training images"
    )
    return table, overview
