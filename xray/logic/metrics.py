"""Decision threshold selection and binary classification metrics (PNEUMONIA positive).

scikit-learn is imported inside the functions: this module is imported when the pipeline
is defined, and a cached re-run should not pay for it.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

THRESHOLD_RULES = ("target_sensitivity", "youden")


@dataclass(frozen=True)
class Threshold:
    """A decision threshold and how it was chosen."""

    value: float
    rule: str
    val_sensitivity: float
    val_specificity: float


def choose_threshold(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    rule: str = "target_sensitivity",
    target_sensitivity: float = 0.95,
) -> Threshold:
    """Chooses the decision threshold on validation data.

    Args:
        y_true: Validation labels (1 = PNEUMONIA).
        probabilities: Validation P(PNEUMONIA).
        rule: ``target_sensitivity`` (the highest threshold whose validation sensitivity
            reaches the target, so specificity is as high as it can be) or ``youden``
            (maximise sensitivity + specificity - 1).
        target_sensitivity: The sensitivity to reach with ``target_sensitivity``.

    Returns:
        The threshold with its validation sensitivity and specificity.

    Raises:
        ValueError: For an unknown rule, or validation data without both classes.
    """
    from sklearn.metrics import roc_curve

    y = np.asarray(y_true).astype(int)
    p = np.asarray(probabilities, dtype=np.float64)
    if rule not in THRESHOLD_RULES:
        raise ValueError(
            f"Unknown threshold rule {rule!r}; set evaluate_model.config.threshold_rule to one of "
            f"{', '.join(THRESHOLD_RULES)}."
        )
    if len(np.unique(y)) < 2:
        raise ValueError("The validation split needs both classes to choose a threshold.")
    if not 0 < target_sensitivity <= 1:
        raise ValueError(f"target_sensitivity must be in (0, 1], not {target_sensitivity}.")
    fpr, tpr, thresholds = roc_curve(y, p, drop_intermediate=False)
    # roc_curve's first threshold is +inf; a probability threshold lives in [0, 1].
    thresholds = np.clip(thresholds, 0.0, 1.0)
    if rule == "youden":
        best = int(np.argmax(tpr - fpr))
    else:
        reaching = np.flatnonzero(tpr >= target_sensitivity - 1e-12)
        best = int(reaching[0])  # thresholds decrease along the curve: first = highest
    return Threshold(
        value=float(thresholds[best]),
        rule=rule,
        val_sensitivity=float(tpr[best]),
        val_specificity=float(1.0 - fpr[best]),
    )


def classification_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, threshold: float
) -> dict[str, float | int]:
    """Metrics at ``threshold`` (predict PNEUMONIA when P >= threshold) plus ROC/PR AUC.

    Returns:
        accuracy, sensitivity (recall of PNEUMONIA), specificity, precision, f1, roc_auc,
        pr_auc, the confusion counts tn/fp/fn/tp, n, and the threshold. AUCs are NaN
        when only one class is present.
    """
    from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

    y = np.asarray(y_true).astype(int)
    p = np.asarray(probabilities, dtype=np.float64)
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, pred, labels=[0, 1]).ravel())

    def ratio(num: int, den: int) -> float:
        return float(num / den) if den else float("nan")

    precision = ratio(tp, tp + fp)
    sensitivity = ratio(tp, tp + fn)
    both = len(np.unique(y)) == 2
    return {
        "accuracy": ratio(tp + tn, len(y)),
        "sensitivity": sensitivity,
        "specificity": ratio(tn, tn + fp),
        "precision": precision,
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "tp": tp,
        "n": len(y),
        "threshold": float(threshold),
    }


def curves(y_true: np.ndarray, probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """ROC (fpr, tpr) and precision-recall (precision, recall) curve points."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    fpr, tpr, _ = roc_curve(y_true, probabilities)
    precision, recall, _ = precision_recall_curve(y_true, probabilities)
    return {"fpr": fpr, "tpr": tpr, "precision": precision, "recall": recall}


BOOTSTRAP_METRICS = ("roc_auc", "pr_auc", "accuracy", "sensitivity", "specificity")


def _resampled_metrics(
    y: np.ndarray, p: np.ndarray, threshold: float, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """The bootstrap metrics of each resample; NaN where undefined.

    A resample is a row of ``weights``: how many times each image was drawn (an image of
    a patient drawn twice counts twice). AUCs come from counts per distinct probability,
    not from sorting every resample: with ``u`` the sorted distinct probabilities, a
    resample is two weighted count vectors over ``u`` (negatives and positives), and ROC
    AUC (ties count one half) and average precision (scikit-learn's step-wise
    definition) are cumulative sums over them.
    """
    n_rows = weights.shape[0]
    values, position = np.unique(p, return_inverse=True)
    k = len(values)
    keys = position * 2 + y  # the same for every resample; only the weights differ
    counts = np.stack([np.bincount(keys, weights=row, minlength=k * 2) for row in weights])
    counts = counts.reshape(n_rows, k, 2)
    neg, pos = counts[..., 0], counts[..., 1]
    n_neg, n_pos = neg.sum(axis=1), pos.sum(axis=1)
    both = (n_neg > 0) & (n_pos > 0)

    with np.errstate(divide="ignore", invalid="ignore"):
        neg_below = np.cumsum(neg, axis=1) - neg
        roc_auc = (pos * (neg_below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
        # Thresholds from the highest probability down: positives and predicted positives.
        tp = np.cumsum(pos[:, ::-1], axis=1)
        predicted = tp + np.cumsum(neg[:, ::-1], axis=1)
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1e-12), 0.0)
        pr_auc = (pos[:, ::-1] * precision).sum(axis=1) / n_pos

        predicted_positive = p >= threshold
        true_pos = weights @ (predicted_positive & (y == 1)).astype(np.float64)
        true_neg = weights @ (~predicted_positive & (y == 0)).astype(np.float64)
        return {
            "roc_auc": np.where(both, roc_auc, np.nan),
            "pr_auc": np.where(both, pr_auc, np.nan),
            "accuracy": (true_pos + true_neg) / weights.sum(axis=1),
            "sensitivity": np.where(n_pos > 0, true_pos / n_pos, np.nan),
            "specificity": np.where(n_neg > 0, true_neg / n_neg, np.nan),
        }


def bootstrap_intervals(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    threshold: float,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    groups: Sequence[str] | None = None,
) -> dict[str, list[float]]:
    """Percentile bootstrap confidence intervals of the headline metrics.

    With ``groups`` (the patient of each image) patients are resampled with replacement,
    each drawn patient bringing all of its images: a cluster bootstrap, right for data
    with several images per patient, whose images are not independent. Without it,
    images are resampled. Each metric is computed on every resample (at the fixed
    ``threshold``, predicting PNEUMONIA when P >= threshold) and the interval is the
    central ``level`` range of those values.

    Args:
        y_true: Labels (1 = PNEUMONIA).
        probabilities: P(PNEUMONIA) per image.
        threshold: The operating threshold (chosen on validation data, not here).
        n_resamples: Number of bootstrap resamples.
        level: Coverage of the interval, e.g. 0.95.
        seed: Seed of the resampling; the same inputs and seed give the same intervals.
        groups: The patient (or any cluster key) of each image; None resamples images.

    Returns:
        ``{"roc_auc": [low, high], "pr_auc": ..., "accuracy": ..., "sensitivity": ...,
        "specificity": ...}``. Resamples where a metric is undefined (a class missing) are
        skipped for that metric; when fewer than half are usable, its interval is
        ``[nan, nan]``.

    Raises:
        ValueError: For empty or mismatched inputs, ``n_resamples < 1`` or ``level``
            outside (0, 1).
    """
    y = np.asarray(y_true).astype(int).ravel()
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    if len(y) == 0 or len(y) != len(p) or (groups is not None and len(groups) != len(y)):
        raise ValueError(
            f"bootstrap_intervals needs as many labels as probabilities (and groups), at "
            f"least one; got {len(y)} labels, {len(p)} probabilities"
            + ("" if groups is None else f" and {len(groups)} groups")
            + "."
        )
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, not {n_resamples}.")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95, not {level}.")

    if groups is None:
        cluster = np.arange(len(y))
    else:
        index: dict[str, int] = {}  # clusters numbered in order of first appearance
        cluster = np.array([index.setdefault(str(g), len(index)) for g in groups])
    n_clusters = int(cluster.max()) + 1
    rng = np.random.default_rng(seed)
    # Chunks bound the memory of the (resamples x images) weight and count arrays.
    chunk = max(1, min(n_resamples, 2_000_000 // len(y)))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in BOOTSTRAP_METRICS}
    for start in range(0, n_resamples, chunk):
        rows = min(chunk, n_resamples - start)
        drawn = rng.integers(0, n_clusters, size=(rows, n_clusters))
        per_cluster = np.stack([np.bincount(r, minlength=n_clusters) for r in drawn])
        weights = per_cluster[:, cluster].astype(np.float64)
        for name, values in _resampled_metrics(y, p, threshold, weights).items():
            parts[name].append(values)

    tail = (1 - level) / 2 * 100
    intervals: dict[str, list[float]] = {}
    for name in BOOTSTRAP_METRICS:
        values = np.concatenate(parts[name])
        usable = values[~np.isnan(values)]
        if len(usable) * 2 < n_resamples:
            intervals[name] = [float("nan"), float("nan")]
        else:
            low, high = np.percentile(usable, [tail, 100 - tail])
            intervals[name] = [float(low), float(high)]
    return intervals


def calibration_summary(
    y_true: np.ndarray, probabilities: np.ndarray, n_bins: int = 10
) -> dict[str, Any]:
    """Reliability of the probabilities: expected calibration error, Brier score, bins.

    Args:
        y_true: Labels (1 = PNEUMONIA).
        probabilities: P(PNEUMONIA) per image, in [0, 1].
        n_bins: Number of equal-width bins on [0, 1]; a bin holds ``lower <= p < upper``,
            the last one also ``p == 1``.

    Returns:
        ``{"ece", "brier", "n_bins", "bins"}``. ``bins`` lists every bin as ``{"lower",
        "upper", "count", "mean_probability", "fraction_positive"}`` (the two means NaN
        in an empty bin). ECE is the sum over non-empty bins of
        ``count / n * |fraction_positive - mean_probability|``; Brier is the mean of
        ``(p - y) ** 2``.

    Raises:
        ValueError: For empty or mismatched inputs, probabilities outside [0, 1] or NaN,
            or ``n_bins < 1``.
    """
    y = np.asarray(y_true).astype(np.float64).ravel()
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    if len(y) == 0 or len(y) != len(p):
        raise ValueError(
            f"calibration_summary needs as many labels as probabilities, at least one; "
            f"got {len(y)} labels and {len(p)} probabilities."
        )
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("calibration_summary needs probabilities in [0, 1], without NaN.")
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, not {n_bins}.")

    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_probability = np.bincount(which, weights=p, minlength=n_bins) / counts
        fraction_positive = np.bincount(which, weights=y, minlength=n_bins) / counts
    filled = counts > 0
    gaps = np.abs(fraction_positive[filled] - mean_probability[filled])
    return {
        "ece": float(np.sum(counts[filled] / len(p) * gaps)),
        "brier": float(np.mean((p - y) ** 2)),
        "n_bins": int(n_bins),
        "bins": [
            {
                "lower": float(edges[i]),
                "upper": float(edges[i + 1]),
                "count": int(counts[i]),
                "mean_probability": float(mean_probability[i]),
                "fraction_positive": float(fraction_positive[i]),
            }
            for i in range(n_bins)
        ],
    }


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) in nested dicts and lists made
    None, so that it is valid JSON for the ZenML server and its dashboard."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
