"""The monitoring pipeline: the service's logged answers and feedback -> drift, live
quality against the production version's test figures -> alerts (and a retrain)."""

from zenml import Model, get_pipeline_context, pipeline
from zenml.enums import ModelStages

from steps.inference.check_inference_drift import check_inference_drift
from steps.monitoring.assess_live_quality import assess_live_quality
from steps.monitoring.handle_monitoring import handle_monitoring
from steps.monitoring.load_prediction_window import load_prediction_window
from xray.logic.constants import EVALUATION_ARTIFACT, IMAGE_STATISTICS_ARTIFACT, MODEL_NAME


@pipeline(name="monitoring", model=Model(name=MODEL_NAME, version=ModelStages.PRODUCTION))
def monitoring_pipeline(since: str | None = None, until: str | None = None) -> None:
    """Judges what the service answered in ``[since, until)``.

    The reference is the ``production`` version: its training images' statistics (drift)
    and its test figures (live quality); the run is linked to it in the dashboard.

    Args:
        since: Start of the window (ISO time); default: the last ``window_days``.
        until: End of the window (ISO time); default: now.
    """
    version = get_pipeline_context().model
    predictions, feedback, statistics, window = load_prediction_window(since=since, until=until)
    _drift_html, drift = check_inference_drift(
        statistics, version.get_artifact(IMAGE_STATISTICS_ARTIFACT)
    )
    report, _html = assess_live_quality(
        predictions, feedback, window, drift, version.get_artifact(EVALUATION_ARTIFACT)
    )
    handle_monitoring(report, predictions, feedback)
