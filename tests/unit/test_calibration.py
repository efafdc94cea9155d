from typing import Any

import numpy as np
import pytest
from scipy.special import expit
from sklearn.metrics import log_loss as sklearn_log_loss
from sklearn.metrics import roc_auc_score

from synthetic import encode, synthetic_pixels
from xray.logic.calibration import (
    apply_temperature,
    calibrate,
    fit_temperature,
    log_loss,
    temperature_to_use,
)
from xray.logic.metrics import calibration_summary
from xray.ml.gradcam import gradcam
from xray.ml.model import (
    KerasModelFile,
    build_model,
    model_image_size,
    model_temperature,
    with_temperature,
)
from xray.ml.preprocessing import prepare_image


def _labels_and_logits(n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from sigmoid(true_logit): true_logit is perfectly calibrated."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(0, 1.5, n)
    return (rng.uniform(0, 1, n) < expit(true_logit)).astype(int), true_logit


def test_overconfident_probabilities_get_temperature_about_three() -> None:
    y, true_logit = _labels_and_logits()
    p = expit(3 * true_logit)  # right ranking, three times too sure
    assert fit_temperature(y, p) == pytest.approx(3.0, rel=0.08)
    result = calibrate(y, p)
    assert result["applied"] is True
    assert result["val_nll_after"] < 0.9 * result["val_nll_before"]
    assert result["val_ece_after"] < 0.02 < result["val_ece_before"]
    assert temperature_to_use(result) == result["temperature"]
    calibrated = apply_temperature(p, result["temperature"])
    assert calibration_summary(y, calibrated)["ece"] == pytest.approx(result["val_ece_after"])


def test_calibrated_probabilities_are_left_alone() -> None:
    y, true_logit = _labels_and_logits(seed=1)
    result = calibrate(y, expit(true_logit))
    assert result["temperature"] == pytest.approx(1.0, abs=0.06)
    assert result["applied"] is False
    assert result["min_improvement"] == 0.01
    assert temperature_to_use(result) == 1.0
    assert set(result) == {
        "temperature",
        "applied",
        "min_improvement",
        "val_nll_before",
        "val_nll_after",
        "val_ece_before",
        "val_ece_after",
    }


def test_temperature_is_monotonic_and_keeps_auc() -> None:
    y, true_logit = _labels_and_logits(n=2000, seed=2)
    p = expit(2 * true_logit)
    for temperature in (0.5, 1.0, 2.0, 7.0):
        scaled = apply_temperature(p, temperature)
        assert np.all((scaled > 0) & (scaled < 1))
        assert np.array_equal(np.argsort(scaled, kind="stable"), np.argsort(p, kind="stable"))
        assert roc_auc_score(y, scaled) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert apply_temperature(np.array([0.5, 0.9]), 2.0) == pytest.approx(
        [0.5, expit(np.log(9) / 2)]
    )
    with pytest.raises(ValueError, match="positive number"):
        apply_temperature(p, 0.0)


def test_log_loss_matches_sklearn_and_checks_inputs() -> None:
    y, true_logit = _labels_and_logits(n=500, seed=3)
    p = expit(true_logit)
    assert log_loss(y, p) == pytest.approx(sklearn_log_loss(y, p))
    assert np.isfinite(log_loss(np.array([1, 0]), np.array([0.0, 1.0])))  # clipped
    with pytest.raises(ValueError, match="as many labels as probabilities"):
        calibrate(np.array([0, 1]), np.array([0.5]))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        fit_temperature(np.array([0, 1]), np.array([0.5, 1.5]))


@pytest.fixture(scope="module")
def scaled_model() -> tuple[Any, Any]:
    model = build_model(backbone="compact_cnn", image_size=64, weights=None).model
    model.get_layer("prediction").bias.assign([2.0])  # away from 0.5, where T shows
    return model, with_temperature(model, 2.0)


def test_temperature_layer_rescales_the_output(scaled_model: tuple[Any, Any]) -> None:
    model, scaled = scaled_model
    assert [layer.name for layer in scaled.layers] == [
        *(layer.name for layer in model.layers),
        "temperature",
    ]
    assert scaled.name == model.name and model_image_size(scaled) == 64
    assert model_temperature(scaled) == 2.0 and model_temperature(model) == 1.0
    x = np.random.default_rng(4).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    raw = model.predict(x, verbose=0)
    assert np.all(raw > 0.8)
    np.testing.assert_allclose(scaled.predict(x, verbose=0), apply_temperature(raw, 2.0), rtol=1e-5)
    assert not scaled.get_layer("temperature").trainable_weights
    with pytest.raises(ValueError, match="already has a temperature"):
        with_temperature(scaled, 1.5)


def test_calibrated_model_roundtrip_and_gradcam(scaled_model: tuple[Any, Any]) -> None:
    _, scaled = scaled_model
    stored = KerasModelFile.from_model(scaled)
    again = stored.load()
    assert stored.image_size == 64 and model_temperature(again) == 2.0
    image = prepare_image(encode(synthetic_pixels(1, 80, np.random.default_rng(5))), 64)
    expected = float(scaled.predict(image[None], verbose=0)[0, 0])
    np.testing.assert_allclose(again.predict(image[None], verbose=0)[0, 0], expected, rtol=1e-5)
    heatmap, probability = gradcam(again, image)
    assert heatmap.ndim == 2 and heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    assert probability == pytest.approx(expected, abs=1e-5)
