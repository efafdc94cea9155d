"""Step: what drift means for this run (warn, or fail it for a scheduler)."""

import logging

from zenml import step

from xray.records import DriftResult
from xray.settings import DriftActionSettings

logger = logging.getLogger(__name__)


class DriftDetectedError(RuntimeError):
    """New data drifted from the training data and ``on_drift`` is ``fail``."""


@step(enable_cache=False)
def handle_drift(
    drift: DriftResult,
    config: DriftActionSettings | None = None,
) -> None:
    """Fails the run on drift when ``on_drift`` is ``fail`` (the predictions and the
    report are already stored); otherwise only logs. ``retrain`` is carried out by
    ``run.py`` after the run, through the same code path as a manual training run.

    Args:
        drift: The drift result of ``check_inference_drift``.
        config: ``on_drift`` and the retraining run config
            (:class:`xray.settings.DriftActionSettings`).

    Raises:
        DriftDetectedError: On drift with ``on_drift: fail``.
    """
    config = config or DriftActionSettings()
    on_drift, training_config = config.on_drift, config.training_config
    if not drift.drift_detected:
        logger.info("No drift (share of drifted statistics %.2f).", drift.share_drifted)
        return
    message = (
        f"Drift: {len(drift.drifted_features)} statistic(s) drifted "
        f"(share {drift.share_drifted:.2f} > {drift.max_drift_share:.2f}): "
        f"{', '.join(drift.drifted_features)}"
    )
    if on_drift == "fail":
        raise DriftDetectedError(message + " (on_drift: fail)")
    action = f"run.py retrains with {training_config}" if on_drift == "retrain" else "warn"
    logger.warning(message + f" (on_drift: {action})")
