"""Step: score the external test sets with the final model at the final threshold."""

import logging
from typing import Annotated, Any

import mlflow
import pandas as pd
from zenml import log_metadata, step
from zenml.types import HTMLString

from materializers import PngFigureMaterializer
from xray.integrations.validation import DriftGateConfig, drift_report
from xray.io.image_stats import statistics_table
from xray.logic.constants import (
    EXTERNAL_DRIFT_REPORT_ARTIFACT,
    EXTERNAL_METRICS_ARTIFACT,
    EXTERNAL_PLOTS_ARTIFACT,
)
from xray.logic.dataset import ImageDataset
from xray.logic.external import HEADLINE, drop_overlaps, score_set
from xray.logic.metrics import finite
from xray.logic.records import ExternalEvaluation, ExternalSet
from xray.logic.settings import ExternalEvaluationSettings
from xray.ml.model import KerasModelFile
from xray.ml.training import predict_probabilities
from xray.reporting.plots import PngFigure, evaluation_figure, stack_pngs

logger = logging.getLogger(__name__)


@step(
    experiment_tracker=True, output_materializers={EXTERNAL_PLOTS_ARTIFACT: PngFigureMaterializer}
)
def evaluate_external(
    model: KerasModelFile,
    threshold: float,
    external_sets: ImageDataset,
    external_sources: dict[str, str],
    train_set: ImageDataset,
    val_set: ImageDataset,
    test_set: ImageDataset,
    image_statistics: pd.DataFrame,
    config: ExternalEvaluationSettings | None = None,
) -> tuple[
    Annotated[ExternalEvaluation, EXTERNAL_METRICS_ARTIFACT],
    Annotated[PngFigure, EXTERNAL_PLOTS_ARTIFACT],
    Annotated[HTMLString, EXTERNAL_DRIFT_REPORT_ARTIFACT],
]:
    """Measures each external set; nothing here feeds back into any choice of the run.

    Images the run's own splits have (identical bytes, or a shared patient id) are dropped
    and named first. Each set's image statistics are compared with the training split's
    (Evidently, the same drift test as the data gate, reported, never gating), then it
    is scored at ``threshold`` with patient-bootstrap 95 % intervals.

    Args:
        model: The final (calibrated) model.
        threshold: The decision threshold chosen on validation.
        external_sets: The external images; ``origins`` names each image's set.
        external_sources: The folder of each set name.
        train_set: Training images (overlap check).
        val_set: Validation images (overlap check).
        test_set: In-split test images (overlap check).
        image_statistics: Statistics of the run's splits (the drift reference: train).
        config: Patient resamples for the intervals
            (:class:`xray.logic.settings.ExternalEvaluationSettings`).

    Returns:
        Per set: source, counts, metrics, intervals, dropped files and drift; the
        confusion/ROC/PR figure of every set; the drift report.
    """
    config = config or ExternalEvaluationSettings()
    kept, dropped = drop_overlaps(external_sets, [train_set, val_set, test_set])
    for item in dropped:
        logger.warning(
            "External image %s dropped: %s (%s)",
            item["file"],
            item["reason"],
            item["internal_file"],
        )
    names = list(dict.fromkeys(external_sets.origins))
    parts = {
        name: kept.subset(i for i, origin in enumerate(kept.origins) if origin == name)
        for name in names
    }
    keras_model = model.load()
    results: dict[str, Any] = {}
    figures = []
    table = statistics_table({name: part for name, part in parts.items() if len(part)})
    reference = image_statistics[image_statistics["split"] == "train"]
    verdict, report = drift_report(
        table, DriftGateConfig(mode="warn"), reference=reference, current=tuple(parts)
    )
    for name, part in parts.items():
        lost = [d for d in dropped if d["file"].split("/", 1)[0] == name]
        if len(set(part.labels.tolist())) < 2:
            raise ValueError(
                f"External set {name} has {len(part)} usable images of one class only "
                f"(after dropping {len(lost)} that this run's splits already have): it needs "
                "NORMAL and PNEUMONIA images to be scored."
            )
        p = predict_probabilities(keras_model, part.images, model.image_size)
        result = score_set(part.labels, p, part.patients, threshold, config.bootstrap_resamples)
        drift = verdict.details["splits"].get(name, {})
        result.update(
            source=external_sources.get(name, ""),
            dropped_overlaps=lost,
            drift_share=drift.get("share"),
            drifted_columns=drift.get("drifted_columns", []),
        )
        results[name] = ExternalSet.model_validate(result)
        m = result["metrics"]
        logger.info(
            "External %s (%d images): AUC %.3f, accuracy %.3f, sensitivity %.3f, "
            "specificity %.3f at threshold %.3f",
            name,
            len(part),
            m["roc_auc"],
            m["accuracy"],
            m["sensitivity"],
            m["specificity"],
            threshold,
        )
        mlflow.log_metrics({f"external_{name}_{k}": float(m[k]) for k in HEADLINE})
        figures.append(evaluation_figure(part.labels, p, m))
    evaluation = ExternalEvaluation(sets=results)
    scores = finite(evaluation.model_dump(mode="json")["sets"])
    log_metadata(metadata={"external": scores})
    mlflow.log_dict(scores, "evaluation/external.json")
    title = "External sets (" + ", ".join(names) + f"): at threshold {threshold:.3f}"
    return evaluation, PngFigure(stack_pngs(figures), title), HTMLString(report)
