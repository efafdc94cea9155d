"""Step: what drift means for this run: warn, fail it for a scheduler, or retrain."""

import logging
from typing import Annotated

from zenml import step

from lifecycle.retraining import production_sources, retrain
from xray.logic.constants import DRIFT_RESPONSE_ARTIFACT
from xray.logic.records import DriftResponse, DriftResult
from xray.logic.settings import DriftActionSettings

logger = logging.getLogger(__name__)


class DriftDetectedError(RuntimeError):
    """New data drifted from the training data and ``on_drift`` is ``fail``."""


class RetrainError(RuntimeError):
    """The retrain after drift could not start (the message says why and what to do)."""


@step(enable_cache=False)
def handle_drift(
    drift: DriftResult,
    data_dir: str,
    config: DriftActionSettings | None = None,
) -> Annotated[DriftResponse, DRIFT_RESPONSE_ARTIFACT]:
    """Acts on drift, whatever started the run (the CLI, a schedule or the dashboard).

    ``warn`` only logs; ``fail`` fails the run (the predictions and the report are already
    stored); ``retrain`` runs the training pipeline on the scoring version's data folders
    (``data_sources`` in its metadata) plus ``data_dir``, the merged data split three ways
    so that the new images reach the test split and promotion compares both models on
    them. The new version is promoted only if it passes the gates.

    Args:
        drift: The drift result of ``check_inference_drift``.
        data_dir: The scored folder (the new data a retrain adds).
        config: ``on_drift`` and the retraining run config
            (:class:`xray.logic.settings.DriftActionSettings`).

    Returns:
        The action taken, with the retraining run's outcome.

    Raises:
        DriftDetectedError: On drift with ``on_drift: fail``.
        RetrainError: On drift with ``on_drift: retrain`` when the scoring version does not
            record its data folders, or the retraining run failed.
    """
    config = config or DriftActionSettings()
    if not drift.drift_detected:
        logger.info("No drift (share of drifted statistics %.2f).", drift.share_drifted)
        return DriftResponse(action="none")
    message = (
        f"Drift: {len(drift.drifted_features)} statistic(s) drifted "
        f"(share {drift.share_drifted:.2f} > {drift.max_drift_share:.2f}): "
        f"{', '.join(drift.drifted_features)}"
    )
    if config.on_drift == "fail":
        raise DriftDetectedError(message + " (on_drift: fail)")
    logger.warning(message + f" (on_drift: {config.on_drift})")
    if config.on_drift == "warn":
        return DriftResponse(action="warn")
    version, sources = production_sources()
    if not sources:
        raise RetrainError(
            f"Cannot retrain: model version {version} does not record its data folders "
            "(data_sources); train on both by hand: python run.py --data OLD --data NEW"
        )
    data_dirs = [*sources, data_dir]
    logger.warning("Drift detected: retraining on %s.", " + ".join(data_dirs))
    result = retrain(config.training_config, data_dirs)
    if result.error:
        raise RetrainError(f"The retraining run {result.run_name} failed: {result.error}")
    return DriftResponse(action="retrain", retrain=result)
