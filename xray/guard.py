"""The input-domain guard: is this a chest X-ray this model can judge?

A classifier answers every input with a confident label, a photograph included. The
guard refuses what lies outside the training data, with two tests on what the model sees
(the prepared ``[S, S, 3]`` uint8 image):

1. **Image statistics** (:func:`image_features`): intensity statistics of the grayscale
   image plus ``colourfulness`` (mean spread between the colour channels; a radiograph
   has none). Each must lie in the range seen on the training split, widened by a margin.
2. **Distance in the model's own feature space**: the Mahalanobis distance of the
   penultimate-layer embedding (the ``pool`` layer) to the training embeddings (mean and
   a shrunk covariance, Ledoit-Wolf). Its threshold is chosen on the validation split so
   that at least ``target_acceptance`` of in-distribution images pass both tests.

The fitted guard is a small JSON document stored with the model version and inside the
Bento (``guard.json`` beside ``model.keras``). Pure NumPy: the service imports this without
TensorFlow; :func:`embedding_model` (Keras) is imported lazily.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from xray.intensity import pixel_statistics

GUARD_MODES = ("refuse", "flag", "off")
"""``refuse``: no label for a refused image (422 / ``accepted=false`` without a label);
``flag``: the label is given, marked ``accepted=false`` with the reason; ``off``: no guard."""
EMBEDDING_LAYER = "pool"
FEATURES: tuple[str, ...] = (
    "mean",
    "std",
    "p5",
    "p50",
    "p95",
    "entropy",
    "sharpness",
    "frac_black",
    "frac_white",
    "colourfulness",
)
RANGE_MARGIN = 0.1
"""The statistic ranges are the training minimum and maximum, widened by this share of
their span on each side."""
MIN_COLOURFULNESS_LIMIT = 6.0
"""Colour noise a grayscale JPEG can carry: the colourfulness limit is never below this."""


def image_features(pixels: np.ndarray) -> dict[str, float]:
    """Statistics of one prepared image (``[S, S, 3]`` uint8), as the guard compares them."""
    rgb = np.asarray(pixels, dtype=np.uint8)
    gray = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.uint8)
    features = pixel_statistics(gray)
    wide = rgb.astype(np.int16)
    spread = wide.max(axis=2) - wide.min(axis=2)
    features["colourfulness"] = float(spread.mean())
    return features


@dataclass
class Verdict:
    """The guard's answer for one image."""

    accepted: bool
    reasons: list[str] = field(default_factory=list)
    distance: float | None = None

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


@dataclass
class InputGuard:
    """A fitted guard (see the module docstring); ``to_dict``/``from_dict`` for JSON."""

    low: dict[str, float]
    high: dict[str, float]
    mean: list[float]
    precision: list[list[float]]
    threshold: float
    embedding_layer: str = EMBEDDING_LAYER
    target_acceptance: float = 0.99
    fitted: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputGuard:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each embedding ``[N, D]`` to the training embeddings."""
        centred = np.asarray(embeddings, dtype=np.float64) - np.asarray(self.mean)
        precision = np.asarray(self.precision)
        squared = np.einsum("nd,de,ne->n", centred, precision, centred)
        return np.sqrt(np.maximum(squared, 0.0))

    def statistic_reasons(self, features: Mapping[str, float]) -> list[str]:
        """Why an image's statistics are outside the training ranges (empty: inside)."""
        reasons = []
        for name in FEATURES:
            value = float(features[name])
            if name == "colourfulness" and value > self.high[name]:
                reasons.append(
                    f"a colour image (colourfulness {value:.1f} > {self.high[name]:.1f}); "
                    "chest X-rays are grayscale"
                )
            elif name != "colourfulness" and not self.low[name] <= value <= self.high[name]:
                reasons.append(
                    f"{name} {value:.3g} outside the training range "
                    f"[{self.low[name]:.3g}, {self.high[name]:.3g}]"
                )
        return reasons

    def check(self, features: Mapping[str, float], distance: float) -> Verdict:
        """The verdict for one image from its statistics and its embedding distance."""
        reasons = self.statistic_reasons(features)
        if distance > self.threshold:
            reasons.append(
                f"unlike the training X-rays in the model's feature space (distance "
                f"{distance:.1f} > {self.threshold:.1f})"
            )
        return Verdict(accepted=not reasons, reasons=reasons, distance=float(distance))

    def check_batch(
        self, pixels: np.ndarray | Sequence[np.ndarray], embeddings: np.ndarray
    ) -> list[Verdict]:
        """Verdicts for prepared images ``[N, S, S, 3]`` and their embeddings ``[N, D]``."""
        distances = self.distances(embeddings)
        return [
            self.check(image_features(image), float(d))
            for image, d in zip(pixels, distances, strict=True)
        ]

    def summary(self) -> dict[str, Any]:
        """What the model version's metadata and the card show of the guard."""
        return {
            "distance_threshold": round(float(self.threshold), 3),
            "target_acceptance": self.target_acceptance,
            "embedding_layer": self.embedding_layer,
            **self.fitted,
        }


def _ranges(train_features: Sequence[Mapping[str, float]]) -> tuple[dict, dict]:
    table = {
        name: np.array([f[name] for f in train_features], dtype=np.float64) for name in FEATURES
    }
    low, high = {}, {}
    for name, values in table.items():
        span = float(values.max() - values.min())
        low[name] = float(values.min() - RANGE_MARGIN * span)
        high[name] = float(values.max() + RANGE_MARGIN * span)
    high["colourfulness"] = max(high["colourfulness"], MIN_COLOURFULNESS_LIMIT)
    low["colourfulness"] = 0.0
    return low, high


def fit_guard(
    train_features: Sequence[Mapping[str, float]],
    train_embeddings: np.ndarray,
    val_features: Sequence[Mapping[str, float]],
    val_embeddings: np.ndarray,
    target_acceptance: float = 0.99,
) -> InputGuard:
    """Fits the guard on the training split and sets its threshold on validation.

    Args:
        train_features: :func:`image_features` of each training image.
        train_embeddings: Their embeddings ``[N, D]``.
        val_features: The same for the validation images.
        val_embeddings: Their embeddings.
        target_acceptance: Share of validation images that must pass both tests.

    Returns:
        The fitted guard; ``fitted`` records the counts and the validation acceptance.

    Raises:
        ValueError: With fewer than 10 training or validation images, or a target
            outside (0.5, 1].
    """
    from sklearn.covariance import LedoitWolf

    if not 0.5 < target_acceptance <= 1.0:
        raise ValueError(f"target_acceptance must be in (0.5, 1], not {target_acceptance}")
    if len(train_features) < 10 or len(val_features) < 10:
        raise ValueError(
            f"the guard needs at least 10 training and 10 validation images "
            f"(got {len(train_features)} and {len(val_features)})"
        )
    train_embeddings = np.asarray(train_embeddings, dtype=np.float64)
    low, high = _ranges(train_features)
    estimate = LedoitWolf().fit(train_embeddings)
    guard = InputGuard(
        low=low,
        high=high,
        mean=estimate.location_.tolist(),
        precision=estimate.precision_.tolist(),
        threshold=float("inf"),
        target_acceptance=target_acceptance,
    )
    distances = guard.distances(val_embeddings)
    in_range = np.array([not guard.statistic_reasons(f) for f in val_features])
    # The smallest distance threshold with which `target_acceptance` of validation passes.
    needed = int(np.ceil(target_acceptance * len(distances)))
    candidates = np.sort(distances[in_range])
    if len(candidates) < needed:  # statistics alone refuse too many: keep every distance
        threshold = float(candidates[-1]) if len(candidates) else float(distances.max())
    else:
        threshold = float(candidates[needed - 1])
    guard.threshold = threshold * (1 + 1e-9)
    accepted = in_range & (distances <= guard.threshold)
    guard.fitted = {
        "train_images": len(train_features),
        "val_images": len(val_features),
        "val_acceptance": round(float(accepted.mean()), 4),
        "train_acceptance": round(
            float(
                np.mean(
                    [
                        not guard.statistic_reasons(f) and d <= guard.threshold
                        for f, d in zip(
                            train_features, guard.distances(train_embeddings), strict=True
                        )
                    ]
                )
            ),
            4,
        ),
        "embedding_dim": int(train_embeddings.shape[1]),
    }
    return guard


def embedding_model(model: Any, layer: str = EMBEDDING_LAYER) -> Any:
    """A Keras model with two outputs: P(PNEUMONIA) ``[N]``-like and the embedding ``[N, D]``."""
    import keras

    return keras.Model(model.inputs, [model.outputs[0], model.get_layer(layer).output])


def features_and_embeddings(
    model: Any, batches: Iterable[np.ndarray]
) -> tuple[list[dict[str, float]], np.ndarray, np.ndarray]:
    """Statistics, embeddings and probabilities of prepared image batches.

    Args:
        model: A loaded Keras model (see :func:`embedding_model`).
        batches: Prepared images, ``[n, S, S, 3]`` uint8 per batch.

    Returns:
        The features of each image, the embeddings ``[N, D]`` and P(PNEUMONIA) ``[N]``.
    """
    import tensorflow as tf

    twin = embedding_model(model)
    forward = tf.function(lambda x: twin(x, training=False))
    features: list[dict[str, float]] = []
    embeddings, probabilities = [], []
    for batch in batches:
        pixels = np.asarray(batch)
        probability, embedding = forward(pixels)
        features.extend(image_features(image) for image in pixels)
        embeddings.append(np.asarray(embedding))
        probabilities.append(np.asarray(probability).reshape(-1))
    return features, np.concatenate(embeddings), np.concatenate(probabilities)
