"""Judging a window of served predictions: live quality on the labelled ones against the
version's test figures, the shift of what the service answers, the guard's refusals, and
a challenger in shadow beside production on the same requests.

Inputs are the prediction log's tables (:meth:`xray.io.prediction_log.PredictionStore.window`):
one row per answer and role, and the feedback (one true label per ``inference_id``).
"""

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from xray.logic.constants import CLASS_NAMES, UNKNOWN_LABEL
from xray.logic.metrics import bootstrap_intervals, classification_metrics, finite
from xray.logic.records import (
    DriftResult,
    LiveQuality,
    Metrics,
    MonitoringReport,
    ShadowComparison,
)
from xray.logic.settings import MonitoringSettings

HISTOGRAM_EDGES = [round(0.1 * i, 1) for i in range(11)]
LIVE_KEYS = {
    "accuracy": "accuracy",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "auc": "roc_auc",
}
"""``monitoring.json``'s live keys -> the metric names of :class:`Metrics`."""


def parse_time(value: str, name: str) -> datetime:
    """An ISO time (``2026-12-01``, ``2026-12-01T08:00``, with or without a zone; no zone
    is UTC).

    Raises:
        ValueError: Naming the parameter and the expected form.
    """
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{name}={value!r} is not an ISO time; e.g. 2026-12-01 or 2026-12-01T08:00:00+00:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def labelled(answers: pd.DataFrame, feedback: pd.DataFrame) -> pd.DataFrame:
    """The answers that have a true label (``truth``: 1 for PNEUMONIA); answers whose label
    the guard withheld are left out (nobody acted on them)."""
    truth = feedback.set_index("inference_id")["label"]
    rows = answers[answers["inference_id"].isin(truth.index) & answers["label"].notna()]
    truth_of = truth.reindex(rows["inference_id"]).to_numpy()
    return rows.assign(truth=(truth_of == CLASS_NAMES[1]).astype(int))


def live_quality(answers: pd.DataFrame, resamples: int = 1000, seed: int = 0) -> LiveQuality:
    """A model's figures on labelled answers (see :func:`labelled`), at its threshold.

    Args:
        answers: One model's labelled answers (``probability``, ``threshold``, ``truth``).
        resamples: Bootstrap resamples of the 95 % intervals (requests resampled).
        seed: The bootstrap seed.
    """
    version = str(answers["model_version"].iloc[0]) if len(answers) else ""
    if answers.empty:
        return LiveQuality(model_version=version, n_labelled=0)
    y = answers["truth"].to_numpy()
    p = answers["probability"].to_numpy(dtype=np.float64)
    threshold = float(answers["threshold"].iloc[0])
    metrics = Metrics.model_validate(classification_metrics(y, p, threshold))
    intervals = bootstrap_intervals(y, p, threshold, n_resamples=resamples, seed=seed)
    return LiveQuality(
        model_version=version, n_labelled=len(y), metrics=metrics, intervals=intervals
    )


def degradation(
    live: LiveQuality, reference: Metrics, config: MonitoringSettings
) -> tuple[bool, list[str]]:
    """Whether live quality is judged (enough labels) and every figure that fell below
    the test figure by more than its tolerance.

    Returns:
        ``(judged, reasons)``; no reasons when not judged.
    """
    if live.metrics is None or live.n_labelled < config.min_labelled:
        return False, []
    tolerances = {
        "accuracy": config.max_accuracy_drop,
        "sensitivity": config.max_sensitivity_drop,
        "specificity": config.max_specificity_drop,
        "roc_auc": config.max_auc_drop,
    }
    reasons = []
    for name, tolerance in tolerances.items():
        now, then = getattr(live.metrics, name), getattr(reference, name)
        if math.isnan(now) or math.isnan(then):
            continue
        if now < then - tolerance:
            interval = live.intervals.get(name)
            shown = f" (95 % CI {interval[0]:.3f}-{interval[1]:.3f})" if interval else ""
            reasons.append(
                f"live {name} {now:.3f}{shown} is below the test figure {then:.3f} by more "
                f"than {tolerance:.2f} ({live.n_labelled} labelled predictions)"
            )
    return True, reasons


def shadow_comparison(
    predictions: pd.DataFrame, feedback: pd.DataFrame, resamples: int = 1000
) -> ShadowComparison | None:
    """The challenger beside production on the requests both scored: label agreement
    and, with labels, both models' live figures on the same labelled requests."""
    challenger = predictions[predictions["role"] == "challenger"]
    if challenger.empty:
        return None
    production = predictions[predictions["role"] == "production"]
    both = production.merge(challenger, on="inference_id", suffixes=("", "_challenger"))
    answered = both[both["label"].notna()]
    agreement = (
        float((answered["label"] == answered["label_challenger"]).mean()) if len(answered) else None
    )
    ids = set(answered["inference_id"])
    own = labelled(production[production["inference_id"].isin(ids)], feedback)
    theirs = labelled(challenger[challenger["inference_id"].isin(ids)], feedback)
    return ShadowComparison(
        challenger_version=str(challenger["model_version"].iloc[-1]),
        n_compared=len(both),
        agreement=agreement,
        production=live_quality(own, resamples),
        challenger=live_quality(theirs, resamples),
    )


def assess(
    predictions: pd.DataFrame,
    feedback: pd.DataFrame,
    reference: Metrics,
    drift: DriftResult,
    config: MonitoringSettings,
    window: tuple[str | None, str | None] = (None, None),
) -> MonitoringReport:
    """The monitoring report of one window of the production version's answers.

    Args:
        predictions: The window's logged answers, both roles.
        feedback: The true labels received for them.
        reference: The production version's test figures (its evaluation).
        drift: The served images' statistics against the version's training images.
        config: Tolerances and limits (:class:`MonitoringSettings`).
        window: The window's ``since`` and ``until`` (ISO times), for the report.

    Returns:
        Live figures with intervals, degradation and its reasons, drift, the answers'
        positive rate and probability histogram, the guard's refusal share, the shadow
        comparison and every alert.
    """
    production = predictions[predictions["role"] == "production"]
    version = str(production["model_version"].iloc[-1]) if len(production) else ""
    live = live_quality(labelled(production, feedback), config.bootstrap_resamples)
    live.model_version = live.model_version or version
    judged, reasons = degradation(live, reference, config)
    p = production["probability"].to_numpy(dtype=np.float64)
    positive_rate = float((p >= production["threshold"].to_numpy()).mean()) if len(p) else None
    reference_rate = (reference.tp + reference.fp) / reference.n if reference.n else None
    counts, _ = np.histogram(p, bins=HISTOGRAM_EDGES)
    accepted = production["accepted"]
    judged_by_guard = accepted.notna()
    refusal_share = (
        float((accepted[judged_by_guard] == False).mean())  # noqa: E712 - a pandas mask
        if judged_by_guard.any()
        else None
    )
    alerts = list(reasons)
    if drift.drift_detected:
        alerts.append(
            f"data drift: {len(drift.drifted_features)} statistic(s) of the served images "
            f"drifted from the training images (share {drift.share_drifted:.2f} > "
            f"{drift.max_drift_share:.2f}): {', '.join(drift.drifted_features)}"
        )
    if positive_rate is not None and reference_rate is not None:
        shift = positive_rate - reference_rate
        if abs(shift) > config.max_positive_rate_shift:
            alerts.append(
                f"prediction shift: {positive_rate:.1%} of answers are PNEUMONIA against "
                f"{reference_rate:.1%} on the test split (limit ±"
                f"{config.max_positive_rate_shift:.0%})"
            )
    if refusal_share is not None and refusal_share > config.max_refusal_share:
        alerts.append(
            f"input guard: {refusal_share:.1%} of requests were not accepted (limit "
            f"{config.max_refusal_share:.0%}): clients send images this model cannot judge"
        )
    metrics = live.metrics
    return MonitoringReport(
        model_version=version,
        since=window[0],
        until=window[1],
        n_predictions=len(production),
        n_labelled=live.n_labelled,
        live={
            key: (None if metrics is None else finite(getattr(metrics, name)))
            for key, name in LIVE_KEYS.items()
        },
        live_intervals=live.intervals,
        reference={key: float(getattr(reference, name)) for key, name in LIVE_KEYS.items()},
        quality_judged=judged,
        performance_degraded=bool(reasons),
        degradation_reasons=reasons,
        drift_detected=drift.drift_detected,
        drift_tested=drift.tested,
        share_drifted=drift.share_drifted,
        drifted_features=drift.drifted_features,
        positive_rate=positive_rate,
        reference_positive_rate=reference_rate,
        probability_histogram={"edges": HISTOGRAM_EDGES, "counts": counts.tolist()},
        refusal_share=refusal_share,
        alerts=alerts,
        shadow=shadow_comparison(predictions, feedback, config.bootstrap_resamples),
    )


def served_statistics_table(predictions: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The production answers' image statistics as the drift check reads them, like
    batch inference's table (split ``new``, label unknown, the file's mode); rows logged
    without statistics are left out."""
    production = predictions[predictions["role"] == "production"]
    present = [c for c in columns if c in production.columns]
    table = production[present].apply(pd.to_numeric, errors="coerce")
    table = table.dropna(how="any") if present else table
    mode = production["mode"] if "mode" in production.columns else pd.Series(dtype=str)
    return table.reindex(columns=columns).assign(
        split="new", label=UNKNOWN_LABEL, mode=mode.reindex(table.index).fillna("unknown")
    )


def as_json(report: MonitoringReport) -> dict[str, Any]:
    """``monitoring.json``: the report, NaN as null."""
    return finite(report.model_dump())
