"""Step: choose the decision threshold on validation, measure on test."""

import logging
from typing import Annotated, Any

import mlflow
from zenml import log_metadata, step

from materializers import PngFigureMaterializer
from xray.constants import (
    CALIBRATION_PLOT_ARTIFACT,
    EVALUATION_PLOTS_ARTIFACT,
    METRICS_ARTIFACT,
    THRESHOLD_ARTIFACT,
    UNCERTAINTY_ARTIFACT,
)
from xray.dataset import ImageDataset
from xray.metrics import (
    bootstrap_intervals,
    calibration_summary,
    choose_threshold,
    classification_metrics,
    finite,
)
from xray.model import KerasModelFile
from xray.plots import PngFigure, evaluation_figure, reliability_figure
from xray.tracking import log_png
from xray.training import predict_probabilities

logger = logging.getLogger(__name__)


@step(
    experiment_tracker=True,
    output_materializers={
        EVALUATION_PLOTS_ARTIFACT: PngFigureMaterializer,
        CALIBRATION_PLOT_ARTIFACT: PngFigureMaterializer,
    },
)
def evaluate_model(
    model: KerasModelFile,
    val_set: ImageDataset,
    test_set: ImageDataset,
    threshold_rule: str = "target_sensitivity",
    target_sensitivity: float = 0.95,
    bootstrap_resamples: int = 1000,
) -> tuple[
    Annotated[dict[str, Any], METRICS_ARTIFACT],
    Annotated[float, THRESHOLD_ARTIFACT],
    Annotated[PngFigure, EVALUATION_PLOTS_ARTIFACT],
    Annotated[dict[str, Any], UNCERTAINTY_ARTIFACT],
    Annotated[PngFigure, CALIBRATION_PLOT_ARTIFACT],
]:
    """Picks the threshold on the validation split only, then scores the test split.

    Args:
        model: The trained model.
        val_set: Validation images (threshold choice).
        test_set: Test images (reported metrics).
        threshold_rule: ``target_sensitivity`` or ``youden``.
        target_sensitivity: Validation sensitivity the threshold must reach.
        bootstrap_resamples: Resamples of the test split for the 95 % intervals.

    Returns:
        Test metrics at the threshold, the threshold, the confusion matrix, ROC and
        precision-recall curves as one figure, the 95 % bootstrap intervals with the
        calibration summary (ECE, Brier, reliability bins), and the reliability diagram.
    """
    size = model.image_size
    keras_model = model.load()
    val_p = predict_probabilities(keras_model, val_set.images, size)
    threshold = choose_threshold(val_set.labels, val_p, threshold_rule, target_sensitivity)
    test_p = predict_probabilities(keras_model, test_set.images, size)
    metrics = classification_metrics(test_set.labels, test_p, threshold.value)
    metrics.update(
        threshold_rule=threshold.rule,
        val_sensitivity=threshold.val_sensitivity,
        val_specificity=threshold.val_specificity,
    )
    logger.info(
        "Test: AUC %.3f, accuracy %.3f, sensitivity %.3f, specificity %.3f at threshold %.3f",
        metrics["roc_auc"],
        metrics["accuracy"],
        metrics["sensitivity"],
        metrics["specificity"],
        threshold.value,
    )
    numeric = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    mlflow.log_metrics({f"test_{k}": float(v) for k, v in numeric.items()})
    log_metadata(metadata={"test_metrics": numeric, "threshold": threshold.value})
    figure = PngFigure(
        evaluation_figure(test_set.labels, test_p, metrics),
        f"Test set: confusion matrix, ROC and PR at threshold {threshold.value:.3f}",
    )
    log_png(figure.png, "plots/evaluation.png")
    uncertainty = {
        "intervals": bootstrap_intervals(
            test_set.labels, test_p, threshold.value, n_resamples=bootstrap_resamples
        ),
        "calibration": calibration_summary(test_set.labels, test_p),
        "target_sensitivity": target_sensitivity,
        "bootstrap_resamples": bootstrap_resamples,
    }
    calibration = uncertainty["calibration"]
    log_metadata(
        metadata={
            "test_ci95": finite(uncertainty["intervals"]),
            "ece": calibration["ece"],
            "brier": calibration["brier"],
        }
    )
    mlflow.log_metrics({"test_ece": calibration["ece"], "test_brier": calibration["brier"]})
    mlflow.log_dict(uncertainty, "evaluation/uncertainty.json")
    reliability = PngFigure(
        reliability_figure(calibration),
        f"Reliability diagram on test (ECE {calibration['ece']:.3f})",
    )
    log_png(reliability.png, "plots/reliability.png")
    return metrics, threshold.value, figure, uncertainty, reliability
