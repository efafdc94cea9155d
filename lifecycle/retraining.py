"""Starting a retrain from inside a step: the training pipeline in its own process.

Used by the inference pipeline (``handle_drift``) and the monitoring pipeline
(``handle_monitoring``), so a retrain happens the same whatever started their run.
"""

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from zenml import get_step_context

from xray.logic.records import RetrainResult

logger = logging.getLogger(__name__)

RETRAIN_MODULE = "application.retrain"
"""The retraining entry point (``python -m application.retrain``), run in its own process:
a pipeline cannot run another pipeline inside a step, and a cloud step container forbids
it; a new process on the same active stack and store can."""


def source_root() -> Path:
    """The project root as ZenML knows it (where ``application/`` is)."""
    from zenml.utils.source_utils import get_source_root

    return Path(get_source_root())


def production_sources() -> tuple[str, list[str]]:
    """The scoring model version's number and the data folders it was trained on."""
    model = get_step_context().model
    sources = list(model.run_metadata.get("data_sources") or [])
    return str(model.number), sources


def retrain(training_config: str, data_dirs: list[str]) -> RetrainResult:
    """Runs ``python -m application.retrain`` (the training pipeline on the active stack, the
    same code path as ``python run.py --data OLD --data NEW``) and reads its result.

    Its output goes to this step's log line by line (the dashboard shows it).
    """
    root, path = source_root(), os.environ.get("PYTHONPATH", "")
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
