"""Step: data quality report (Evidently + our checks) and its verdict."""

import logging
from typing import Annotated

import mlflow
import pandas as pd
from zenml import log_metadata, step
from zenml.types import HTMLString

from xray.integrations.validation import QualityGateConfig, quality_report
from xray.logic.constants import QUALITY_REPORT_ARTIFACT, QUALITY_VERDICT_ARTIFACT
from xray.logic.dataset import ImageDataset
from xray.logic.records import GateVerdict

logger = logging.getLogger(__name__)


@step(experiment_tracker=True)
def check_data_quality(
    dataset: ImageDataset,
    image_statistics: pd.DataFrame,
    config: QualityGateConfig | None = None,
) -> tuple[
    Annotated[HTMLString, QUALITY_REPORT_ARTIFACT],
    Annotated[GateVerdict, QUALITY_VERDICT_ARTIFACT],
]:
    """Checks unreadable files, duplicates, patient leakage, class balance, size
    outliers and near-constant images; the ``validation_gate`` step acts on the verdict.

    Args:
        dataset: The loaded data set (for the files skipped while loading).
        image_statistics: Statistics of every image with its split.
        config: Thresholds and mode (see :class:`xray.integrations.validation.QualityGateConfig`).

    Returns:
        The HTML report (verdict summary + Evidently DataSummaryPreset) and the verdict.
    """
    config = config or QualityGateConfig()
    verdict, report = quality_report(image_statistics, dataset.skipped, config)
    result = GateVerdict.model_validate(verdict.to_dict())
    (logger.info if verdict.passed else logger.warning)(verdict.message())
    log_metadata(
        metadata={
            "passed": verdict.passed,
            "mode": config.mode,
            "failed_checks": result.failed_checks,
            "checks": {c.name: c.summary for c in verdict.checks},
        }
    )
    mlflow.log_text(report, "validation/data_quality.html")
    mlflow.log_dict(result.model_dump(mode="json"), "validation/data_quality.json")
    return HTMLString(report), result
