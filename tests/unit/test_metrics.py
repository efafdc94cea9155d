import math

import numpy as np
import pytest

from xray.logic.metrics import (
    _resampled_metrics,
    bootstrap_intervals,
    calibration_summary,
    choose_threshold,
    classification_metrics,
)
from xray.reporting.plots import reliability_figure


def _scores(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(0, 0.25, n), 0, 1)
    return y, p


def test_target_sensitivity_is_reached_at_highest_threshold() -> None:
    y, p = _scores()
    t = choose_threshold(y, p, "target_sensitivity", 0.95)
    sens = ((p >= t.value) & (y == 1)).sum() / (y == 1).sum()
    assert sens >= 0.95 and math.isclose(sens, t.val_sensitivity)
    higher = np.min(p[p > t.value])
    assert ((p >= higher) & (y == 1)).sum() / (y == 1).sum() < 0.95


def test_youden_maximises_j() -> None:
    y, p = _scores(seed=1)
    t = choose_threshold(y, p, "youden")
    j = t.val_sensitivity + t.val_specificity - 1
    for other in np.linspace(0.05, 0.95, 19):
        sens = ((p >= other) & (y == 1)).sum() / (y == 1).sum()
        spec = ((p < other) & (y == 0)).sum() / (y == 0).sum()
        assert sens + spec - 1 <= j + 1e-9


def test_threshold_errors() -> None:
    with pytest.raises(ValueError, match="Unknown threshold rule 'f1'"):
        choose_threshold(np.array([0, 1]), np.array([0.1, 0.9]), "f1")
    with pytest.raises(ValueError, match="both classes"):
        choose_threshold(np.array([1, 1]), np.array([0.1, 0.9]))


def test_metrics_on_known_confusion() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.8, 0.4, 0.6, 0.7, 0.8, 0.9, 0.95])
    m = classification_metrics(y, p, 0.5)
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (3, 1, 1, 5)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["sensitivity"] == pytest.approx(5 / 6)
    assert m["specificity"] == pytest.approx(0.75)
    assert m["precision"] == pytest.approx(5 / 6)
    assert m["f1"] == pytest.approx(10 / 12)
    assert 0.8 < m["roc_auc"] < 1 and 0.8 < m["pr_auc"] <= 1
    assert math.isnan(classification_metrics(np.ones(3), np.ones(3), 0.5)["roc_auc"])


BOOTSTRAP_KEYS = {"roc_auc", "pr_auc", "accuracy", "sensitivity", "specificity"}


def test_resampled_metrics_match_classification_metrics() -> None:
    y, p = _scores(n=120, seed=3)
    p = np.round(p, 1)  # ties, which the rank-based AUC must count as one half
    indices = np.random.default_rng(4).integers(0, len(y), size=(15, len(y)))
    weights = np.stack([np.bincount(row, minlength=len(y)) for row in indices]).astype(float)
    resampled = _resampled_metrics(y, p, 0.5, weights)
    for row in range(len(indices)):
        expected = classification_metrics(y[indices[row]], p[indices[row]], 0.5)
        for key in BOOTSTRAP_KEYS:
            assert resampled[key][row] == pytest.approx(expected[key]), key


def test_intervals_contain_point_estimate_and_narrow_with_data() -> None:
    y, p = _scores(n=400)
    point = classification_metrics(y, p, 0.5)
    small = bootstrap_intervals(y, p, 0.5, n_resamples=400)
    assert set(small) == BOOTSTRAP_KEYS
    for key, (low, high) in small.items():
        assert low <= point[key] <= high, key
    y_big, p_big = _scores(n=4000, seed=1)
    big = bootstrap_intervals(y_big, p_big, 0.5, n_resamples=400)
    for key in BOOTSTRAP_KEYS:
        assert big[key][1] - big[key][0] < 0.6 * (small[key][1] - small[key][0]), key


def test_intervals_are_deterministic_per_seed() -> None:
    y, p = _scores(n=200)
    first = bootstrap_intervals(y, p, 0.5, n_resamples=200, seed=7)
    assert bootstrap_intervals(y, p, 0.5, n_resamples=200, seed=7) == first
    assert bootstrap_intervals(y, p, 0.5, n_resamples=200, seed=8) != first


def test_undefined_metric_interval_is_nan() -> None:
    y = np.ones(50, dtype=int)
    p = np.linspace(0.2, 0.9, 50)
    intervals = bootstrap_intervals(y, p, 0.5, n_resamples=100)
    for key in ("roc_auc", "pr_auc", "specificity"):
        assert all(math.isnan(v) for v in intervals[key]), key
    low, high = intervals["sensitivity"]
    assert 0 < low <= high < 1


def test_rare_class_skips_unusable_resamples() -> None:
    # One NORMAL image among 40: about a third of resamples lack it; the rest still count.
    y = np.ones(40, dtype=int)
    y[0] = 0
    p = np.linspace(0.1, 0.9, 40)
    intervals = bootstrap_intervals(y, p, 0.5, n_resamples=300)
    assert not math.isnan(intervals["roc_auc"][0])
    assert intervals["specificity"] == [1.0, 1.0]


def test_patient_bootstrap_is_wider_when_images_of_a_patient_agree() -> None:
    # 60 patients with 8 near-identical images each: 480 images carry the information of
    # 60. Resampling images pretends to 480 independent ones; resampling patients does not.
    rng = np.random.default_rng(5)
    patient_y = rng.integers(0, 2, 60)
    patient_p = np.clip(0.5 + (patient_y - 0.5) * 0.5 + rng.normal(0, 0.25, 60), 0.01, 0.99)
    y = np.repeat(patient_y, 8)
    p = np.repeat(patient_p, 8) + rng.normal(0, 1e-3, 480)
    groups = [f"person{i}" for i in np.repeat(np.arange(60), 8)]
    by_image = bootstrap_intervals(y, p, 0.5, n_resamples=400)
    by_patient = bootstrap_intervals(y, p, 0.5, n_resamples=400, groups=groups)
    point = classification_metrics(y, p, 0.5)
    for key in BOOTSTRAP_KEYS:
        low, high = by_patient[key]
        assert low <= point[key] <= high, key
        assert high - low > 2 * (by_image[key][1] - by_image[key][0]), key
    # One image per patient: the same draws as the image bootstrap.
    single = [f"p{i}" for i in range(len(y))]
    assert bootstrap_intervals(y, p, 0.5, n_resamples=50, groups=single) == bootstrap_intervals(
        y, p, 0.5, n_resamples=50
    )


def test_bootstrap_input_errors() -> None:
    with pytest.raises(ValueError, match="as many labels as probabilities"):
        bootstrap_intervals(np.array([0, 1]), np.array([0.5]), 0.5)
    with pytest.raises(ValueError, match="level"):
        bootstrap_intervals(np.array([0, 1]), np.array([0.2, 0.7]), 0.5, level=95)
    with pytest.raises(ValueError, match="groups"):
        bootstrap_intervals(np.array([0, 1]), np.array([0.2, 0.7]), 0.5, groups=["a"])


def _calibrated(n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, n)
    return (rng.uniform(0, 1, n) < p).astype(int), p


def test_ece_small_when_calibrated_large_when_overconfident() -> None:
    y, p = _calibrated()
    assert calibration_summary(y, p)["ece"] < 0.02
    overconfident = np.where(p >= 0.5, 0.99, 0.01)  # right direction, far too sure
    assert calibration_summary(y, overconfident)["ece"] > 0.2


def test_brier_matches_sklearn_and_bins_cover_all_images() -> None:
    from sklearn.metrics import brier_score_loss

    y, p = _scores(n=500)
    p = np.concatenate([p, [0.0, 1.0, 0.3]])  # both ends and an edge: every image binned
    y = np.concatenate([y, [0, 1, 1]])
    summary = calibration_summary(y, p, n_bins=5)
    assert summary["brier"] == pytest.approx(brier_score_loss(y, p))
    assert summary["n_bins"] == 5 and len(summary["bins"]) == 5
    assert sum(b["count"] for b in summary["bins"]) == len(y)
    assert summary["bins"][-1]["upper"] == 1.0
    for b in summary["bins"]:
        if b["count"]:
            assert b["lower"] <= b["mean_probability"] <= b["upper"]


def test_ece_matches_definition_and_empty_bins() -> None:
    y = np.array([0, 1, 1, 1])
    p = np.array([0.05, 0.05, 0.95, 1.0])
    summary = calibration_summary(y, p, n_bins=10)
    # Bin 0: mean 0.05, half positive; bin 9: mean 0.975, all positive.
    assert summary["ece"] == pytest.approx(0.5 * 0.45 + 0.5 * 0.025)
    empty = summary["bins"][4]
    assert empty["count"] == 0 and math.isnan(empty["mean_probability"])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        calibration_summary(np.array([1]), np.array([1.2]))


def test_reliability_figure_is_a_small_png() -> None:
    y, p = _calibrated(n=2000)
    png = reliability_figure(calibration_summary(y, p))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert 5_000 < len(png) < 200_000


def test_finite_makes_nan_json_safe() -> None:
    import json

    from xray.logic.metrics import finite

    value = {"auc": float("nan"), "ci": [0.1, float("inf")], "n": 3, "name": "x"}
    assert finite(value) == {"auc": None, "ci": [0.1, None], "n": 3, "name": "x"}
    json.dumps(finite(value), allow_nan=False)
