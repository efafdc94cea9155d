"""Step: drift report between the training split and the other splits."""

import logging
from typing import Annotated

import mlflow
import pandas as pd
from zenml import log_metadata, step
from zenml.types import HTMLString

from xray.integrations.validation import DriftGateConfig, drift_report
from xray.logic.constants import DRIFT_REPORT_ARTIFACT, DRIFT_VERDICT_ARTIFACT
from xray.logic.records import GateVerdict

logger = logging.getLogger(__name__)


@step(experiment_tracker=True)
def check_data_drift(
    image_statistics: pd.DataFrame,
    config: DriftGateConfig | None = None,
) -> tuple[
    Annotated[HTMLString, DRIFT_REPORT_ARTIFACT],
    Annotated[GateVerdict, DRIFT_VERDICT_ARTIFACT],
]:
    """Compares the image statistics of val and test with train (Evidently DataDriftPreset).

    Args:
        image_statistics: Statistics of every image with its split.
        config: Columns, method, threshold and mode (see
            :class:`xray.integrations.validation.DriftGateConfig`).

    Returns:
        The HTML report (verdict summary + one Evidently drift report per split) and the
        verdict (per split: share of drifted statistics, which ones, scores).
    """
    config = config or DriftGateConfig()
    verdict, report = drift_report(image_statistics, config)
    result = GateVerdict.model_validate(verdict.to_dict())
    (logger.info if verdict.passed else logger.warning)(verdict.message())
    log_metadata(
        metadata={
            "passed": verdict.passed,
            "mode": config.mode,
            "failed_checks": result.failed_checks,
            "drift_share": verdict.details["drift_share"],
            "drifted_columns": verdict.details["drifted_columns"],
        }
    )
    mlflow.log_text(report, "validation/data_drift.html")
    mlflow.log_dict(result.model_dump(mode="json"), "validation/data_drift.json")
    return HTMLString(report), result
