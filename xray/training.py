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
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from xray.dataset import ImageDataset
from xray.model import BACKBONES, build_model, unfreeze_last_block
from xray.preprocessing import make_dataset

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Hyperparameters of :func:`train_classifier` (the ``train_model`` step's parameters).

    Attributes:
        backbone: ``compact_cnn`` (from scratch, CPU-friendly), ``mobilenet_v2`` or
            ``vgg16`` (the seed's backbone; default on GPU stacks).
        image_size: Side length images are resized to.
        weights: ``imagenet`` to use pretrained weights when the Keras cache has them or
            they can be downloaded (else random init, with a warning), or ``none``.
        freeze_base: ``auto`` (freeze when pretrained), ``true`` or ``false``.
        augment: Random rotation/translation/zoom/contrast during end-to-end training.
        batch_size: Images per batch.
        epochs: Epochs of the first phase (frozen head training or end-to-end).
        learning_rate: Adam learning rate of the first phase.
        fine_tune_epochs: Epochs with the backbone's last block unfrozen (0 = skip).
        fine_tune_learning_rate: Adam learning rate while fine-tuning.
        early_stopping_patience: Epochs without validation-AUC gain before stopping
            (the best weights are restored).
        cache_frozen_features: Train a frozen phase on backbone features computed once.
        class_weights: Weight the loss by inverse class frequency (the data is ~1:3).
        dropout: Dropout rate before the output layer.
        seed: Seed for weights, shuffling and augmentation.
    """

    backbone: str = "compact_cnn"
    image_size: int = 224
    weights: str | None = "imagenet"
    freeze_base: str | bool = "auto"
    augment: bool = True
    batch_size: int = 32
    epochs: int = 10
    learning_rate: float = 1e-3
    fine_tune_epochs: int = 0
    fine_tune_learning_rate: float = 1e-5
    early_stopping_patience: int = 3
    cache_frozen_features: bool = True
    class_weights: bool = True
    dropout: float = 0.3
    seed: int = 42

    def __post_init__(self) -> None:
        if isinstance(self.weights, str) and self.weights.lower() in ("none", "null", ""):
            self.weights = None
        problems = []
        if self.backbone not in BACKBONES:
            problems.append(f"backbone={self.backbone!r} (choose {', '.join(BACKBONES)})")
        if self.weights not in (None, "imagenet"):
            problems.append(f"weights={self.weights!r} (use imagenet or none)")
        if self.freeze_base not in ("auto", True, False):
            problems.append(f"freeze_base={self.freeze_base!r} (use auto, true or false)")
        if not 32 <= self.image_size <= 1024:
            problems.append(f"image_size={self.image_size} (use 32..1024)")
        if self.batch_size < 1 or self.epochs < 1 or self.fine_tune_epochs < 0:
            problems.append("batch_size and epochs must be >= 1, fine_tune_epochs >= 0")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout={self.dropout} (use 0..1)")
        if problems:
            raise ValueError("Invalid train_model settings: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values (for metadata and MLflow params)."""
        return asdict(self)


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
) -> dict[str, list[float]]:
    import keras

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
        callbacks=[stop, *callbacks],
        verbose=2,
    )
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


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
) -> TrainResult:
    """Trains the classifier on ``train``, early-stopping on validation AUC.

    Args:
        train: Training images.
        val: Validation images (early stopping; never used for gradient steps).
        config: Hyperparameters.
        callbacks: Extra Keras callbacks (e.g. per-epoch MLflow logging); they see one
            continuous epoch count across phases.

    Returns:
        The trained model, its history and how it was trained.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(config.seed)
    weights = class_weights(train.labels) if config.class_weights else None
    with _strategy().scope():
        built = build_model(
            backbone=config.backbone,
            image_size=config.image_size,
            weights=config.weights,
            freeze_base=config.freeze_base,
            augment=config.augment,
            dropout=config.dropout,
            seed=config.seed,
        )
    model = built.model
    result = TrainResult(model=model, pretrained=built.pretrained)
    size, batch = config.image_size, config.batch_size
    train_ds = make_dataset(train.images, train.labels, size, batch, shuffle=True, seed=config.seed)
    val_ds = make_dataset(val.images, val.labels, size, batch)
    epoch = 0

    if built.base_frozen and config.cache_frozen_features:
        start = time.perf_counter()
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
        feat_train = (
            tf.data.Dataset.from_tensor_slices((train_features, train.labels.astype("float32")))
            .shuffle(len(train), seed=config.seed, reshuffle_each_iteration=True)
            .batch(batch)
        )
        feat_val = tf.data.Dataset.from_tensor_slices(
            (val_features, val.labels.astype("float32"))
        ).batch(batch)
        phase = _fit(head, feat_train, feat_val, config.epochs, config, weights, callbacks)
        name = "frozen backbone, cached features"
    else:
        start = time.perf_counter()
        _compile(model, config.learning_rate)
        phase = _fit(model, train_ds, val_ds, config.epochs, config, weights, callbacks)
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
            model, train_ds, val_ds, config.fine_tune_epochs, config, weights, callbacks, epoch
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
    return result


def predict_probabilities(model: Any, images: Sequence[bytes], image_size: int, batch_size: int = 32) -> np.ndarray:
    """P(PNEUMONIA) for each encoded image, through the shared preprocessing."""
    if len(images) == 0:
        return np.zeros(0, dtype=np.float32)
    ds = make_dataset(images, None, image_size, batch_size, cache=False)
    return model.predict(ds, verbose=0).reshape(-1).astype(np.float32)
