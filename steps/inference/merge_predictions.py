"""Step: the parallel shards' predictions, statistics and summaries as one."""

from typing import Annotated

import pandas as pd
from zenml import log_metadata, step

from xray.logic.constants import (
    INFERENCE_METRICS_ARTIFACT,
    INFERENCE_STATISTICS_ARTIFACT,
    PREDICTIONS_ARTIFACT,
)
from xray.logic.metrics import finite
from xray.logic.records import InferenceSummary
from xray.ml.inference import merge_shards


@step(enable_cache=False)
def merge_predictions(
    predictions: list[pd.DataFrame],
    statistics: list[pd.DataFrame],
    summaries: list[InferenceSummary],
) -> tuple[
    Annotated[pd.DataFrame, PREDICTIONS_ARTIFACT],
    Annotated[pd.DataFrame, INFERENCE_STATISTICS_ARTIFACT],
    Annotated[InferenceSummary, INFERENCE_METRICS_ARTIFACT],
]:
    """Joins the outputs of the ``batch_predict`` shards (parallel steps on a cloud
    stack), in shard order: the same three artifacts one ``batch_predict`` makes, so the
    drift check, the files and the dashboard see one run.

    Args:
        predictions: Each shard's predictions.
        statistics: Each shard's image statistics.
        summaries: Each shard's summary.

    Returns:
        The predictions, statistics and a summary over all shards (metrics recomputed
        on the joined predictions; images/s over the slowest shard's time).
    """
    merged, joined_statistics, summary = merge_shards(predictions, statistics, summaries)
    log_metadata(
        metadata={
            "images": summary.images,
            "shards": len(summaries),
            "images_per_second": summary.images_per_second,
            **({"metrics": finite(summary.metrics)} if summary.metrics else {}),
        }
    )
    return merged, joined_statistics, summary
