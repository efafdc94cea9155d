"""External test sets: labelled images from another site or collection, scored by the
final model at the final threshold and never used for any choice.

An in-split test set comes from the same collection as the training images, so it
overstates how the model does on the next hospital's images (on the official Kaggle test
split, an earlier model with in-split AUC 0.994 scored 0.924). External sets measure
that directly. They are loaded like the training data (same layouts, same checks), must
hold both classes, and lose any image that is not external after all: byte-identical to
a training, validation or test image, or of a patient whose id also appears there.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

from xray.logic.dataset import ImageDataset, concatenate
from xray.logic.metrics import bootstrap_intervals, classification_metrics

HEADLINE = ("roc_auc", "accuracy", "sensitivity", "specificity")


def folder_names(roots: list[str], fallback: str) -> list[str]:
    """A short unique name per folder: its last path part, ``-2``, ``-3``… on clashes."""
    names: list[str] = []
    for root in roots:
        base = root.rstrip("/").rsplit("/", 1)[-1] or fallback
        name, n = base, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.append(name)
    return names


def set_names(roots: Sequence[str]) -> list[str]:
    """A short unique name per external folder (:func:`folder_names`)."""
    return folder_names(list(roots), fallback="external")


def combine(parts: Sequence[tuple[str, ImageDataset]]) -> ImageDataset:
    """One data set of all external sets; ``origins`` holds each image's set name and its
    path is prefixed with it."""
    renamed = []
    for name, dataset in parts:
        part = dataset.subset(range(len(dataset)))
        part.origins = [name] * len(part)
        part.paths = [f"{name}/{path}" for path in dataset.paths]
        part.source = dataset.source
        renamed.append(part)
    combined = concatenate(renamed)
    combined.source = " + ".join(dataset.source for _, dataset in parts)
    return combined


def drop_overlaps(
    external: ImageDataset, internal: Sequence[ImageDataset]
) -> tuple[ImageDataset, list[dict[str, str]]]:
    """Removes external images that the run's own splits already have.

    Args:
        external: The external images.
        internal: The run's train, validation and test sets.

    Returns:
        The images that are really external, and one entry per dropped image: ``file``,
        ``internal_file`` (what it matches) and ``reason`` (identical bytes, or a shared
        patient id parsed from the file names).
    """
    import hashlib

    by_hash: dict[bytes, str] = {}
    by_patient: dict[str, str] = {}
    for part in internal:
        for data, patient, path in zip(part.images, part.patients, part.paths, strict=True):
            by_hash.setdefault(hashlib.sha256(data).digest(), path)
            if not patient.startswith("file:"):
                by_patient.setdefault(patient, path)
    keep, dropped = [], []
    for i, (data, patient) in enumerate(zip(external.images, external.patients, strict=True)):
        same = by_hash.get(hashlib.sha256(data).digest())
        if same is not None:
            dropped.append(
                {"file": external.paths[i], "internal_file": same, "reason": "identical bytes"}
            )
        elif patient in by_patient:
            dropped.append(
                {
                    "file": external.paths[i],
                    "internal_file": by_patient[patient],
                    "reason": f"patient {patient} is in this run's own splits",
                }
            )
        else:
            keep.append(i)
    return external.subset(keep), dropped


def score_set(
    labels: np.ndarray,
    probabilities: np.ndarray,
    patients: Sequence[str],
    threshold: float,
    n_resamples: int = 1000,
) -> dict[str, Any]:
    """Metrics of one external set at the run's threshold, with patient-bootstrap 95 %
    intervals.

    Returns:
        ``{"metrics": ..., "intervals": ..., "n": ..., "class_counts": ...,
        "patients": ...}``.
    """
    y = np.asarray(labels).astype(int)
    return {
        "metrics": classification_metrics(y, probabilities, threshold),
        "intervals": bootstrap_intervals(
            y, probabilities, threshold, n_resamples=n_resamples, groups=patients
        ),
        "n": len(y),
        "class_counts": {"NORMAL": int((y == 0).sum()), "PNEUMONIA": int((y == 1).sum())},
        "patients": len(set(patients)),
    }


def gate_checks(
    external: dict[str, dict[str, Any]], minimums: dict[str, float | None]
) -> list[tuple[str, bool, str]]:
    """The promotion gate's external checks: every set against every configured minimum.

    Args:
        external: Per set name, :func:`score_set`'s result.
        minimums: ``{"auc": 0.9, "sensitivity": None, ...}``; None switches a check off.

    Returns:
        ``(name, passed, detail)`` per check; none when no minimum is set. A minimum set
        while the run has no external set is one failed check (the gate asks for
        evidence the run does not have).
    """
    metric_of = {"auc": "roc_auc", "sensitivity": "sensitivity", "specificity": "specificity"}
    active = {k: v for k, v in minimums.items() if v is not None}
    if not active:
        return []
    if not external:
        wanted = ", ".join(f"min_external_{k}" for k in active)
        return [("external sets", False, f"{wanted} set, but the run has no --external-test")]
    checks = []
    for name, result in external.items():
        for key, minimum in active.items():
            value = float(result["metrics"][metric_of[key]])
            checks.append(
                (
                    f"external {name} {key}",
                    value >= minimum,
                    f"external {name} {key} {value:.3f} vs minimum {minimum:.3f}",
                )
            )
    return checks
