"""The input-domain guard: is this a chest X-ray this model can judge?

A classifier answers every input with a confident label, a photograph included. The
guard refuses what lies outside the training data, with two tests on what the model sees
(the prepared ``[S, S, 3]`` uint8 image):

1. **Colour** (:func:`image_features`): the mean spread between the colour channels. A
   radiograph has none; the limit is the training split's largest value times 1.5 (never
   below :data:`MIN_COLOURFULNESS_LIMIT`, the colour noise of a grayscale JPEG).
2. **Distance in the model's own feature space**: the Mahalanobis distance of the
   penultimate-layer embedding (the ``pool`` layer) to the training embeddings (mean and
   a shrunk covariance, Ledoit-Wolf). Its threshold is the conformal quantile of the
   validation distances: the ``ceil((n + 1) * target_acceptance)``-th smallest of ``n``,
   so that a new in-distribution image passes with probability at least
   ``target_acceptance``. With too few validation images for that (``n + 1`` below
   ``1 / (1 - target)``, e.g. 200 for 0.995) no threshold can promise it: the distance
   test is then off (``threshold`` None) and only the colour test runs; the fit says so.

Why not ranges of intensity statistics as well: measured in ``benchmarks/input_guard.py``,
they refused nothing of the non-X-ray corpus that the distance did not already refuse,
while they refused legitimate acquisition changes (brighter exposure, edge enhancement)
that the model handles.

The fitted guard is a small JSON document stored with the model version and inside the
Bento (``guard.json`` beside ``model.keras``). Pure NumPy: the service imports this without
TensorFlow; :func:`embedding_model` (Keras) is imported lazily.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xray.logic.settings import GuardSettings

EMBEDDING_LAYER = "pool"
COLOUR_MARGIN = 1.5
"""The colourfulness limit is the training maximum times this."""
MIN_COLOURFULNESS_LIMIT = 6.0
"""Colour noise a grayscale JPEG can carry: the colourfulness limit is never below this."""
DEFAULT_TARGET_ACCEPTANCE: float = GuardSettings.model_fields["target_acceptance"].default


def image_features(pixels: np.ndarray) -> dict[str, float]:
    """What the guard measures on one prepared image (``[S, S, 3]`` uint8): its
    ``colourfulness`` (mean over pixels of the largest minus the smallest channel)."""
    wide = np.asarray(pixels, dtype=np.int16)
    red, green, blue = wide[..., 0], wide[..., 1], wide[..., 2]
    # Element-wise over the three planes: the same numbers as max/min along the channel
    # axis, about 10 times faster (NumPy reduces a length-3 last axis slowly).
    spread = np.maximum(np.maximum(red, green), blue) - np.minimum(np.minimum(red, green), blue)
    return {"colourfulness": float(spread.mean())}


@dataclass
class Verdict:
    """The guard's answer for one image."""

    accepted: bool
    reasons: list[str] = field(default_factory=list)
    distance: float | None = None

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def withholds_label(verdict: Verdict | None, mode: str) -> bool:
    """True when an image gets no label: the guard refused it and the mode is ``refuse``."""
    return verdict is not None and not verdict.accepted and mode == "refuse"


class InputGuard(BaseModel):
    """A fitted guard (see the module docstring): the ``input_guard`` artifact, and
    ``guard.json`` in the BentoML model (``to_dict``/``from_dict``)."""

    model_config = ConfigDict(extra="ignore")

    colour_limit: float
    mean: list[float]
    precision: list[list[float]]
    threshold: float | None = Field(
        description="largest accepted distance; None: too few validation images, no distance test"
    )
    embedding_layer: str = EMBEDDING_LAYER
    target_acceptance: float = DEFAULT_TARGET_ACCEPTANCE
    fitted: dict[str, Any] = Field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputGuard:
        return cls.model_validate(dict(data))

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each embedding ``[N, D]`` to the training embeddings."""
        centred = np.asarray(embeddings, dtype=np.float64) - np.asarray(self.mean)
        precision = np.asarray(self.precision)
        squared = np.einsum("nd,de,ne->n", centred, precision, centred)
        return np.sqrt(np.maximum(squared, 0.0))

    def statistic_reasons(self, features: Mapping[str, float]) -> list[str]:
        """Why an image's statistics rule it out (empty: they do not)."""
        value = float(features["colourfulness"])
        if value > self.colour_limit:
            return [
                f"a colour image (colourfulness {value:.1f} > {self.colour_limit:.1f}); "
                "chest X-rays are grayscale"
            ]
        return []

    def check(self, features: Mapping[str, float], distance: float) -> Verdict:
        """The verdict for one image from its statistics and its embedding distance."""
        reasons = self.statistic_reasons(features)
        if self.threshold is not None and distance > self.threshold:
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
            "distance_threshold": None if self.threshold is None else round(self.threshold, 3),
            "colour_limit": round(float(self.colour_limit), 3),
            "target_acceptance": self.target_acceptance,
            "embedding_layer": self.embedding_layer,
            **self.fitted,
        }


def fit_guard(
    train_features: Sequence[Mapping[str, float]],
    train_embeddings: np.ndarray,
    val_features: Sequence[Mapping[str, float]],
    val_embeddings: np.ndarray,
    target_acceptance: float = DEFAULT_TARGET_ACCEPTANCE,
) -> InputGuard:
    """Fits the guard on the training split and sets its threshold on validation.

    Args:
        train_features: :func:`image_features` of each training image.
        train_embeddings: Their embeddings ``[N, D]``.
        val_features: The same for the validation images.
        val_embeddings: Their embeddings.
        target_acceptance: Share of validation images that must pass both tests.

    Returns:
        The fitted guard; ``fitted`` records the counts and the acceptance on the
        training and validation splits.

    Raises:
        ValueError: With fewer than 2 training images, no validation image, or a target
            outside (0.5, 1).
    """
    from sklearn.covariance import LedoitWolf

    if not 0.5 < target_acceptance < 1.0:
        raise ValueError(f"target_acceptance must be in (0.5, 1), not {target_acceptance}")
    if len(train_features) < 2 or len(val_features) < 1:
        raise ValueError(
            f"the guard needs at least 2 training images and 1 validation image "
            f"(got {len(train_features)} and {len(val_features)})"
        )
    train_embeddings = np.asarray(train_embeddings, dtype=np.float64)
    colour = max(f["colourfulness"] for f in train_features)
    estimate = LedoitWolf().fit(train_embeddings)
    guard = InputGuard(
        colour_limit=max(COLOUR_MARGIN * colour, MIN_COLOURFULNESS_LIMIT),
        mean=estimate.location_.tolist(),
        precision=estimate.precision_.tolist(),
        threshold=float("inf"),
        target_acceptance=target_acceptance,
    )
    distances = guard.distances(val_embeddings)
    in_range = np.array([not guard.statistic_reasons(f) for f in val_features])
    # Conformal: the k-th smallest of n validation distances, k = ceil((n + 1) * target).
    candidates = np.sort(distances[in_range])
    rank = int(np.ceil((len(candidates) + 1) * target_acceptance))
    guard.threshold = (
        float(candidates[rank - 1]) * (1 + 1e-9) if 0 < rank <= len(candidates) else None
    )

    def acceptance(features: Sequence[Mapping[str, float]], embeddings: np.ndarray) -> float:
        verdicts = [
            guard.check(f, float(d))
            for f, d in zip(features, guard.distances(embeddings), strict=True)
        ]
        return round(float(np.mean([v.accepted for v in verdicts])), 4)

    guard.fitted = {
        "train_images": len(train_features),
        "val_images": len(val_features),
        "val_acceptance": acceptance(val_features, val_embeddings),
        "train_acceptance": acceptance(train_features, train_embeddings),
        "embedding_dim": int(train_embeddings.shape[1]),
        "distance_test": guard.threshold is not None,
    }
    if guard.threshold is None:
        guard.fitted["note"] = (
            f"{len(candidates)} validation images are too few to set a distance threshold "
            f"that accepts {target_acceptance:.1%} of in-distribution images (at least "
            f"{int(np.ceil(1 / (1 - target_acceptance))) - 1} are needed): only the "
            "colour test runs"
        )
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
