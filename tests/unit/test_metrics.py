import math

import numpy as np
import pytest

from xray.metrics import choose_threshold, classification_metrics


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
