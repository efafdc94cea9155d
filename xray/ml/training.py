"""Training: a frozen-backbone phase on cached features, then optional fine-tuning.

When the backbone is frozen and its features do not depend on augmentation, computing
them every epoch is wasted work: the images pass through the backbone once, and the head
trains on the cached feature vectors, so an N-epoch frozen phase costs about one pass.
Trainable backbones (from scratch, or fine-tuning) train end to end on the tf.data
pipeline, with augmentation inside the model.
"""

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xray.io.checkpoints import CheckpointMirror, HistoryFile
from xray.logic.dataset import ImageDataset
from xray.logic.settings import TrainConfig
from xray.ml.model import build_model, unfreeze_last_block
from xray.ml.preprocessing import make_dataset, without_autotune

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train_classifier` produced.

    Attributes:
        model: The trained model (uint8 image in, P(PNEUMONIA) out).
        history: Per-epoch metrics over all phases (``loss``, ``auc``, ``val_loss``,
            ``val_auc``, ``phase``).
        pretrained: Whether ImageNet weights were used.
        phases: Per phase: name, epochs run, seconds.
        backbone_passes: How many times each training image went through the backbone.
    """

    model: Any
    history: dict[str, list[Any]] = field(default_factory=dict)
    pretrained: bool = False
    phases: list[dict[str, Any]] = field(default_factory=list)
    backbone_passes: int = 0


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Inverse-frequency class weights ``n / (2 * n_c)``; absent classes get weight 1."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=2)
    total = counts.sum()
    return {c: float(total / (2 * counts[c])) if counts[c] else 1.0 for c in range(2)}


def _strategy() -> Any:
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        logger.info("Training on %d GPUs with MirroredStrategy", len(gpus))
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _compile(model: Any, learning_rate: float) -> None:
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
    )


def _fit(
    model: Any,
    train: Any,
    val: Any,
    epochs: int,
    config: TrainConfig,
    weights: dict[int, float] | None,
    callbacks: Sequence[Any],
    initial_epoch: int = 0,
    checkpoint: CheckpointMirror | None = None,
    phase: str = "phase",
) -> dict[str, list[float]]:
    """One ``model.fit`` with early stopping; resumable when ``checkpoint`` is given.

    With a checkpoint, the phase's state is backed up after every epoch, resumed if a
    backup exists, and a finished phase is not run again (its final weights and history
    are reloaded), so a preempted job repeats at most one epoch.
    """
    import keras

    resumable: list[Any] = []
    history_file = None
    if checkpoint is not None:
        folder = checkpoint.local_dir / phase
        history_file = HistoryFile(folder / "history.json")
        final = folder / "final.weights.h5"
        if final.is_file():
            model.load_weights(str(final))
            logger.info("Phase '%s' had finished before the restart; reusing it", phase)
            return history_file.as_lists()
        resumable = [
            keras.callbacks.BackupAndRestore(str(folder / "state"), delete_checkpoint=False),
            history_file.callback(),
            checkpoint.callback(),
        ]

    stop = keras.callbacks.EarlyStopping(
        monitor="val_auc",
        mode="max",
        patience=config.early_stopping_patience,
        restore_best_weights=True,
        verbose=1,
    )
    history = model.fit(
        train,
        validation_data=val,
        epochs=initial_epoch + epochs,
        initial_epoch=initial_epoch,
        class_weight=weights,
        callbacks=[*resumable, stop, *callbacks],
        verbose=2,
    )
    if checkpoint is None or history_file is None:
        return {k: [float(v) for v in vals] for k, vals in history.history.items()}
    model.save_weights(str(checkpoint.local_dir / phase / "final.weights.h5"))
    checkpoint.upload()
    return history_file.as_lists()


def _append(history: dict[str, list[Any]], phase: dict[str, list[float]], name: str) -> int:
    epochs = len(next(iter(phase.values()), []))
    for key, values in phase.items():
        history.setdefault(key, []).extend(values)
    history.setdefault("phase", []).extend([name] * epochs)
    return epochs


def train_classifier(
    train: ImageDataset,
    val: ImageDataset,
    config: TrainConfig,
    callbacks: Sequence[Any] = (),
    checkpoint: CheckpointMirror | None = None,
) -> TrainResult:
    """Trains the classifier on ``train``, early-stopping on validation AUC.

    Args:
        train: Training images.
        val: Validation images (early stopping; never used for gradient steps).
        config: Hyperparameters.
        callbacks: Extra Keras callbacks (e.g. per-epoch MLflow logging); they see one
            continuous epoch count across phases.
        checkpoint: Where to back up after every epoch and resume from (spot and
            preemptible machines); cleared when training finishes. Early stopping's
            patience counts again from the resumed epoch.

    Returns:
        The trained model, its history and how it was trained.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(config.seed)
    if checkpoint is not None:
        checkpoint.restore()
    weights = class_weights(train.labels) if config.class_weights else None
    with _strategy().scope():
        built = build_model(config)
    model = built.model
    result = TrainResult(model=model, pretrained=built.pretrained)
    size, batch = config.image_size, config.batch_size
    train_ds = make_dataset(train.images, train.labels, size, batch, shuffle=True, seed=config.seed)
    val_ds = make_dataset(val.images, val.labels, size, batch)
    epoch = 0

    start = time.perf_counter()
    if built.base_frozen and config.cache_frozen_features:
        extractor = keras.Model(model.input, model.get_layer("pool").output)
        plain_train = make_dataset(train.images, None, size, batch, cache=False)
        plain_val = make_dataset(val.images, None, size, batch, cache=False)
        train_features = extractor.predict(plain_train, verbose=0)
        val_features = extractor.predict(plain_val, verbose=0)
        result.backbone_passes += 1
        features_in = keras.Input(train_features.shape[1:], name="features")
        head_out = model.get_layer("prediction")(model.get_layer("dropout")(features_in))
        head = keras.Model(features_in, head_out, name="head")
        _compile(head, config.learning_rate)
        feat_train = without_autotune(
            tf.data.Dataset.from_tensor_slices((train_features, train.labels.astype("float32")))
            .shuffle(len(train), seed=config.seed, reshuffle_each_iteration=True)
            .batch(batch)
        )
        feat_val = without_autotune(
            tf.data.Dataset.from_tensor_slices((val_features, val.labels.astype("float32"))).batch(
                batch
            )
        )
        phase = _fit(
            head,
            feat_train,
            feat_val,
            config.epochs,
            config,
            weights,
            callbacks,
            checkpoint=checkpoint,
            phase="frozen",
        )
        name = "frozen backbone, cached features"
    else:
        _compile(model, config.learning_rate)
        phase = _fit(
            model,
            train_ds,
            val_ds,
            config.epochs,
            config,
            weights,
            callbacks,
            checkpoint=checkpoint,
            phase="first",
        )
        name = "frozen backbone" if built.base_frozen else "end to end"
    ran = _append(result.history, phase, name)
    if not (built.base_frozen and config.cache_frozen_features):
        result.backbone_passes += ran
    result.phases.append(
        {"phase": name, "epochs": ran, "seconds": round(time.perf_counter() - start, 2)}
    )
    epoch += ran

    if config.fine_tune_epochs > 0:
        start = time.perf_counter()
        unfrozen = unfreeze_last_block(built.base, config.backbone)
        logger.info("Fine-tuning the last block of %s (%d layers)", config.backbone, unfrozen)
        _compile(model, config.fine_tune_learning_rate)
        phase = _fit(
            model,
            train_ds,
            val_ds,
            config.fine_tune_epochs,
            config,
            weights,
            callbacks,
            epoch,
            checkpoint=checkpoint,
            phase="fine-tune",
        )
        ran = _append(result.history, phase, "fine-tune last block")
        result.backbone_passes += ran
        result.phases.append(
            {
                "phase": "fine-tune last block",
                "epochs": ran,
                "seconds": round(time.perf_counter() - start, 2),
            }
        )
    if checkpoint is not None:
        checkpoint.clear()
    return result


def predict_probabilities(
    model: Any, images: Sequence[bytes], image_size: int, batch_size: int = 32
) -> np.ndarray:
    """P(PNEUMONIA) for each encoded image, through the shared preprocessing."""
    if len(images) == 0:
        return np.zeros(0, dtype=np.float32)
    ds = make_dataset(images, None, image_size, batch_size, cache=False)
    return model.predict(ds, verbose=0).reshape(-1).astype(np.float32)
