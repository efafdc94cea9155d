"""Step: the service's logged predictions and feedback of one time window."""

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated

import pandas as pd
from zenml import log_metadata, step

from xray.io.prediction_log import PredictionStore, log_url, redacted
from xray.logic.constants import (
    FEEDBACK_ARTIFACT,
    MONITORING_WINDOW_ARTIFACT,
    SERVED_PREDICTIONS_ARTIFACT,
    SERVED_STATISTICS_ARTIFACT,
)
from xray.logic.monitoring import parse_time, served_statistics_table
from xray.logic.settings import DRIFT_COLUMNS, PredictionWindowSettings

logger = logging.getLogger(__name__)

LOG_URL_SECRET = "xray_prediction_log"
"""A ZenML secret (key ``url``) with the prediction log's database URL: what a cloud
step uses when ``XRAY_PREDICTION_LOG_URL`` is not in its environment."""


def _log_url() -> str:
    import os

    from zenml.client import Client

    from xray.io.prediction_log import URL_ENV

    if not os.environ.get(URL_ENV):
        try:
            url = Client().get_secret(LOG_URL_SECRET).secret_values.get("url")
        except KeyError:
            url = None
        if url:
            return url
    return log_url()


@step(enable_cache=False)
def load_prediction_window(
    since: str | None = None,
    until: str | None = None,
    config: PredictionWindowSettings | None = None,
) -> tuple[
    Annotated[pd.DataFrame, SERVED_PREDICTIONS_ARTIFACT],
    Annotated[pd.DataFrame, FEEDBACK_ARTIFACT],
    Annotated[pd.DataFrame, SERVED_STATISTICS_ARTIFACT],
    Annotated[dict[str, str], MONITORING_WINDOW_ARTIFACT],
]:
    """Reads the prediction log (``XRAY_PREDICTION_LOG_URL``, else the ZenML secret
    ``xray_prediction_log``'s ``url``, else the local SQLite file) for predictions made in
    ``[since, until)``.

    Args:
        since: Start of the window (ISO time); default: ``window_days`` before ``until``.
        until: End of the window (ISO time); default: now.
        config: The default window length (:class:`PredictionWindowSettings`).

    Returns:
        The answers (both roles: production and a shadow challenger), the feedback on
        them, the production answers' image statistics (the drift check's ``new`` rows)
        and the window as ISO times.

    Raises:
        PredictionLogError: The database cannot be reached (its URL, without password).
    """
    config = config or PredictionWindowSettings()
    end = parse_time(until, "until") if until else datetime.now(UTC)
    start = parse_time(since, "since") if since else end - timedelta(days=config.window_days)
    store = PredictionStore(_log_url())
    predictions, feedback = store.window(start, end)
    window = {"since": start.isoformat(), "until": end.isoformat()}
    logger.info(
        "Prediction log %s: %d answer(s), %d label(s) from %s to %s.",
        redacted(store.url),
        len(predictions),
        len(feedback),
        window["since"],
        window["until"],
    )
    log_metadata(metadata={**window, "answers": len(predictions), "labels": len(feedback)})
    statistics = served_statistics_table(predictions, list(DRIFT_COLUMNS))
    return predictions, feedback, statistics, window
