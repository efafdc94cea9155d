"""The model card, in Markdown and as standalone HTML, rendered from one plain dict.

This module decides what the card says (its sections: paragraphs, bullet lists, tables);
the Jinja2 templates of :mod:`xray.reporting.document` decide how it looks, both formats
from the same sections, so they cannot say different things. Every value taken from the
card dict is escaped for each format; missing optional parts read "not recorded".
"""

import json
import math
from typing import Any, Required, TypedDict

from xray.logic.constants import (
    CLASS_NAMES,
    ERROR_EXAMPLES_ARTIFACT,
    GRADCAM_EXAMPLES_ARTIFACT,
    SPLIT_NAMES,
)
from xray.logic.records import ReleaseRecord, SplitSummary
from xray.ml.serving import DISCLAIMER
from xray.reporting.document import (
    Block,
    Bullets,
    Code,
    Inline,
    Notice,
    Paragraph,
    Section,
    Table,
    render,
)

NOT_RECORDED = "not recorded"
NOT_AVAILABLE = "n/a"

DATA_ATTRIBUTION = (
    "Kermany, D., Zhang, K., Goldbaum, M. (2018). Labeled Optical Coherence Tomography "
    "(OCT) and Chest X-Ray Images for Classification. Mendeley Data, v2. "
    "doi:10.17632/rscbjbr9sj.2"
)

# Test metrics of xray.logic.metrics.classification_metrics shown in the performance table.
PERFORMANCE_ROWS = (
    ("roc_auc", "ROC AUC"),
    ("pr_auc", "PR AUC (average precision)"),
    ("accuracy", "Accuracy"),
    ("sensitivity", "Sensitivity (recall of PNEUMONIA)"),
    ("specificity", "Specificity"),
    ("precision", "Precision (positive predictive value)"),
    ("f1", "F1"),
)


class SplitCounts(TypedDict, total=False):
    """Images of one split: per class, in all, and distinct patients."""

    NORMAL: int
    PNEUMONIA: int
    images: int
    patients: int


class CardData(TypedDict, total=False):
    """Where the images came from and how they were split."""

    source: str | list[str]
    fingerprint: str
    splits: dict[str, SplitCounts]  # keys "train", "val", "test"
    split_rule: str  # e.g. "patient-level, seed 42, official test folder kept"
    skipped: int  # files skipped while loading


class CardTraining(TypedDict, total=False):
    """The training configuration and what actually happened.

    ``config`` holds the run's training settings (any keys). When there is no ``config``
    key, every key other than the three facts below is shown as a setting.
    """

    config: dict[str, Any]
    pretrained: bool  # whether ImageNet weights were loaded into the backbone
    epochs_run: int
    best_val_auc: float


class CardThreshold(TypedDict, total=False):
    """The operating threshold, chosen on the validation split."""

    value: float
    rule: str  # "target_sensitivity" or "youden"
    target_sensitivity: float
    val_sensitivity: float
    val_specificity: float
    under_shift: bool  # chosen on validation pooled with its shifted copies
    shift_operating_points: dict[str, dict[str, float]]  # xray.logic.shifts.operating_points


class CardValidation(TypedDict, total=False):
    """Verdicts of the data quality and drift gates.

    The keys are those of :class:`xray.logic.records.ValidationSummary`.
    """

    passed: bool
    warnings: list[str]
    drift_share: float
    quality_failed_checks: list[str]
    drift_failed_checks: list[str]


class CardTemperature(TypedDict, total=False):
    """Temperature scaling fitted on validation (:func:`xray.logic.calibration.calibrate`)."""

    temperature: float
    applied: bool  # whether the served model includes it
    min_improvement: float  # the relative validation NLL reduction it had to reach
    val_nll_before: float
    val_nll_after: float
    val_ece_before: float
    val_ece_after: float


class ModelCard(TypedDict, total=False):
    """Everything the model card says. Only the name and version are required.

    ``metrics`` is the output of :func:`xray.logic.metrics.classification_metrics` on the test
    split, ``intervals`` of :func:`xray.logic.metrics.bootstrap_intervals` (95% level),
    ``calibration`` of :func:`xray.logic.metrics.calibration_summary`, ``temperature`` of
    :func:`xray.logic.calibration.calibrate` and ``subtypes`` of
    :func:`xray.reporting.error_analysis.subtype_results` on the test split. ``error_examples`` is
    how many confident errors the ``error_examples`` visualization shows.
    """

    model_name: Required[str]
    model_version: Required[str]
    created: str  # ISO date
    data: CardData
    training: CardTraining
    metrics: dict[str, Any]
    intervals: dict[str, list[float]]
    external: dict[str, dict[str, Any]]  # per set: xray.logic.external.score_set + source, drift
    threshold: CardThreshold
    calibration: dict[str, Any]
    temperature: CardTemperature
    subtypes: dict[str, dict[str, Any]]
    error_examples: int
    validation: CardValidation
    approval: dict[str, Any]  # a person's sign-off: by, note, time, stage, evidence


def card_from_release(release: ReleaseRecord) -> ModelCard:
    """What the card of a released version says, from its release record."""
    evaluation, validation = release.evaluation, release.validation
    training = release.training
    errors = release.error_analysis
    return {
        "model_name": release.model_name,
        "model_version": release.model_version,
        "created": release.created,
        "data": {
            "source": release.sources,
            "fingerprint": release.data_fingerprint,
            "splits": release.split_counts,
            "split_rule": split_rule(release.split),
            "skipped": validation.skipped,
        },
        "training": {
            "config": training.config.model_dump(exclude={"resume"}),
            "pretrained": training.pretrained,
            "epochs_run": training.epochs_run,
            "best_val_auc": training.best_val_auc,
        },
        "metrics": evaluation.metrics.model_dump(),
        "external": {name: s.model_dump() for name, s in release.external.sets.items()},
        "intervals": evaluation.intervals,
        "threshold": {
            "value": evaluation.threshold,
            "rule": evaluation.threshold_rule,
            "target_sensitivity": evaluation.target_sensitivity,
            "val_sensitivity": evaluation.val_sensitivity,
            "val_specificity": evaluation.val_specificity,
            "under_shift": evaluation.threshold_under_shift,
            "shift_operating_points": evaluation.shift_operating_points or {},
        },
        "calibration": evaluation.calibration,
        "temperature": release.calibration.model_dump() if release.calibration else None,
        "subtypes": errors.subtypes if errors else None,
        "error_examples": errors.shown_errors if errors else None,
        "validation": {
            "passed": validation.passed,
            "warnings": validation.warnings,
            "drift_share": validation.drift_share,
            "quality_failed_checks": validation.quality_failed_checks,
            "drift_failed_checks": validation.drift_failed_checks,
        },
    }


def split_rule(summary: SplitSummary) -> str:
    """The card's description of the split, written from what ``split_dataset`` did."""

    def pct(fraction: Any) -> str:
        return f"{100 * float(fraction):.0f} %"

    text = (
        f"Patient-level and class-stratified (seed {summary.seed}): no patient, and "
        "no byte-identical image, in two splits. "
    )
    if summary.official_test_kept:
        text += (
            "The official Kaggle test/ folder was kept as the test split as published; the "
            f"other images were split into train and validation ({pct(summary.val_fraction)}"
            " validation). "
        )
        dropped = summary.dropped_files
        if dropped:
            copies = sum(d["reason"].startswith("identical") for d in dropped)
            text += (
                f"{len(dropped)} train/val image(s) were dropped because the test split has "
                f"them: {copies} identical copies, {len(dropped) - copies} of a test "
                "patient (named in the split_dataset step's metadata). "
            )
    else:
        if summary.official_test_present:
            text += (
                "A test/ folder was present but NOT kept as the test split "
                "(split_dataset.config.use_official_test off, as in a retrain after drift): "
            )
        text += (
            f"all images were split three ways ({pct(summary.val_fraction)} "
            f"validation, {pct(summary.test_fraction or 0)} test). "
        )
    text += (
        f"Patients: {summary.patient_ids_parsed} ids parsed from Kaggle-style file "
        f"names ({summary.images_with_parsed_patient} images); "
        f"{summary.images_one_patient_per_file} image(s) with no parsable id "
        "counted as one patient each."
    )
    return text


# --- Formatting of values -------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _number(value: Any, digits: int = 3) -> str:
    """A metric-like number with ``digits`` decimals; NaN as n/a; None as not recorded."""
    if _is_missing(value):
        return NOT_RECORDED
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return NOT_AVAILABLE if math.isnan(number) else f"{number:.{digits}f}"


def _count(value: Any) -> str:
    """A count as an integer; None as not recorded."""
    if _is_missing(value):
        return NOT_RECORDED
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return NOT_AVAILABLE
    return str(int(number)) if number.is_integer() else _number(number)


def _interval(bounds: Any) -> str:
    if _is_missing(bounds):
        return NOT_RECORDED
    low, high = bounds
    if math.isnan(float(low)) or math.isnan(float(high)):
        return NOT_AVAILABLE
    return f"{_number(low)}–{_number(high)}"


def _setting(value: Any) -> str:
    """A configuration value as written in a run config (JSON literals, compact floats)."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _text(value: Any) -> str:
    return NOT_RECORDED if _is_missing(value) else str(value)


def _code(value: Any) -> Inline:
    return NOT_RECORDED if _is_missing(value) else Code(str(value))


def _yes_no_failed(failed: Any) -> str:
    if failed is None:
        return NOT_RECORDED
    if not failed:
        return "passed"
    return "failed: " + ", ".join(str(name) for name in failed)


# --- Sections ------------------------------------------------------------------------


def _intended_use() -> Section:
    return Section(
        "Intended use",
        (
            Notice(DISCLAIMER),
            Paragraph(
                (
                    "The model classifies a frontal chest X-ray as NORMAL or PNEUMONIA and "
                    "returns P(PNEUMONIA) with the label at the operating threshold below. "
                    "It exists to demonstrate reproducible training, evaluation, data "
                    "validation and serving of an image classifier, for research and "
                    "teaching.",
                )
            ),
            Paragraph(
                (
                    "Out of scope: diagnosis, screening, triage or any other clinical "
                    "decision; adults; images from other hospitals or devices without a new "
                    "validation; images that are not frontal chest radiographs.",
                )
            ),
        ),
    )


def _data(data: dict[str, Any]) -> Section:
    blocks: list[Block] = []
    source = data.get("source")
    sources = [source] if isinstance(source, str) else list(source or [])
    if len(sources) > 1:
        blocks.append(Paragraph(("Sources:",)))
        blocks.append(Bullets(tuple((Code(str(s)),) for s in sources)))
    else:
        blocks.append(Paragraph(("Source: ", _code(sources[0] if sources else None))))
    blocks.append(
        Paragraph(
            (
                "Licence and attribution: when the model is trained on the chest X-ray "
                "images of Kermany et al. or a derivative of them (such as the Kaggle "
                '"Chest X-Ray Images (Pneumonia)" set), the data are licensed CC BY 4.0 '
                f"and must be attributed: {DATA_ATTRIBUTION}. Whoever trains on their own "
                "data must state that data's licence and attribution instead.",
            )
        )
    )
    blocks.append(Paragraph(("Split rule: ", _text(data.get("split_rule")))))
    splits = data.get("splits")
    if splits:
        names = list(SPLIT_NAMES) + [name for name in splits if name not in SPLIT_NAMES]
        rows = tuple(
            (
                name,
                *(
                    _count((splits.get(name) or {}).get(k))
                    for k in (*CLASS_NAMES, "images", "patients")
                ),
            )
            for name in names
        )
        blocks.append(Table(("Split", *CLASS_NAMES, "Images", "Patients"), rows))
    else:
        blocks.append(Paragraph(("Class counts per split: ", NOT_RECORDED)))
    blocks.append(Paragraph(("Content fingerprint: ", _code(data.get("fingerprint")))))
    blocks.append(Paragraph(("Files skipped while loading: ", _count(data.get("skipped")))))
    return Section("Data", tuple(blocks))


def _training(training: dict[str, Any]) -> Section:
    facts = ("pretrained", "epochs_run", "best_val_auc")
    config = training.get("config")
    if config is None:
        config = {k: v for k, v in training.items() if k not in facts}
    pretrained = training.get("pretrained")
    if pretrained is None:
        weights_line = "Pretrained (ImageNet) weights: not recorded."
    elif pretrained:
        weights_line = "Pretrained: yes. The backbone started from ImageNet weights."
    else:
        weights_line = (
            "Pretrained: no. No ImageNet weights were used: the network was trained from "
            "random initialisation on this data alone."
        )
        if config.get("weights") == "imagenet":
            weights_line += (
                " ImageNet weights were requested, but this backbone has none or they "
                "could not be loaded."
            )
    blocks: list[Block] = [
        Paragraph((weights_line,)),
        Bullets(
            (
                ("Epochs run: ", _count(training.get("epochs_run"))),
                ("Best validation ROC AUC: ", _number(training.get("best_val_auc"))),
            )
        ),
    ]
    if config:
        rows = tuple((Code(str(k)), Code(_setting(v))) for k, v in config.items())
        blocks.append(Table(("Setting", "Value"), rows))
    else:
        blocks.append(Paragraph(("Training configuration: ", NOT_RECORDED)))
    return Section("Training", tuple(blocks))


def _subtypes(subtypes: dict[str, Any] | None) -> list[Block]:
    if subtypes is None:
        return [Paragraph(("Results per PNEUMONIA subtype: ", NOT_RECORDED))]
    normal = subtypes.get(CLASS_NAMES[0])
    rows = tuple(
        (
            str(name),
            _count(result.get("n")),
            _count(result.get("detected")),
            _number(result.get("sensitivity")),
            _number(result.get("mean_probability")),
        )
        for name, result in subtypes.items()
        if name != CLASS_NAMES[0]
    )
    if rows:
        blocks: list[Block] = [
            Paragraph(
                (
                    "Per PNEUMONIA subtype (from file names), at the operating threshold; "
                    "detected = true positives:",
                )
            ),
            Table(("Subtype", "Images", "Detected", "Sensitivity", "Mean P(PNEUMONIA)"), rows),
        ]
    else:
        blocks = [
            Paragraph(
                (
                    "Per PNEUMONIA subtype: none; the test file names name no subtype "
                    "(bacteria or virus).",
                )
            )
        ]
    if normal:
        blocks.append(
            Paragraph(
                (
                    f"NORMAL: {_count(normal.get('n'))} images, specificity "
                    f"{_number(normal.get('specificity'))}, mean P(PNEUMONIA) "
                    f"{_number(normal.get('mean_probability'))}.",
                )
            )
        )
    return blocks


def _error_examples(count: Any) -> Paragraph:
    errors, gradcam = Code(ERROR_EXAMPLES_ARTIFACT), Code(GRADCAM_EXAMPLES_ARTIFACT)
    if _is_missing(count):
        return Paragraph(("Error examples: ", NOT_RECORDED))
    if not count:
        return Paragraph(
            (
                "No test image is misclassified at the operating threshold, so the ",
                errors,
                " visualization is empty; Grad-CAM heatmaps of test images of each class "
                "are in the ",
                gradcam,
                " visualization.",
            )
        )
    return Paragraph(
        (
            f"The {_count(count)} most confident errors on the test split (false positives "
            "and false negatives at the operating threshold) are shown in the ",
            errors,
            " visualization, and Grad-CAM heatmaps of test images of each class in the ",
            gradcam,
            " visualization (ZenML dashboard).",
        )
    )


def _performance(
    metrics: dict[str, Any],
    intervals: dict[str, Any] | None,
    subtypes: dict[str, Any] | None,
    error_examples: Any,
) -> Section:
    analysis = [*_subtypes(subtypes), _error_examples(error_examples)]
    if not metrics:
        return Section(
            "Performance on the held-out test split (in-split)",
            (Paragraph(("Test metrics: ", NOT_RECORDED)), *analysis),
        )

    def ci(key: str) -> str:
        if intervals is None:
            return NOT_RECORDED
        return _interval(intervals[key]) if key in intervals else "not computed"

    rows = tuple((label, _number(metrics.get(key)), ci(key)) for key, label in PERFORMANCE_ROWS)
    confusion = Table(
        ("", "Predicted NORMAL", "Predicted PNEUMONIA"),
        (
            (
                "True NORMAL",
                f"{_count(metrics.get('tn'))} (TN)",
                f"{_count(metrics.get('fp'))} (FP)",
            ),
            (
                "True PNEUMONIA",
                f"{_count(metrics.get('fn'))} (FN)",
                f"{_count(metrics.get('tp'))} (TP)",
            ),
        ),
    )
    return Section(
        "Performance on the held-out test split (in-split)",
        (
            Paragraph(
                (
                    f"{_count(metrics.get('n'))} test images, at the operating threshold "
                    f"{_number(metrics.get('threshold'))} (an image is labelled PNEUMONIA "
                    "when P(PNEUMONIA) ≥ threshold). Intervals: 95% percentile bootstrap over "
                    "test patients (a drawn patient brings all of their images). The test "
                    "split comes from the same collection as the training images: these are "
                    "in-split figures, an upper bound for other sites and devices.",
                )
            ),
            Table(("Metric", "Value", "95% CI (bootstrap)"), rows),
            Paragraph(("Confusion counts on the test split:",)),
            confusion,
            *analysis,
        ),
    )


def _threshold(threshold: dict[str, Any], metrics: dict[str, Any]) -> Section:
    value = threshold.get("value", metrics.get("threshold"))
    if _is_missing(value):
        return Section("Operating threshold", (Paragraph(("Threshold: ", NOT_RECORDED)),))
    rule = threshold.get("rule", metrics.get("threshold_rule"))
    target = threshold.get("target_sensitivity")
    if rule == "target_sensitivity":
        how = (
            "the highest threshold whose validation sensitivity reaches "
            f"{_number(target)}, so that specificity is as high as it can be at that "
            "sensitivity"
        )
    elif rule == "youden":
        how = (
            "the threshold that maximises Youden's J (sensitivity + specificity − 1) on "
            "validation, giving sensitivity and specificity equal weight"
        )
    elif _is_missing(rule):
        how = f"rule {NOT_RECORDED}"
    else:
        how = f"rule {rule}"
    val_sens = threshold.get("val_sensitivity", metrics.get("val_sensitivity"))
    val_spec = threshold.get("val_specificity", metrics.get("val_specificity"))
    blocks: list[Block] = [
        Paragraph(("Threshold: ", _number(value))),
        Paragraph((f"Chosen on the validation split only (never on test): {how}.",)),
        Paragraph(
            (
                f"On the validation split it gave sensitivity {_number(val_sens)} and "
                f"specificity {_number(val_spec)}. On the held-out test split the same "
                f"threshold gives sensitivity {_number(metrics.get('sensitivity'))} and "
                f"specificity {_number(metrics.get('specificity'))}.",
            )
        ),
    ]
    test_sens = metrics.get("sensitivity")
    if (
        rule == "target_sensitivity"
        and isinstance(target, int | float)
        and isinstance(test_sens, int | float)
        and test_sens < target
    ):
        blocks.append(
            Paragraph(
                (
                    "The test sensitivity is below the validation target: the target holds on "
                    "the validation images, and new data can fall short of it.",
                )
            )
        )
    if threshold.get("under_shift"):
        blocks.insert(
            2,
            Paragraph(
                (
                    "The validation images were pooled with their copies under every "
                    "acquisition shift of the shift suite, so the rule holds across them.",
                )
            ),
        )
    points = threshold.get("shift_operating_points") or {}
    if points.get("worst"):
        rows = tuple(
            (
                name,
                _number(point.get("sensitivity")),
                _number(point.get("specificity")),
                _number(point.get("roc_auc")),
            )
            for name, point in points.items()
        )
        blocks += [
            Paragraph(
                (
                    "The same threshold on the test split under controlled acquisition changes "
                    "(exposure, contrast, gamma, blur, sharpening, noise, JPEG, crop, borders, "
                    "rotation, resolution): how far the operating point moves when images look "
                    "different.",
                )
            ),
            Table(("Shift", "Sensitivity", "Specificity", "ROC-AUC"), rows),
        ]
    return Section("Operating threshold", tuple(blocks))


def _temperature(temperature: dict[str, Any] | None) -> Paragraph:
    if not temperature or _is_missing(temperature.get("temperature")):
        return Paragraph(("Temperature scaling: ", NOT_RECORDED))
    change = (
        f"validation NLL {_number(temperature.get('val_nll_before'))} → "
        f"{_number(temperature.get('val_nll_after'))}, ECE "
        f"{_number(temperature.get('val_ece_before'))} → "
        f"{_number(temperature.get('val_ece_after'))}"
    )
    fitted = (
        "Temperature scaling (P = sigmoid(logit(P) / T)) fitted on the validation split: "
        f"T = {_number(temperature.get('temperature'), 2)}, "
    )
    if temperature.get("applied"):
        return Paragraph(
            (
                f"{fitted}applied ({change}). The served model includes it as its last "
                "layer, so the test metrics and the calibration below are of the served "
                "(calibrated) model. It does not change the ranking of images, so the AUCs "
                "are those of the network alone.",
            )
        )
    margin = temperature.get("min_improvement")
    by = (
        f"by {float(margin) * 100:g} %"
        if isinstance(margin, int | float) and not math.isnan(margin)
        else "by the required margin"
    )
    return Paragraph(
        (
            f"{fitted}not applied: it did not improve validation NLL {by} ({change}). The "
            "served model returns the network's probabilities unchanged.",
        )
    )


def _calibration(calibration: dict[str, Any] | None, temperature: dict[str, Any] | None) -> Section:
    scaling = _temperature(temperature)
    if not calibration:
        return Section("Calibration", (scaling, Paragraph(("Calibration: ", NOT_RECORDED))))
    bins = [b for b in calibration.get("bins", []) if b.get("count")]
    rows = tuple(
        (
            f"{_number(b.get('lower'), 2)}–{_number(b.get('upper'), 2)}",
            _count(b.get("count")),
            _number(b.get("mean_probability")),
            _number(b.get("fraction_positive")),
        )
        for b in bins
    )
    return Section(
        "Calibration",
        (
            scaling,
            Bullets(
                (
                    (
                        f"Expected calibration error (ECE, {_count(calibration.get('n_bins'))} "
                        f"equal-width bins): {_number(calibration.get('ece'))}",
                    ),
                    (
                        f"Brier score: {_number(calibration.get('brier'))} (lower is better; "
                        "always answering 0.5 scores 0.250)",
                    ),
                )
            ),
            Paragraph(("Non-empty bins on the test split:",)),
            Table(("P(PNEUMONIA) bin", "Images", "Mean P", "Fraction PNEUMONIA"), rows),
        ),
    )


def _validation(validation: dict[str, Any] | None) -> Section:
    if not validation:
        return Section("Data validation", (Paragraph(("Data validation: ", NOT_RECORDED)),))
    passed = validation.get("passed")
    quality = validation.get("quality_failed_checks")
    drift = validation.get("drift_failed_checks")
    overall = (
        NOT_RECORDED
        if passed is None
        else ("passed" if passed else "not passed (gate in warn mode)")
    )
    warnings = validation.get("warnings")
    blocks: list[Block] = [
        Bullets(
            (
                ("Overall: ", overall),
                ("Data quality: ", _yes_no_failed(quality)),
                ("Data drift: ", _yes_no_failed(drift)),
                (
                    "Largest share of drifted image statistics: "
                    f"{_number(validation.get('drift_share'))}",
                ),
            )
        )
    ]
    if warnings is None:
        blocks.append(Paragraph(("Warnings: ", NOT_RECORDED)))
    elif not warnings:
        blocks.append(Paragraph(("Warnings: none",)))
    else:
        blocks.append(Paragraph(("Warnings:",)))
        blocks.append(Bullets(tuple((str(w),) for w in warnings)))
    return Section("Data validation", tuple(blocks))


def _limitations() -> Section:
    items = (
        "Pediatric cohort: the public data are chest X-rays of patients aged 1–5 years "
        "from Guangzhou Women and Children's Medical Center; no adults.",
        "Single hospital and no data from other X-ray devices: performance elsewhere is unknown.",
        "Images are resized: the shipped and benchmark data are 224×224 resizes that do "
        "not keep the aspect ratio, and the model resizes every image to its input size.",
        "The public labels are known to be noisy.",
        "Classes are imbalanced (the public set has nearly three PNEUMONIA images per "
        "NORMAL one), so accuracy alone misleads; read sensitivity and specificity.",
        "Small test sets give wide intervals. In-split test figures overstate performance "
        "on another collection: on the official Kaggle test split (same hospital, another "
        "collection) an earlier model with in-split AUC 0.994 scored 0.924; see the "
        "external sets, where there are any.",
        "Not validated prospectively or in any clinical setting.",
    )
    return Section("Known limitations", (Bullets(tuple((item,) for item in items)),))


def _external(external: dict[str, Any] | None, threshold: Any) -> Section:
    title = "Performance on external test sets"
    if not external:
        return Section(
            title,
            (
                Paragraph(
                    (
                        "None: this run had no external test set (python run.py --data TRAIN "
                        "--external-test OTHER_SITE). The figures above are in-split only.",
                    )
                ),
            ),
        )
    rows = []
    for name, result in external.items():
        metrics, intervals = result.get("metrics") or {}, result.get("intervals") or {}
        for key, label in PERFORMANCE_ROWS:
            if key in ("roc_auc", "accuracy", "sensitivity", "specificity"):
                rows.append((name, label, _number(metrics.get(key)), _interval(intervals.get(key))))
    notes = []
    for name, result in external.items():
        counts = result.get("class_counts") or {}
        dropped = result.get("dropped_overlaps") or []
        drifted = ", ".join(result.get("drifted_columns") or []) or "none"
        notes.append(
            (
                f"{name}: {_count(result.get('n'))} images of {_count(result.get('patients'))} "
                f"patients ({_count(counts.get('NORMAL'))} NORMAL, "
                f"{_count(counts.get('PNEUMONIA'))} PNEUMONIA) from {_text(result.get('source'))}; "
                f"{len(dropped)} image(s) dropped because this run's own splits have them; "
                f"image statistics drifted from training: {drifted}.",
            )
        )
    return Section(
        title,
        (
            Paragraph(
                (
                    "Labelled sets from another site or collection, scored by the final model "
                    f"at the operating threshold {_number(threshold)} and never used for any "
                    "choice (threshold, calibration, early stopping, promotion comparison). "
                    "Intervals: 95% bootstrap over patients.",
                )
            ),
            Table(("Set", "Metric", "Value", "95% CI (bootstrap)"), tuple(rows)),
            Bullets(tuple(notes)),
        ),
    )


def _approval(approval: dict[str, Any] | None) -> Section:
    if not approval:
        return Section("Sign-off", (Paragraph(("No person has signed this version off.",)),))
    items: list[tuple[Inline, ...]] = [
        ("Signed off by: ", _text(approval.get("by"))),
        ("When: ", _text(approval.get("time"))),
        ("Note: ", _text(approval.get("note"))),
    ]
    if approval.get("evidence"):
        items.append(("Evidence: ", _text(approval.get("evidence"))))
    return Section("Sign-off", (Bullets(tuple(items)),))


def card_sections(card: ModelCard | dict[str, Any]) -> tuple[str, list[Section]]:
    """The title and the sections of the model card, in order.

    Raises:
        ValueError: When ``model_name`` or ``model_version`` is missing.
    """
    missing = [k for k in ("model_name", "model_version") if _is_missing(card.get(k))]
    if missing:
        raise ValueError(f"The model card needs {' and '.join(missing)}; none was given.")
    metrics = card.get("metrics") or {}
    title = f"Model card: {card['model_name']} {card['model_version']}"
    created = Section("", (Paragraph(("Created: ", _text(card.get("created")))),))
    return title, [
        created,
        _intended_use(),
        _data(card.get("data") or {}),
        _training(card.get("training") or {}),
        _performance(
            metrics, card.get("intervals"), card.get("subtypes"), card.get("error_examples")
        ),
        _external(card.get("external"), (card.get("threshold") or {}).get("value")),
        _threshold(card.get("threshold") or {}, metrics),
        _calibration(card.get("calibration"), card.get("temperature")),
        _validation(card.get("validation")),
        _limitations(),
        *([_approval(card.get("approval"))] if "approval" in card else []),
    ]


def render_model_card(card: ModelCard | dict[str, Any]) -> tuple[str, str]:
    """Renders the model card in Markdown and as a standalone HTML page.

    Args:
        card: What the card says (see :class:`ModelCard`); optional parts may be missing
            and then read "not recorded".

    Returns:
        ``(markdown, html)``: the same sections in both formats. The HTML page has its CSS
        inline and loads nothing.

    Raises:
        ValueError: When ``model_name`` or ``model_version`` is missing.
    """
    title, sections = card_sections(card)
    return (
        render("document.md.j2", title=title, sections=sections),
        render("document.html.j2", title=title, sections=sections),
    )
