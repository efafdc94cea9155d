"""Step: patient-level, class-stratified train/val/test split."""

import logging
from typing import Annotated, Any

from zenml import log_metadata, step

from materializers import ImageDatasetMaterializer
from xray.constants import (
    SPLIT_SUMMARY_ARTIFACT,
    TEST_SET_ARTIFACT,
    TRAIN_SET_ARTIFACT,
    VAL_SET_ARTIFACT,
)
from xray.dataset import ImageDataset
from xray.split import split_by_patient

logger = logging.getLogger(__name__)


# One entry per output, in a fixed order: with a single materializer class for all
# outputs, ZenML builds the output mapping in a random order and the cache key changes.
@step(
    output_materializers={
        TRAIN_SET_ARTIFACT: ImageDatasetMaterializer,
        VAL_SET_ARTIFACT: ImageDatasetMaterializer,
        TEST_SET_ARTIFACT: ImageDatasetMaterializer,
    }
)
def split_dataset(
    dataset: ImageDataset,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 42,
    use_official_test: bool = True,
) -> tuple[
    Annotated[ImageDataset, TRAIN_SET_ARTIFACT],
    Annotated[ImageDataset, VAL_SET_ARTIFACT],
    Annotated[ImageDataset, TEST_SET_ARTIFACT],
    Annotated[dict[str, Any], SPLIT_SUMMARY_ARTIFACT],
]:
    """Splits by patient so that no patient is in two splits (asserted).

    Args:
        dataset: The loaded data set.
        val_fraction: Share of each class's images for validation.
        test_fraction: Share for test, when the data has no Kaggle ``test/`` folder (or
            ``use_official_test`` is off).
        seed: Seed of the patient shuffle.
        use_official_test: Keep a Kaggle ``test/`` folder as the test split.

    Returns:
        The train, validation and test sets, and what the split did (counts, the
        settings, whether an official test folder was kept, the files dropped for
        overlapping it, how patients were found).
    """
    splits, info = split_by_patient(
        dataset, val_fraction, test_fraction, seed, use_official_test=use_official_test
    )
    summary = {
        name: {**part.class_counts(), "images": len(part), "patients": part.patient_count()}
        for name, part in splits.items()
    }
    for name, counts in summary.items():
        logger.info("%-5s %s", name, counts)
    for dropped in info["dropped_files"]:
        logger.warning(
            "Dropped %s from train/val: %s (%s)",
            dropped["file"],
            dropped["reason"],
            dropped["test_file"],
        )
    record = {
        "split_counts": summary,
        **info,
        "dropped_files": info["dropped_files"][:500],
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": None if info["official_test_kept"] else test_fraction,
    }
    log_metadata(metadata=record)
    return splits["train"], splits["val"], splits["test"], record
