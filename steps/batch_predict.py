"""Step: score every image of a folder with the production model, in bounded batches."""

import logging
import time
from typing import Annotated, Any

import pandas as pd
from zenml import log_metadata, step

from steps.load_dataset import resolve_data_dir
from xray.constants import (
    INFERENCE_METRICS_ARTIFACT,
    INFERENCE_STATISTICS_ARTIFACT,
    PREDICTIONS_ARTIFACT,
)
from xray.inference import find_inputs, labelled_metrics, score_images
from xray.metrics import finite
from xray.model import KerasModelFile

logger = logging.getLogger(__name__)


# Never cached: the folder's content may change between runs under the same name.
@step(enable_cache=False)
def batch_predict(
    model: KerasModelFile,
    threshold: float,
    data_dir: str,
    batch_size: int = 256,
) -> tuple[
    Annotated[pd.DataFrame, PREDICTIONS_ARTIFACT],
    Annotated[pd.DataFrame, INFERENCE_STATISTICS_ARTIFACT],
    Annotated[dict[str, Any], INFERENCE_METRICS_ARTIFACT],
]:
    """Predicts P(PNEUMONIA) for every image under ``data_dir`` (a folder of any layout,
    or one image), with the serving preprocessing and the model's evaluation threshold.

    Images are read, checked, described and predicted ``batch_size`` at a time, so memory
    does not grow with the folder. Unreadable files are skipped and listed.

    Args:
        model: The production model.
        threshold: The production model's decision threshold.
        data_dir: Local folder or file, ``s3://`` or ``gs://``. Class folders
            (NORMAL/PNEUMONIA, optionally under train/val/test) give the truth.
        batch_size: Images per batch; at most two batches are held decoded at once.

    Returns:
        Predictions (file, probability, label, truth), the image statistics of the new
        images (the drift check's input) and a summary: counts, skipped files, and
        metrics when the truth is known.
    """
    root = resolve_data_dir(data_dir)
    files, skipped, layout = find_inputs(root)
    logger.info("Scoring %d images under %s (%s layout)", len(files), root, layout)
    keras_model = model.load()
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        logger.info("Scored %d/%d images", done, total)

    result = score_images(
        keras_model, files, model.image_size, threshold, batch_size=batch_size, progress=progress
    )
    seconds = time.perf_counter() - start
    skipped = [*skipped, *result.skipped]
    metrics = labelled_metrics(result.predictions, threshold)
    summary: dict[str, Any] = {
        "source": data_dir,
        "layout": layout,
        "images": len(result.predictions),
        "predicted": result.predictions["label"].value_counts().to_dict(),
        "threshold": float(threshold),
        "images_per_second": round(len(result.predictions) / seconds, 1) if seconds else None,
        "skipped": [{"file": s.path, "reason": s.reason} for s in skipped],
        "metrics": metrics,
    }
    log_metadata(
        metadata={
            "images": summary["images"],
            "skipped_count": len(skipped),
            "predicted": summary["predicted"],
            "images_per_second": summary["images_per_second"],
            **({"metrics": finite(metrics)} if metrics else {}),
        }
    )
    return result.predictions, result.statistics, summary
