"""Step: score every image of a folder with the production model, in bounded batches."""

import logging
import time
from typing import Annotated

import pandas as pd
from zenml import log_metadata, step
from zenml.utils.source_utils import get_source_root

from xray.io.paths import resolve_location
from xray.logic.constants import (
    INFERENCE_METRICS_ARTIFACT,
    INFERENCE_STATISTICS_ARTIFACT,
    PREDICTIONS_ARTIFACT,
)
from xray.logic.metrics import finite
from xray.logic.records import InferenceSummary
from xray.logic.settings import BatchPredictSettings
from xray.ml.guard import InputGuard
from xray.ml.inference import find_inputs, labelled_metrics, score_images
from xray.ml.model import KerasModelFile

logger = logging.getLogger(__name__)


# Never cached: the folder's content may change between runs under the same name.
@step(enable_cache=False)
def batch_predict(
    model: KerasModelFile,
    threshold: float,
    guard: InputGuard | None,
    data_dir: str,
    config: BatchPredictSettings | None = None,
) -> tuple[
    Annotated[pd.DataFrame, PREDICTIONS_ARTIFACT],
    Annotated[pd.DataFrame, INFERENCE_STATISTICS_ARTIFACT],
    Annotated[InferenceSummary, INFERENCE_METRICS_ARTIFACT],
]:
    """Predicts P(PNEUMONIA) for every image under ``data_dir`` (a folder of any layout,
    or one image), with the serving preprocessing and the model's evaluation threshold.

    Images are read, checked, described and predicted ``batch_size`` at a time, so memory
    does not grow with the folder. Unreadable files are skipped and listed.

    Args:
        model: The production model.
        threshold: The production model's decision threshold.
        guard: The production model's input guard (:mod:`xray.ml.guard`); None: no guard.
        data_dir: Local folder or file, ``s3://`` or ``gs://``. Class folders
            (NORMAL/PNEUMONIA, optionally under train/val/test) give the truth.
        config: Batch size (at most two batches are held decoded at once) and the guard
            mode (:class:`xray.logic.settings.BatchPredictSettings`): ``refuse`` (refused images
            get no label), ``flag`` (labelled, marked ``accepted=false``) or ``off``.
            Refused images never count in the metrics.

    Returns:
        Predictions (file, probability, label, truth), the image statistics of the new
        images (the drift check's input) and a summary: counts, skipped files, and
        metrics when the truth is known.
    """
    config = config or BatchPredictSettings()
    guard_mode = config.guard_mode
    root = resolve_location(data_dir, get_source_root())
    files, skipped, layout = find_inputs(root)
    logger.info("Scoring %d images under %s (%s layout)", len(files), root, layout)
    keras_model = model.load()
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        logger.info("Scored %d/%d images", done, total)

    if guard is None and guard_mode != "off":
        logger.warning("The model has no input guard: every image is scored")
    result = score_images(
        keras_model,
        files,
        model.image_size,
        threshold,
        batch_size=config.batch_size,
        progress=progress,
        guard=guard,
        guard_mode=guard_mode,
    )
    seconds = time.perf_counter() - start
    skipped = [*skipped, *result.skipped]
    metrics = labelled_metrics(result.predictions, threshold)
    refused = result.predictions[~result.predictions["accepted"].astype(bool)]
    summary = InferenceSummary(
        source=data_dir,
        layout=layout,
        images=len(result.predictions),
        predicted=result.predictions.loc[result.predictions["label"] != "", "label"]
        .value_counts()
        .to_dict(),
        guard_mode=guard_mode if guard is not None else "none",
        refused=len(refused),
        refused_files=[
            {"file": row.file, "reason": row.guard_reason} for row in refused.itertuples()
        ],
        threshold=float(threshold),
        images_per_second=round(len(result.predictions) / seconds, 1) if seconds else None,
        skipped=[{"file": s.path, "reason": s.reason} for s in skipped],
        metrics=metrics,
    )
    log_metadata(
        metadata={
            "images": summary.images,
            "skipped_count": len(skipped),
            "refused_count": len(refused),
            "predicted": summary.predicted,
            "images_per_second": summary.images_per_second,
            **({"metrics": finite(metrics)} if metrics else {}),
        }
    )
    return result.predictions, result.statistics, summary
