"""Step: live quality, answer shift, refusals and the shadow challenger of one window."""

import logging
from typing import Annotated

import mlflow
import pandas as pd
from zenml import log_metadata, step
from zenml.types import HTMLString

from xray.logic.constants import MONITORING_HTML_ARTIFACT, MONITORING_REPORT_ARTIFACT
from xray.logic.monitoring import assess
from xray.logic.records import DriftResult, Evaluation, MonitoringReport
from xray.logic.settings import MonitoringSettings
from xray.reporting.monitoring import monitoring_html

logger = logging.getLogger(__name__)


@step(experiment_tracker=True)
def assess_live_quality(
    predictions: pd.DataFrame,
    feedback: pd.DataFrame,
    window: dict[str, str],
    drift: DriftResult,
    evaluation: Evaluation,
    config: MonitoringSettings | None = None,
) -> tuple[
    Annotated[MonitoringReport, MONITORING_REPORT_ARTIFACT],
    Annotated[HTMLString, MONITORING_HTML_ARTIFACT],
]:
    """Judges the window's answers against the production version's test figures
    (:func:`xray.logic.monitoring.assess`) and renders the report.

    Args:
        predictions: The window's logged answers (both roles).
        feedback: The true labels received for them.
        window: The window's ``since`` and ``until``.
        drift: The served images' drift against the version's training images.
        evaluation: The production version's evaluation (its test figures).
        config: Tolerances and limits (:class:`MonitoringSettings`).

    Returns:
        The report (``monitoring.json``) and its HTML page; both also in MLflow.
    """
    config = config or MonitoringSettings()
    report = assess(
        predictions,
        feedback,
        evaluation.metrics,
        drift,
        config,
        (window.get("since"), window.get("until")),
    )
    for line in report.report():
        (logger.warning if line.startswith("ALERT") else logger.info)(line)
    html = monitoring_html(report)
    live = {f"live_{k}": v for k, v in report.live.items() if v is not None}
    mlflow.log_metrics(
        {**live, "n_predictions": report.n_predictions, "n_labelled": report.n_labelled}
    )
    mlflow.log_text(html, "monitoring.html")
    log_metadata(
        metadata={
            "n_predictions": report.n_predictions,
            "n_labelled": report.n_labelled,
            "performance_degraded": report.performance_degraded,
            "drift_detected": report.drift_detected,
            "alerts": report.alerts,
            **live,
        }
    )
    return report, HTMLString(html)
