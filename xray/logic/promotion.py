"""Promotion rules: when a newly trained model may replace the production model.

A new version is promoted only when it passes the absolute gates (minimum test AUC and
sensitivity at its own threshold) and, if a production version exists, is not worse than
production beyond a tolerance **on the same images**: both models are scored here on
the new test split, minus any image the production model was trained or tuned on (its
numbers from another split are never compared).
"""

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from xray.logic.external import gate_checks
from xray.logic.metrics import classification_metrics, finite
from xray.logic.settings import PromotionGates

MIN_COMPARISON_IMAGES = 20
"""Fewer unseen test images than this (or one class only): compare on the whole split."""


@dataclass
class Comparison:
    """Both models scored on the same images."""

    images: int
    excluded_seen_by_production: int
    new: dict[str, float]
    production: dict[str, float]
    note: str = ""


@dataclass
class Decision:
    """The promotion outcome, recorded on the model version."""

    promoted: bool
    stage: str
    reasons: list[str]
    checks: dict[str, bool]
    production_version: str | None = None
    comparison: Comparison | None = None
    gates: dict[str, float] = field(default_factory=dict)
    awaiting_approval: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (NaN becomes None)."""
        return finite(asdict(self))

    def message(self) -> str:
        """One paragraph a person reads in the log."""
        head = "Promoted to production" if self.promoted else "Not promoted (stays staging)"
        if self.awaiting_approval:
            head = "Passed every gate; awaits sign-off in staging"
        return f"{head}: " + "; ".join(self.reasons)


def _headline(metrics: dict[str, Any]) -> dict[str, float]:
    keys = ("roc_auc", "sensitivity", "specificity", "accuracy", "threshold")
    return {k: float(metrics[k]) for k in keys if k in metrics}


def comparison_indices(
    test_hashes: list[str], seen_by_production: set[str]
) -> tuple[list[int], int]:
    """Indices of the test images the production model never saw, and how many it saw."""
    keep = [i for i, digest in enumerate(test_hashes) if digest not in seen_by_production]
    return keep, len(test_hashes) - len(keep)


def compare(
    y_true: np.ndarray,
    new_probabilities: np.ndarray,
    new_threshold: float,
    production_probabilities: np.ndarray,
    production_threshold: float,
    keep: list[int],
    excluded: int,
) -> Comparison:
    """Scores both models on the test images in ``keep`` (each at its own threshold).

    Falls back to every test image, with a note, when ``keep`` is too small or lacks a
    class: the production model then may have seen some of them, which flatters it.
    """
    y = np.asarray(y_true).astype(int)
    note = ""
    if len(keep) < MIN_COMPARISON_IMAGES or len(np.unique(y[keep])) < 2:
        if excluded:
            note = (
                f"only {len(keep)} test image(s) unseen by production (or one class): "
                f"compared on all {len(y)}, {excluded} of which production was trained "
                "or tuned on (its figures are optimistic)"
            )
        keep = list(range(len(y)))
        excluded_count = 0
    else:
        excluded_count = excluded
    idx = np.asarray(keep, dtype=int)
    new = classification_metrics(y[idx], np.asarray(new_probabilities)[idx], new_threshold)
    old = classification_metrics(
        y[idx], np.asarray(production_probabilities)[idx], production_threshold
    )
    return Comparison(len(idx), excluded_count, _headline(new), _headline(old), note)


def decide(
    metrics: dict[str, Any],
    gates: PromotionGates,
    comparison: Comparison | None = None,
    production_version: str | None = None,
    external: dict[str, dict[str, Any]] | None = None,
) -> Decision:
    """Applies the gates.

    Args:
        metrics: The new model's test metrics (``roc_auc``, ``sensitivity``).
        gates: The thresholds.
        comparison: Both models on the same images; None when there is no production
            version (the first model needs only the absolute gates).
        production_version: The current production version's number, for the record.
        external: Per external test set, its scores (:func:`xray.logic.external.score_set`);
            checked only against the ``min_external_*`` gates that are set.

    Returns:
        The decision with a reason for every gate, passed or not.
    """
    auc, sens = float(metrics["roc_auc"]), float(metrics["sensitivity"])
    checks: dict[str, bool] = {}
    reasons: list[str] = []

    def check(name: str, ok: bool, text: str) -> None:
        checks[name] = bool(ok)
        reasons.append(("" if ok else "FAILED ") + text)

    check(
        "min_auc",
        math.isfinite(auc) and auc >= gates.min_auc,
        f"test AUC {auc:.3f} vs minimum {gates.min_auc:.3f}",
    )
    check(
        "min_sensitivity",
        math.isfinite(sens) and sens >= gates.min_sensitivity,
        f"test sensitivity {sens:.3f} vs minimum {gates.min_sensitivity:.3f}",
    )
    minimums = {
        "auc": gates.min_external_auc,
        "sensitivity": gates.min_external_sensitivity,
        "specificity": gates.min_external_specificity,
    }
    for name, ok, text in gate_checks(external or {}, minimums):
        check(name, ok, text)
    if comparison is None:
        reasons.append("no production version yet")
    else:
        new, old = comparison.new, comparison.production
        where = f"on the same {comparison.images} test images"
        check(
            "not_worse_auc",
            new["roc_auc"] >= old["roc_auc"] - gates.max_auc_drop,
            f"AUC {new['roc_auc']:.3f} vs production v{production_version} "
            f"{old['roc_auc']:.3f} {where} (tolerance {gates.max_auc_drop:.3f})",
        )
        check(
            "not_worse_sensitivity",
            new["sensitivity"] >= old["sensitivity"] - gates.max_sensitivity_drop,
            f"sensitivity {new['sensitivity']:.3f} vs production {old['sensitivity']:.3f} "
            f"(tolerance {gates.max_sensitivity_drop:.3f})",
        )
        if comparison.note:
            reasons.append(comparison.note)
    passed = all(checks.values())
    awaiting = passed and gates.require_approval
    if awaiting:
        reasons.append(
            "awaiting sign-off (require_approval): python run.py approve VERSION --by NAME "
            "--note TEXT"
        )
    promoted = passed and not awaiting
    return Decision(
        promoted=promoted,
        stage="production" if promoted else "staging",
        reasons=reasons,
        checks=checks,
        production_version=production_version,
        comparison=comparison,
        gates=gates.model_dump(),
        awaiting_approval=awaiting,
    )
