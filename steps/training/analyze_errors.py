"""Step: what the model gets wrong and what it looks at, on the test split."""

import logging
from typing import Annotated

import mlflow
from zenml import log_metadata, step

from materializers import PngFigureMaterializer
from xray.integrations.tracking import log_png
from xray.logic.constants import (
    ERROR_ANALYSIS_ARTIFACT,
    ERROR_EXAMPLES_ARTIFACT,
    GRADCAM_EXAMPLES_ARTIFACT,
)
from xray.logic.dataset import ImageDataset
from xray.logic.records import ErrorAnalysis
from xray.logic.settings import ErrorAnalysisSettings
from xray.ml.model import KerasModelFile
from xray.ml.training import predict_probabilities
from xray.reporting.error_analysis import (
    confident_errors,
    error_grid,
    gradcam_examples,
    subtype_results,
)
from xray.reporting.plots import PngFigure

logger = logging.getLogger(__name__)


@step(
    experiment_tracker=True,
    output_materializers={
        ERROR_EXAMPLES_ARTIFACT: PngFigureMaterializer,
        GRADCAM_EXAMPLES_ARTIFACT: PngFigureMaterializer,
    },
)
def analyze_errors(
    model: KerasModelFile,
    test_set: ImageDataset,
    threshold: float,
    config: ErrorAnalysisSettings | None = None,
) -> tuple[
    Annotated[PngFigure, ERROR_EXAMPLES_ARTIFACT],
    Annotated[PngFigure, GRADCAM_EXAMPLES_ARTIFACT],
    Annotated[ErrorAnalysis, ERROR_ANALYSIS_ARTIFACT],
]:
    """The most confident false positives and false negatives as an image grid, Grad-CAM
    overlays of a few test images per class (the service's ``/explain`` code), and
    results per PNEUMONIA subtype (bacteria/virus, from Kaggle file names).

    Args:
        model: The served (calibrated) model.
        test_set: Test images.
        threshold: The decision threshold chosen on validation.
        config: How many examples (:class:`xray.logic.settings.ErrorAnalysisSettings`).

    Returns:
        The error grid, the Grad-CAM grid, and ``{"subtypes": per-subtype results,
        "shown_errors": number of images in the error grid}``.
    """
    config = config or ErrorAnalysisSettings()
    keras_model = model.load()
    p = predict_probabilities(keras_model, test_set.images, model.image_size)
    errors = confident_errors(test_set.labels, p, threshold, k=config.examples)
    grid = PngFigure(
        error_grid(
            test_set.images, test_set.paths, test_set.labels, p, threshold, k=config.examples
        ),
        f"Most confident errors on test: {len(errors['false_positives'])} false positives, "
        f"{len(errors['false_negatives'])} false negatives (threshold {threshold:.3f})",
    )
    cams = PngFigure(
        gradcam_examples(
            keras_model,
            test_set.images,
            test_set.labels,
            test_set.paths,
            per_class=config.gradcam_per_class,
            image_size=model.image_size,
        ),
        "Grad-CAM on test images (the same code as the service's /explain)",
    )
    subtypes = subtype_results(test_set.paths, test_set.labels, p, threshold)
    for name, row in subtypes.items():
        logger.info("Test %s: %s", name, row)
    log_metadata(
        metadata={
            "subtypes": subtypes,
            "confident_errors": {
                kind: [test_set.paths[i] for i in idx] for kind, idx in errors.items()
            },
        }
    )
    log_png(grid.png, "plots/error_examples.png")
    log_png(cams.png, "plots/gradcam_examples.png")
    mlflow.log_dict(subtypes, "evaluation/subtypes.json")
    shown = len(errors["false_positives"]) + len(errors["false_negatives"])
    return grid, cams, ErrorAnalysis(subtypes=subtypes, shown_errors=shown)
