"""Step: what the monitoring report's alerts lead to: alert, and optionally retrain."""

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import step
from zenml.client import Client

from lifecycle.retraining import production_sources, retrain
from xray.integrations.alerts import post_webhook, webhook_url
from xray.io.prediction_log import image_folder, labelled_images, log_directory
from xray.logic.constants import MONITORING_RESPONSE_ARTIFACT
from xray.logic.records import MonitoringReport, MonitoringResponse
from xray.logic.settings import MonitoringActionSettings

logger = logging.getLogger(__name__)

WEBHOOK_SECRET = "xray_alert_webhook"
"""A ZenML secret (key ``url``) that holds the webhook when the environment does not."""


def _webhook() -> str | None:
    url = webhook_url()
    if url:
        return url
    try:
        return Client().get_secret(WEBHOOK_SECRET).secret_values.get("url")
    except KeyError:
        return None


def send_alerts(report: MonitoringReport) -> list[str]:
    """Sends the alerts to the stack's ZenML alerter, when it has one, and to the webhook
    (``XRAY_ALERT_WEBHOOK_URL`` or the ``xray_alert_webhook`` secret), when one is set.

    Returns:
        One delivery line per channel (for the report).
    """
    text = f"Pneumonia classifier version {report.model_version}: " + "; ".join(report.alerts)
    delivery = []
    alerter = Client().active_stack.alerter
    if alerter is not None:
        try:
            alerter.post(text)
            delivery.append(f"alerter {alerter.name}: delivered")
        except Exception as exc:  # noqa: BLE001 - one channel failing never hides another
            delivery.append(f"alerter {alerter.name}: not delivered ({type(exc).__name__})")
    url = _webhook()
    if url:
        details = report.model_dump(
            mode="json",
            include={
                "model_version",
                "since",
                "until",
                "n_predictions",
                "n_labelled",
                "live",
                "performance_degraded",
                "degradation_reasons",
                "drift_detected",
                "share_drifted",
                "positive_rate",
                "refusal_share",
                "alerts",
            },
        )
        delivery.append(post_webhook(url, text, details))
    if not delivery:
        delivery.append(
            "no alert channel: add an alerter to the stack or set XRAY_ALERT_WEBHOOK_URL"
        )
    for line in delivery:
        logger.warning("Alert %s", line)
    return delivery


def export_labelled(predictions: pd.DataFrame, feedback: pd.DataFrame, out: Path) -> int:
    """Copies the kept, labelled production images into ``out/{NORMAL,PNEUMONIA}/``: the
    class-folder layout a training run reads. Returns how many."""
    count = 0
    for path, label in labelled_images(predictions, feedback, image_folder()):
        (out / label).mkdir(parents=True, exist_ok=True)
        (out / label / path.name).write_bytes(path.read_bytes())
        count += 1
    return count


@step(enable_cache=False)
def handle_monitoring(
    report: MonitoringReport,
    predictions: pd.DataFrame,
    feedback: pd.DataFrame,
    config: MonitoringActionSettings | None = None,
) -> Annotated[MonitoringResponse, MONITORING_RESPONSE_ARTIFACT]:
    """Alerts on degradation, drift, an answer shift or many refusals; with
    ``on_alert: retrain`` and degradation or drift, trains on the production version's
    data plus the labelled production images, whatever started the run (the CLI, a
    schedule or the dashboard). The new version is promoted only if it passes the gates.

    Args:
        report: The window's monitoring report.
        predictions: The window's logged answers.
        feedback: The true labels received for them.
        config: ``on_alert`` and the retrain's settings (:class:`MonitoringActionSettings`).

    Returns:
        The action taken, where the alerts went, and the retraining run.
    """
    config = config or MonitoringActionSettings()
    if not report.alerts:
        return MonitoringResponse(action="none")
    deliveries = send_alerts(report)
    wants_retrain = report.performance_degraded or report.drift_detected
    if config.on_alert != "retrain" or not wants_retrain:
        return MonitoringResponse(action="report", deliveries=deliveries)
    version, sources = production_sources()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = log_directory() / "labelled" / f"version-{version}-{stamp}"
    count = export_labelled(predictions, feedback, out)
    if not sources or count < config.min_labelled_images:
        note = (
            f"no retrain: {count} kept, labelled production image(s) (at least "
            f"{config.min_labelled_images} needed; keep images with "
            "XRAY_PREDICTION_LOG_IMAGES=keep and send labels to /feedback)"
            if sources
            else f"no retrain: model version {version} does not record its data folders"
        )
        logger.warning(note)
        return MonitoringResponse(
            action="report", labelled_images=count, note=note, deliveries=deliveries
        )
    data_dirs = [*sources, str(out)]
    logger.warning("Retraining on %s.", " + ".join(data_dirs))
    result = retrain(config.training_config, data_dirs)
    return MonitoringResponse(
        action="retrain", labelled_images=count, retrain=result, deliveries=deliveries
    )
