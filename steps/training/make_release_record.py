"""Step: the one record of this trained version (card, BentoML model, Bento and model
version are all written from it)."""

from datetime import UTC, datetime
from typing import Annotated

import pandas as pd
from zenml import get_step_context, step

from xray.logic.constants import RELEASE_RECORD_ARTIFACT
from xray.logic.records import (
    CalibrationFit,
    ErrorAnalysis,
    Evaluation,
    ExternalEvaluation,
    ReleaseRecord,
    SplitSummary,
    TrainingReport,
    ValidationSummary,
)
from xray.logic.split import split_counts


@step
def make_release_record(
    image_statistics: pd.DataFrame,
    data_fingerprint: str,
    sources: list[str],
    split_summary: SplitSummary,
    training_report: TrainingReport,
    evaluation: Evaluation,
    validation_summary: ValidationSummary,
    calibration: CalibrationFit | None = None,
    error_analysis: ErrorAnalysis | None = None,
    external: ExternalEvaluation | None = None,
) -> Annotated[ReleaseRecord, RELEASE_RECORD_ARTIFACT]:
    """Collects what this run established about its model into one record.

    Args:
        image_statistics: Statistics of every image with its split (class and patient
            counts per split).
        data_fingerprint: Content fingerprint of the data set.
        sources: The data folders the data set was loaded from.
        split_summary: What ``split_dataset`` did.
        training_report: How ``train_model`` trained.
        evaluation: The threshold and the in-split test figures (``evaluate_model``).
        validation_summary: The data gates' outcome.
        calibration: The temperature scaling fit of ``calibrate_model``.
        error_analysis: Per-subtype results of ``analyze_errors``.
        external: The ``--external-test`` sets' scores (``evaluate_external``).

    Returns:
        The release record of this run's model version.
    """
    version = get_step_context().model
    return ReleaseRecord(
        model_name=version.name,
        model_version=str(version.version),
        created=datetime.now(UTC).date().isoformat(),
        image_size=training_report.image_size,
        data_fingerprint=data_fingerprint,
        sources=list(sources),
        split_counts=split_counts(image_statistics),
        split=split_summary,
        training=training_report,
        calibration=calibration,
        evaluation=evaluation,
        validation=validation_summary,
        error_analysis=error_analysis,
        external=external or ExternalEvaluation(),
    )
