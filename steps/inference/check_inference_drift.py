"""Step: drift of new images against the production model's training images."""

import logging
from typing import Annotated

import pandas as pd
from zenml import log_metadata, step
from zenml.types import HTMLString

from xray.integrations.validation import drift_report
from xray.logic.constants import INFERENCE_DRIFT_ARTIFACT, INFERENCE_DRIFT_REPORT_ARTIFACT
from xray.logic.records import DriftResult
from xray.logic.settings import InferenceDriftSettings
from xray.reporting.document import render

logger = logging.getLogger(__name__)


@step
def check_inference_drift(
    statistics: pd.DataFrame,
    reference: pd.DataFrame,
    config: InferenceDriftSettings | None = None,
) -> tuple[
    Annotated[HTMLString, INFERENCE_DRIFT_REPORT_ARTIFACT],
    Annotated[DriftResult, INFERENCE_DRIFT_ARTIFACT],
]:
    """Compares the statistics of the new images with the model's training split
    (Evidently, the same statistics and test as the training pipeline's drift check).

    Args:
        statistics: Statistics of the new images (split ``new``).
        reference: The production version's statistics table (its ``train`` rows are
            the reference).
        config: Statistics compared, method, the drift share that counts as drift, and
            ``min_images``: fewer new images are not tested (a distribution test on a
            handful of images means nothing); the result says so
            (:class:`xray.logic.settings.InferenceDriftSettings`).

    Returns:
        The HTML report and ``{"drift_detected", "share_drifted", "drifted_features",
        ...}`` with per-statistic scores.
    """
    config = config or InferenceDriftSettings()
    min_images = config.min_images
    train = reference[reference["split"] == "train"]
    result = DriftResult(
        drift_detected=False,
        share_drifted=0.0,
        drifted_features=[],
        images=len(statistics),
        reference_images=len(train),
        max_drift_share=config.max_drift_share,
        tested=len(statistics) >= min_images,
    )
    if not result.tested:
        note = (
            f"Not tested: {len(statistics)} image(s), at least {min_images} are needed "
            "(check_inference_drift.config.min_images)."
        )
        logger.warning(note)
        result.note = note
        log_metadata(metadata=result.model_dump(mode="json", exclude_none=True))
        return HTMLString(render("note.html.j2", note=note)), result
    verdict, report = drift_report(
        statistics, config.gate(), reference=train.assign(split="reference"), current=("new",)
    )
    details = verdict.details["splits"]["new"]
    result = result.model_copy(
        update={
            "drift_detected": not verdict.passed,
            "share_drifted": float(details["share"]),
            "drifted_features": list(details["drifted_columns"]),
            "scores": {c: r["score"] for c, r in details["columns"].items()},
            "method": {c: r["method"] for c, r in details["columns"].items()},
        }
    )
    (logger.warning if result.drift_detected else logger.info)(verdict.message())
    log_metadata(
        metadata=result.model_dump(mode="json", exclude_none=True, exclude={"scores", "method"})
    )
    return HTMLString(report), result
