"""Step: what drift means for this run: warn, fail it for a scheduler, or retrain."""

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

from zenml import get_step_context, step

from xray.logic.constants import DRIFT_RESPONSE_ARTIFACT
from xray.logic.records import DriftResponse, DriftResult, RetrainResult
from xray.logic.settings import DriftActionSettings

logger = logging.getLogger(__name__)

RETRAIN_MODULE = "application.retrain"
"""The retraining entry point (``python -m application.retrain``), run in its own process:
a pipeline cannot run another pipeline inside a step, and a cloud step container forbids
it; a new process on the same active stack and store can."""


class DriftDetectedError(RuntimeError):
    """New data drifted from the training data and ``on_drift`` is ``fail``."""


class RetrainError(RuntimeError):
    """The retrain after drift could not start (the message says why and what to do)."""


def _source_root() -> Path:
    from zenml.utils.source_utils import get_source_root

    return Path(get_source_root())


def _production_sources() -> tuple[str, list[str]]:
    """The scoring model version's number and the data folders it was trained on."""
    model = get_step_context().model
    sources = list(model.run_metadata.get("data_sources") or [])
    return str(model.number), sources


def retrain(training_config: str, data_dirs: list[str]) -> RetrainResult:
    """Runs ``python -m application.retrain`` (the training pipeline on the active stack, the
    same code path as ``python run.py --data OLD --data NEW``) and reads its result.

    Its output goes to this step's log line by line (the dashboard shows it).
    """
    root, path = _source_root(), os.environ.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory(prefix="xray-retrain-") as tmp:
        result_file = Path(tmp) / "result.json"
        command = [sys.executable, "-m", RETRAIN_MODULE, "--config", training_config]
        command += [arg for d in data_dirs for arg in ("--data", d)]
        command += ["--result", str(result_file)]
        logger.info("Retraining: %s", " ".join(command))
        process = subprocess.Popen(
            command,
            cwd=root,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), path]))},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None
        tail: list[str] = []
        for line in process.stdout:
            logger.info("[retrain] %s", line.rstrip())
            tail = (tail + [line.rstrip()])[-20:]
        process.wait()
        if result_file.is_file():
            return RetrainResult.model_validate(json.loads(result_file.read_text()))
        return RetrainResult(
            data_dirs=data_dirs,
            error=f"the retraining process exited with {process.returncode}: "
            + " / ".join(line for line in tail if line.strip())[-2000:],
        )


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
    version, sources = _production_sources()
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
