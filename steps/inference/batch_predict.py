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
from xray.ml.inference import find_inputs, score_in_processes, shard, summarize
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
    shard_index: int = 0,
    shard_count: int = 1,
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
        config: Batch size (at most two batches are held decoded at once), shards and the
            guard mode (:class:`xray.logic.settings.BatchPredictSettings`): ``refuse``
            (refused images get no label), ``flag`` (labelled, marked ``accepted=false``)
            or ``off``. Refused images never count in the metrics.
        shard_index: With ``shard_count`` > 1 (the pipeline's parallel steps on a cloud
            stack), this step scores only that shard of the input, in one process.
        shard_count: The number of parallel steps; 1: this step scores everything, in
            ``config.shards`` worker processes.

    Returns:
        Predictions (file, probability, label, truth), the image statistics of the new
        images (the drift check's input) and a summary: counts, skipped files, and
        metrics when the truth is known.
    """
    config = config or BatchPredictSettings()
    root = resolve_location(data_dir, get_source_root())
    files, skipped, layout = find_inputs(root)
    if shard_count > 1:
        files = shard(files, shard_index, shard_count)
        skipped = skipped if shard_index == 0 else []  # listed once, by the first shard
    processes = 1 if shard_count > 1 else config.shards
    logger.info(
        "Scoring %d images under %s (%s layout%s)",
        len(files),
        root,
        layout,
        f", shard {shard_index + 1} of {shard_count}" if shard_count > 1 else "",
    )
    if guard is None and config.guard_mode != "off":
        logger.warning("The model has no input guard: every image is scored")
    start = time.perf_counter()
    result = score_in_processes(
        model.data,
        files,
        model.image_size,
        threshold,
        processes,
        batch_size=config.batch_size,
        guard=guard,
        guard_mode=config.guard_mode,
        progress=lambda done, total: logger.info("Scored %d/%d images", done, total),
    )
    guard_mode = config.guard_mode if guard is not None else "none"
    seconds = time.perf_counter() - start
    summary = summarize(result, data_dir, layout, threshold, guard_mode, seconds, skipped)
    log_metadata(
        metadata={
            "images": summary.images,
            "skipped_count": len(summary.skipped),
            "refused_count": summary.refused,
            "predicted": summary.predicted,
            "images_per_second": summary.images_per_second,
            "processes": processes,
            **({"metrics": finite(summary.metrics)} if summary.metrics else {}),
        }
    )
    return result.predictions, result.statistics, summary
