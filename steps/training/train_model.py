"""Step: train the classifier, tracked in the stack's MLflow experiment tracker."""

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import mlflow
from zenml import log_metadata, step
from zenml.client import Client
from zenml.io import fileio

from materializers import KerasModelMaterializer, PngFigureMaterializer
from xray.integrations.tracking import epoch_logger, log_keras_model, log_png
from xray.io.checkpoints import CheckpointMirror, checkpoint_key
from xray.logic.constants import (
    TRAINED_MODEL_ARTIFACT,
    TRAINING_HISTORY_ARTIFACT,
    TRAINING_REPORT_ARTIFACT,
)
from xray.logic.dataset import ImageDataset
from xray.logic.records import TrainingReport
from xray.logic.settings import TrainConfig
from xray.ml.model import KerasModelFile
from xray.ml.training import train_classifier
from xray.reporting.plots import PngFigure, history_figure


@step(
    experiment_tracker=True,
    output_materializers={
        TRAINED_MODEL_ARTIFACT: KerasModelMaterializer,
        "training_curves": PngFigureMaterializer,
    },
)
def train_model(
    train_set: ImageDataset,
    val_set: ImageDataset,
    config: TrainConfig | None = None,
) -> tuple[
    Annotated[KerasModelFile, TRAINED_MODEL_ARTIFACT],
    Annotated[dict[str, list[Any]], TRAINING_HISTORY_ARTIFACT],
    Annotated[TrainingReport, TRAINING_REPORT_ARTIFACT],
    Annotated[PngFigure, "training_curves"],
]:
    """Trains on ``train_set``, early-stopping on ``val_set`` AUC.

    Args:
        train_set: Training images.
        val_set: Validation images.
        config: Hyperparameters (:class:`xray.logic.settings.TrainConfig`). With ``resume``,
            every epoch is backed up to ``<artifact store>/checkpoints/train_model/`` and
            an interrupted run resumes from there when the same data and settings train
            again (a preempted spot job, or a re-run after a crash).

    Returns:
        The trained model (its ``.keras`` file), its per-epoch history, facts about how
        it was trained (``pretrained``, backbone, epochs...) and the training curves.
    """
    config = config or TrainConfig()
    mlflow.log_params({f"train.{k}": v for k, v in config.to_dict().items()})
    checkpoint = None
    if config.resume:
        key = checkpoint_key(
            train_set.fingerprint(),
            val_set.fingerprint(),
            json.dumps(config.model_dump(exclude={"resume"}), sort_keys=True, default=str),
        )
        store = Client().active_stack.artifact_store.path.rstrip("/")
        checkpoint = CheckpointMirror(
            f"{store}/checkpoints/train_model/{key}",
            Path(tempfile.mkdtemp(prefix="xray-checkpoint-")),
            fileio,
        )
    result = train_classifier(
        train_set, val_set, config, callbacks=[epoch_logger()], checkpoint=checkpoint
    )
    report = TrainingReport(
        pretrained=result.pretrained,
        backbone=config.backbone,
        image_size=config.image_size,
        epochs_run=len(result.history.get("loss", [])),
        best_val_auc=max(result.history.get("val_auc", [float("nan")])),
        backbone_passes=result.backbone_passes,
        phases={p["phase"]: f"{p['epochs']} epochs, {p['seconds']} s" for p in result.phases},
        config=config,
        mlflow_run_id=mlflow.active_run().info.run_id,
    )
    mlflow.log_params({"pretrained": result.pretrained, "train_images": len(train_set)})
    log_metadata(metadata=report.model_dump(mode="json", exclude={"config", "mlflow_run_id"}))
    log_keras_model(result.model)
    curves = PngFigure(history_figure(result.history), "Training and validation loss / AUC")
    log_png(curves.png, "plots/training_curves.png")
    return KerasModelFile.from_model(result.model), result.history, report, curves
