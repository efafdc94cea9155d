"""Decision threshold selection and binary classification metrics (PNEUMONIA positive).

scikit-learn is imported inside the functions: this module is imported when the pipeline
is defined, and a cached re-run should not pay for it.
"""

from dataclasses import dataclass

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
            f"Unknown threshold rule {rule!r}; set evaluate_model.threshold_rule to one of "
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
