"""Step: patient-level, class-stratified train/val/test split."""

import logging
from typing import Annotated

from zenml import log_metadata, step

from materializers import ImageDatasetMaterializer
from xray.logic.constants import (
    SPLIT_SUMMARY_ARTIFACT,
    TEST_SET_ARTIFACT,
    TRAIN_SET_ARTIFACT,
    VAL_SET_ARTIFACT,
)
from xray.logic.dataset import ImageDataset
from xray.logic.records import SplitSummary
from xray.logic.settings import SplitSettings
from xray.logic.split import split_by_patient

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
    config: SplitSettings | None = None,
) -> tuple[
    Annotated[ImageDataset, TRAIN_SET_ARTIFACT],
    Annotated[ImageDataset, VAL_SET_ARTIFACT],
    Annotated[ImageDataset, TEST_SET_ARTIFACT],
    Annotated[SplitSummary, SPLIT_SUMMARY_ARTIFACT],
]:
    """Splits by patient so that no patient is in two splits (asserted).

    Args:
        dataset: The loaded data set.
        config: Fractions, seed and the official-test rule
            (:class:`xray.logic.settings.SplitSettings`).

    Returns:
        The train, validation and test sets, and what the split did (counts, the
        settings, whether an official test folder was kept, the files dropped for
        overlapping it, how patients were found).
    """
    config = config or SplitSettings()
    splits, info = split_by_patient(
        dataset,
        config.val_fraction,
        config.test_fraction,
        config.seed,
        use_official_test=config.use_official_test,
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
    record = SplitSummary(
        split_counts=summary,
        **{**info, "dropped_files": info["dropped_files"][:500]},
        seed=config.seed,
        val_fraction=config.val_fraction,
        test_fraction=None if info["official_test_kept"] else config.test_fraction,
    )
    log_metadata(metadata=record.model_dump(mode="json"))
    return splits["train"], splits["val"], splits["test"], record
