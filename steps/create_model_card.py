"""Step: the model card of this model version (Markdown, and HTML for the dashboard)."""

from datetime import UTC, datetime
from typing import Annotated, Any

import pandas as pd
from zenml import get_step_context, log_metadata, step
from zenml.types import HTMLString, MarkdownString

from xray.constants import CLASS_NAMES, MODEL_CARD_ARTIFACT, MODEL_CARD_HTML_ARTIFACT
from xray.model_card import render_model_card


def split_rule(summary: dict[str, Any]) -> str:
    """The card's description of the split, written from what ``split_dataset`` did."""

    def pct(fraction: Any) -> str:
        return f"{100 * float(fraction):.0f} %"

    text = (
        f"Patient-level and class-stratified (seed {summary.get('seed')}): no patient, and "
        "no byte-identical image, in two splits. "
    )
    if summary.get("official_test_kept"):
        text += (
            "The official Kaggle test/ folder was kept as the test split as published; the "
            f"other images were split into train and validation ({pct(summary['val_fraction'])}"
            " validation). "
        )
        dropped = summary.get("dropped_files") or []
        if dropped:
            copies = sum(d["reason"].startswith("identical") for d in dropped)
            text += (
                f"{len(dropped)} train/val image(s) were dropped because the test split has "
                f"them: {copies} identical copies, {len(dropped) - copies} of a test "
                "patient (named in the split_dataset step's metadata). "
            )
    else:
        if summary.get("official_test_present"):
            text += (
                "A test/ folder was present but NOT kept as the test split "
                "(split_dataset.use_official_test off, as in a retrain after drift): "
            )
        text += (
            f"all images were split three ways ({pct(summary.get('val_fraction', 0))} "
            f"validation, {pct(summary.get('test_fraction') or 0)} test). "
        )
    text += (
        f"Patients: {summary.get('patient_ids_parsed', 0)} ids parsed from Kaggle-style file "
        f"names ({summary.get('images_with_parsed_patient', 0)} images); "
        f"{summary.get('images_one_patient_per_file', 0)} image(s) with no parsable id "
        "counted as one patient each."
    )
    return text


def split_counts(statistics: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Images per class, images and patients per split, from the statistics table."""
    counts: dict[str, dict[str, int]] = {}
    for split, rows in statistics.groupby("split", sort=False):
        entry = {name: int((rows["label"] == name).sum()) for name in CLASS_NAMES}
        entry.update(images=len(rows), patients=int(rows["patient"].nunique()))
        counts[str(split)] = entry
    return counts


@step
def create_model_card(
    image_statistics: pd.DataFrame,
    data_fingerprint: str,
    training_facts: dict[str, Any],
    metrics: dict[str, Any],
    threshold: float,
    uncertainty: dict[str, Any],
    validation_summary: dict[str, Any],
    sources: list[str],
    split_summary: dict[str, Any],
    temperature: dict[str, Any] | None = None,
    error_analysis: dict[str, Any] | None = None,
    external_metrics: dict[str, Any] | None = None,
) -> tuple[
    Annotated[MarkdownString, MODEL_CARD_ARTIFACT],
    Annotated[HTMLString, MODEL_CARD_HTML_ARTIFACT],
]:
    """Writes what a user of this version must know: intended use and the not-a-medical-
    device statement, data and licence, split, training config, test metrics with 95 %
    bootstrap intervals, the threshold and why, calibration, validation verdicts and
    known limitations.

    Args:
        image_statistics: Statistics of every image with its split (class and patient
            counts).
        data_fingerprint: Content fingerprint of the data set.
        training_facts: How the model was trained (config, pretrained, epochs).
        metrics: Test metrics at the threshold.
        threshold: The decision threshold chosen on validation.
        uncertainty: Bootstrap intervals, calibration and the threshold rule's target
            from ``evaluate_model``.
        validation_summary: The data gates' outcome.
        sources: The data folders the data set was loaded from.
        split_summary: What ``split_dataset`` did (described on the card).
        temperature: The temperature scaling fit of ``calibrate_model``.
        error_analysis: Per-subtype results and the error examples of
            ``analyze_errors``.
        external_metrics: The external test sets' scores (``evaluate_external``).

    Returns:
        The card as Markdown and as standalone HTML (both are dashboard visualizations).
    """
    version = get_step_context().model
    card = {
        "model_name": version.name,
        "model_version": str(version.version),
        "created": datetime.now(UTC).date().isoformat(),
        "data": {
            "source": sources,
            "fingerprint": data_fingerprint,
            "splits": split_counts(image_statistics),
            "split_rule": split_rule(split_summary),
            "skipped": int(validation_summary.get("skipped", 0)),
        },
        "training": {
            "config": training_facts.get("config", {}),
            "pretrained": training_facts.get("pretrained"),
            "epochs_run": training_facts.get("epochs_run"),
            "best_val_auc": training_facts.get("best_val_auc"),
        },
        "metrics": metrics,
        "external": external_metrics or {},
        "intervals": uncertainty.get("intervals"),
        "threshold": {
            "value": float(threshold),
            "rule": metrics.get("threshold_rule", "target_sensitivity"),
            "target_sensitivity": uncertainty.get("target_sensitivity"),
            "val_sensitivity": metrics.get("val_sensitivity"),
            "val_specificity": metrics.get("val_specificity"),
            "under_shift": uncertainty.get("threshold_under_shift", False),
            "shift_operating_points": uncertainty.get("shift_operating_points"),
        },
        "calibration": uncertainty.get("calibration"),
        "temperature": temperature,
        "subtypes": (error_analysis or {}).get("subtypes"),
        "error_examples": (error_analysis or {}).get("shown_errors"),
        "validation": {
            "passed": bool(validation_summary.get("passed", False)),
            "warnings": list(validation_summary.get("warnings", [])),
            "drift_share": float(validation_summary.get("drift_share", 0.0)),
            "quality_failed": list(validation_summary.get("quality_failed_checks", [])),
            "drift_failed": list(validation_summary.get("drift_failed_checks", [])),
        },
    }
    markdown, html = render_model_card(card)
    log_metadata(metadata={"model_card_chars": len(markdown)})
    return MarkdownString(markdown), HTMLString(html)
