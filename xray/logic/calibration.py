"""Temperature scaling of P(PNEUMONIA), fitted on the validation split.

A network trained with cross-entropy is often overconfident: its probabilities sit
closer to 0 and 1 than the observed frequencies. Temperature scaling divides the logit
by one number T > 0, ``p' = sigmoid(logit(p) / T)``, chosen to minimise the validation
negative log-likelihood. It is monotonic, so the ranking of images, the ROC and PR curves
and their AUCs do not change; only how far the probabilities can be trusted as
probabilities does. In the served model it is the last layer
(:func:`xray.ml.model.with_temperature`).

SciPy is imported inside the functions, as scikit-learn is in :mod:`xray.logic.metrics`.
"""

from typing import Any

import numpy as np

from xray.logic.constants import PROBABILITY_EPSILON as EPSILON

TEMPERATURE_BOUNDS = (0.05, 20.0)
"""The range a fitted temperature is searched in."""


def _checked(y_true: Any, probabilities: Any, caller: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    if len(y) == 0 or len(y) != len(p):
        raise ValueError(
            f"{caller} needs as many labels as probabilities, at least one; "
            f"got {len(y)} labels and {len(p)} probabilities."
        )
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError(f"{caller} needs probabilities in [0, 1], without NaN.")
    return y, p


def _logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, EPSILON, 1 - EPSILON)
    return np.log(clipped) - np.log1p(-clipped)


def apply_temperature(probabilities: Any, temperature: float) -> np.ndarray:
    """Rescales probabilities: ``sigmoid(logit(p) / temperature)``.

    Args:
        probabilities: P(PNEUMONIA) per image, in [0, 1] (clipped to
            ``[EPSILON, 1 - EPSILON]`` first).
        temperature: T > 0; T > 1 softens overconfident probabilities, T = 1 changes
            nothing but the clipping.

    Returns:
        The rescaled probabilities (float64, same shape as ``probabilities``).

    Raises:
        ValueError: For a temperature that is not a positive finite number.
    """
    from scipy.special import expit

    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"The temperature must be a positive number, not {temperature}.")
    p = np.asarray(probabilities, dtype=np.float64)
    return expit(_logit(p) / temperature)


def log_loss(y_true: Any, probabilities: Any) -> float:
    """Mean negative log-likelihood of the labels (1 = PNEUMONIA), probabilities clipped.

    Raises:
        ValueError: For empty or mismatched inputs, or probabilities outside [0, 1].
    """
    y, p = _checked(y_true, probabilities, "log_loss")
    clipped = np.clip(p, EPSILON, 1 - EPSILON)
    return float(-np.mean(y * np.log(clipped) + (1 - y) * np.log1p(-clipped)))


def fit_temperature(y_true: Any, probabilities: Any) -> float:
    """The temperature that minimises the negative log-likelihood of ``y_true``.

    The search is bounded, on log T, to :data:`TEMPERATURE_BOUNDS`.

    Args:
        y_true: Validation labels (1 = PNEUMONIA).
        probabilities: Validation P(PNEUMONIA) of the uncalibrated model.

    Returns:
        The fitted temperature T > 0.

    Raises:
        ValueError: For empty or mismatched inputs, or probabilities outside [0, 1].
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import expit

    y, p = _checked(y_true, probabilities, "fit_temperature")
    logits = _logit(p)

    def nll(log_t: float) -> float:
        q = np.clip(expit(logits / np.exp(log_t)), EPSILON, 1 - EPSILON)
        return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))

    low, high = np.log(TEMPERATURE_BOUNDS)
    result = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-5})
    return float(np.exp(result.x))


def calibrate(y_val: Any, p_val: Any, min_improvement: float = 0.01) -> dict[str, Any]:
    """Fits a temperature on validation data and decides whether to use it.

    Temperature scaling is applied only when it helps: when it lowers the validation
    negative log-likelihood by at least ``min_improvement`` (relative). Otherwise the
    fitted value is still reported, and the temperature to use is 1.0 (no change).

    Args:
        y_val: Validation labels (1 = PNEUMONIA).
        p_val: Validation P(PNEUMONIA) of the uncalibrated model.
        min_improvement: The relative NLL reduction required, e.g. 0.01 for 1 %.

    Returns:
        ``{"temperature", "applied", "min_improvement", "val_nll_before",
        "val_nll_after", "val_ece_before", "val_ece_after"}`` (plain floats and a bool).
        The ``_after`` values are of the fitted temperature, applied or not.

    Raises:
        ValueError: For empty or mismatched inputs, probabilities outside [0, 1], or a
            negative ``min_improvement``.
    """
    from xray.logic.metrics import calibration_summary

    if not min_improvement >= 0:
        raise ValueError(
            f"min_improvement must be 0 or more (a relative NLL reduction such as 0.01), "
            f"not {min_improvement}."
        )
    y, p = _checked(y_val, p_val, "calibrate")
    temperature = fit_temperature(y, p)
    scaled = apply_temperature(p, temperature)
    before, after = log_loss(y, p), log_loss(y, scaled)
    return {
        "temperature": temperature,
        "applied": bool(after <= before * (1 - min_improvement)),
        "min_improvement": float(min_improvement),
        "val_nll_before": before,
        "val_nll_after": after,
        "val_ece_before": calibration_summary(y, p)["ece"],
        "val_ece_after": calibration_summary(y, scaled)["ece"],
    }


def temperature_to_use(calibration: dict[str, Any]) -> float:
    """The temperature the served model gets: the fitted one when applied, else 1.0."""
    return float(calibration["temperature"]) if calibration.get("applied") else 1.0
