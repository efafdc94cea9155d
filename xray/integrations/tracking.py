"""MLflow helpers used inside steps (the stack's tracker has already opened the run)."""

import os
import tempfile
from typing import Any

import mlflow


def log_png(png: bytes, artifact_file: str) -> None:
    """Logs PNG bytes as an artifact file of the active MLflow run."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, os.path.basename(artifact_file))
        with open(path, "wb") as handle:
            handle.write(png)
        directory = os.path.dirname(artifact_file) or None
        mlflow.log_artifact(path, artifact_path=directory)


def log_keras_model(model: Any, artifact_path: str = "model") -> None:
    """Logs the model as ``model/model.keras`` in the active MLflow run."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        mlflow.log_artifact(path, artifact_path=artifact_path)


def epoch_logger() -> Any:
    """A Keras callback that logs every epoch's metrics to the active MLflow run."""
    import keras

    class MlflowEpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            mlflow.log_metrics({k: float(v) for k, v in (logs or {}).items()}, step=epoch)

    return MlflowEpochLogger()
