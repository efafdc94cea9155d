"""Every step setting, once: one pydantic model per configurable step.

A step takes its settings as one parameter, ``config``; the run config YAML sets it under
``steps.<step>.parameters.config`` and holds only deliberate choices, since every default
lives here and nowhere else (not in step signatures, not in ``build_model``). Unknown keys
are errors, so a typo cannot be silently ignored. The README's configuration tables are
generated from these field descriptions (``python -m xray.logic.settings``); a unit test keeps
them current.

This module imports neither TensorFlow nor ZenML: the CLI, the service and the tests read
it cheaply.
"""

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

DRIFT_COLUMNS: tuple[str, ...] = (
    "width",
    "height",
    "aspect_ratio",
    "file_size",
    "mean",
    "std",
    "p5",
    "p50",
    "p95",
    "entropy",
    "sharpness",
    "frac_black",
    "frac_white",
)
"""Numerical image statistics compared for drift (train vs val/test, and new data)."""

GuardMode = Literal["refuse", "flag", "off"]
GUARD_MODES: tuple[str, ...] = get_args(GuardMode)
"""What happens to an image the input guard refuses (batch inference and the service)."""

DriftAction = Literal["warn", "fail", "retrain"]
DRIFT_ACTIONS: tuple[str, ...] = get_args(DriftAction)
"""What drift in new images leads to (``handle_drift``, ``run.py --on-drift``)."""


class Settings(BaseModel):
    """Base of every step's settings: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class LoadSettings(Settings):
    """``load_dataset``: reading the data folder(s)."""

    min_images: int = Field(
        20, ge=2, description="fail when fewer usable images remain (also: 2 per class)"
    )


class SplitSettings(Settings):
    """``split_dataset``: the patient-level, class-stratified split."""

    val_fraction: float = Field(
        0.2, gt=0, lt=1, description="share of each class's images for validation"
    )
    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="share for test when there is no Kaggle `test/` folder"
    )
    seed: int = Field(42, description="seed of the patient shuffle")
    use_official_test: bool = Field(
        True, description="keep a Kaggle `test/` folder as the test split"
    )


class QualityGateConfig(Settings):
    """``check_data_quality``: thresholds of the data quality gate."""

    mode: Literal["fail", "warn"] = Field(
        "fail",
        description="`fail`: stop the run before training when a check fails; "
        "`warn`: log and record only",
    )
    max_unreadable_fraction: float = Field(
        0.05,
        ge=0,
        le=1,
        description="largest share of found files that may be unreadable or corrupt",
    )
    max_cross_split_duplicates: int = Field(
        0, ge=0, description="identical images allowed in two splits (a leak)"
    )
    max_duplicate_fraction: float = Field(
        0.01,
        ge=0,
        le=1,
        description="largest share of repeated identical images within one split",
    )
    min_class_fraction: float = Field(
        0.1, ge=0, le=0.5, description="smallest share of either class in every split"
    )
    aspect_ratio_range: tuple[float, float] = Field(
        (0.5, 2.0), description="width/height outside this range is a size outlier"
    )
    size_outlier_z: float = Field(
        6.0,
        gt=0,
        description="robust z-score of log(width × height) beyond which an image is a size outlier",
    )
    max_size_outlier_fraction: float = Field(
        0.02, ge=0, le=1, description="largest share of size outliers in any split"
    )
    min_intensity_std: float = Field(
        4.0,
        ge=0,
        description="an image whose pixel standard deviation is below this is near-constant",
    )
    max_near_constant: int = Field(0, ge=0, description="near-constant images allowed")


class DriftTest(Settings):
    """The Evidently drift test, as the training gate and batch inference both run it."""

    max_drift_share: float = Field(
        0.2,
        ge=0,
        le=1,
        description="largest share of drifted statistics that is not drift (training: val "
        "and test vs train; inference: the new images vs the model's training images)",
    )
    columns: list[str] = Field(
        default_factory=lambda: list(DRIFT_COLUMNS),
        description="statistics compared (default: all 13 numerical statistics: "
        + ", ".join(DRIFT_COLUMNS)
        + ")",
    )
    method: str | None = Field(
        None,
        description="one Evidently drift method for every column, e.g. `ks`, `wasserstein`, "
        "`psi` (null: Evidently's default, K-S below 1,000 rows, normed Wasserstein above)",
    )
    threshold: float | None = Field(
        None, description="per-column drift threshold of that method (null: its default)"
    )


class DriftGateConfig(DriftTest):
    """``check_data_drift``: thresholds of the drift gate (val and test vs train)."""

    mode: Literal["fail", "warn"] = Field("fail", description="`fail` or `warn`, as above")


class TrainConfig(Settings):
    """``train_model``: the model and how it is trained."""

    backbone: Literal["compact_cnn", "mobilenet_v2", "vgg16"] = Field(
        "compact_cnn",
        description="`compact_cnn` (from scratch, CPU-friendly), `mobilenet_v2`, or `vgg16` "
        "(the seed's backbone; pretrained when the Keras cache has its weights)",
    )
    image_size: int = Field(
        160, ge=32, le=1024, description="side length images are resized to (inside the model)"
    )
    weights: Literal["imagenet"] | None = Field(
        "imagenet",
        description="`imagenet`: pretrained backbone weights when the Keras cache has them "
        "or they can be downloaded (else random init, with a warning); `none`: random init",
    )
    freeze_base: Literal["auto"] | bool = Field(
        "auto",
        description="freeze the backbone first: `auto` (when pretrained), `true`, `false`",
    )
    augment: bool = Field(
        True, description="random rotation/shift/zoom/contrast while training end to end"
    )
    augment_acquisition: bool = Field(
        True,
        description="with `augment`: random gamma, exposure, contrast, blur/sharpening and "
        "noise in training, so the model cannot key on one scanner's look",
    )
    standardize_intensity: bool = Field(
        True,
        description="standardise each image's intensities (mean and spread) inside the "
        "model, in training and serving alike",
    )
    batch_size: int = Field(16, ge=1, description="images per batch")
    epochs: int = Field(
        20, ge=1, description="epochs of the first phase (frozen head, or end to end)"
    )
    learning_rate: float = Field(1e-3, gt=0, description="Adam learning rate of the first phase")
    fine_tune_epochs: int = Field(
        0, ge=0, description="epochs with the backbone's last block unfrozen (0 = skip)"
    )
    fine_tune_learning_rate: float = Field(
        1e-5, gt=0, description="Adam learning rate while fine-tuning"
    )
    early_stopping_patience: int = Field(
        6,
        ge=1,
        description="epochs without validation-AUC gain before stopping (best weights kept)",
    )
    cache_frozen_features: bool = Field(
        True,
        description="frozen phase on backbone features computed once (no augmentation in "
        "that phase)",
    )
    class_weights: bool = Field(True, description="weight the loss by inverse class frequency")
    dropout: float = Field(0.3, ge=0, lt=1, description="dropout before the output layer")
    seed: int = Field(42, description="seed for weights, shuffling and augmentation")
    resume: bool = Field(
        True,
        description="back up every epoch to the artifact store and resume an interrupted "
        "run with the same data and settings",
    )

    @field_validator("weights", mode="before")
    @classmethod
    def _none_string(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() in ("none", "null", ""):
            return None
        return value

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values (for metadata and MLflow params)."""
        return self.model_dump()


class CalibrationSettings(Settings):
    """``calibrate_model``: temperature scaling on validation."""

    min_improvement: float = Field(
        0.01,
        ge=0,
        description="relative validation log-loss gain temperature scaling must bring to be "
        "applied",
    )


class EvaluationSettings(Settings):
    """``evaluate_model``: the threshold and the test figures."""

    threshold_rule: Literal["target_sensitivity", "youden"] = Field(
        "target_sensitivity", description="`target_sensitivity` or `youden`"
    )
    target_sensitivity: float = Field(
        0.95, gt=0, le=1, description="validation sensitivity the threshold must reach"
    )
    bootstrap_resamples: int = Field(
        1000,
        ge=0,
        description="resamples of the test split's **patients** for the 95 % intervals "
        "(each drawn patient brings all of their images)",
    )
    threshold_under_shift: bool = Field(
        True,
        description="choose the threshold on the validation images pooled with their "
        "copies under every shift of the shift suite",
    )
    shift_check: bool = Field(
        True,
        description="report the threshold's sensitivity and specificity on the test split "
        "under every shift (card, metadata `shift_operating_points`)",
    )
    shift_check_images: int = Field(
        600,
        ge=1,
        description="at most this many test images for that check (a seeded sample keeping "
        "the class balance)",
    )


class GuardSettings(Settings):
    """``fit_input_guard``: the input guard fitted on training and validation images."""

    target_acceptance: float = Field(
        0.995,
        gt=0.5,
        lt=1,
        description="share of validation images the [input guard](#what-the-service-accepts) "
        "must accept; its distance threshold is the smallest that does",
    )
    batch_size: int = Field(
        64, ge=1, description="images per forward pass while computing the guard's embeddings"
    )


class ErrorAnalysisSettings(Settings):
    """``analyze_errors``: the error examples and Grad-CAM overlays."""

    examples: int = Field(
        6, ge=0, description="most confident false positives and false negatives shown, each"
    )
    gradcam_per_class: int = Field(
        3, ge=0, description="test images per class with a Grad-CAM overlay"
    )


class ExternalEvaluationSettings(Settings):
    """``evaluate_external``: scoring the ``--external-test`` sets."""

    bootstrap_resamples: int = Field(
        1000, ge=0, description="patient resamples for the external sets' 95 % intervals"
    )


class PromotionGates(Settings):
    """``promote_model``: when a version may become production."""

    min_auc: float = Field(
        0.9, ge=0, le=1, description="lowest test ROC-AUC a version needs to become production"
    )
    min_sensitivity: float = Field(
        0.9, ge=0, le=1, description="lowest test sensitivity at the version's own threshold"
    )
    max_auc_drop: float = Field(
        0.01,
        ge=0,
        le=1,
        description="largest AUC loss against production, both scored on the same test images",
    )
    max_sensitivity_drop: float = Field(
        0.02,
        ge=0,
        le=1,
        description="largest sensitivity loss against production on the same images",
    )
    min_external_auc: float | None = Field(
        None,
        ge=0,
        le=1,
        description="lowest ROC-AUC on every `--external-test` set (null: no such gate; set "
        "without external sets, the gate fails)",
    )
    min_external_sensitivity: float | None = Field(
        None,
        ge=0,
        le=1,
        description="lowest sensitivity on every external set at the version's threshold",
    )
    min_external_specificity: float | None = Field(
        None,
        ge=0,
        le=1,
        description="lowest specificity on every external set at the version's threshold",
    )
    require_approval: bool = Field(
        False,
        description="a version that passes waits in `staging` for a person's sign-off: "
        "`python run.py approve VERSION --by NAME --note TEXT` promotes it",
    )


class BatchPredictSettings(Settings):
    """``batch_predict``: scoring a folder with the production model."""

    batch_size: int = Field(
        256,
        ge=1,
        description="images read, checked and predicted at a time (memory is bounded by two "
        "batches)",
    )
    shards: int = Field(
        1,
        ge=1,
        le=64,
        description="split the input into this many contiguous shards scored at once: worker "
        "processes on a local orchestrator, parallel steps (one job each) on the SageMaker "
        "and Vertex stacks; the shards' predictions, statistics and summary are merged into "
        "one (see [Batch inference at scale](#batch-inference-at-scale))",
    )
    guard_mode: GuardMode = Field(
        "refuse",
        description="what happens to an image the [input guard](#what-the-service-accepts) "
        "refuses: `refuse` (row `accepted=false` with the reason, no probability, no label), "
        "`flag` (labelled, but `accepted=false`), `off` (guard not consulted); refused rows "
        "never count in the metrics",
    )


class InferenceDriftSettings(DriftTest):
    """``check_inference_drift``: new images against the model's training images."""

    min_images: int = Field(
        30,
        ge=2,
        description="fewer new images are not tested for drift (`drift.json` says so)",
    )

    def gate(self) -> DriftGateConfig:
        """The drift test's settings (never failing on its own: ``handle_drift`` decides)."""
        return DriftGateConfig(mode="warn", **self.model_dump(include=set(DriftTest.model_fields)))


class DriftActionSettings(Settings):
    """``handle_drift``: what drift in new images leads to."""

    on_drift: DriftAction = Field(
        "warn",
        description="`warn`, `fail` (the run fails: exit 1), or `retrain` (a training run on "
        "the production version's data plus the new folder, started by the pipeline itself)",
    )
    training_config: str = Field(
        "configs/training.yaml",
        description="the run config of that retraining run (relative to the project root)",
    )


class PredictionWindowSettings(Settings):
    """``load_prediction_window``: which of the service's logged predictions to judge."""

    window_days: float = Field(
        7.0,
        gt=0,
        description="the window when `--since` is not given: the last N days of predictions",
    )


class MonitoringSettings(Settings):
    """``assess_live_quality``: live quality against the version's test figures."""

    min_labelled: int = Field(
        30,
        ge=1,
        description="fewer labelled predictions are reported, not judged (no degradation "
        "alert from a handful of labels)",
    )
    max_accuracy_drop: float = Field(
        0.05, ge=0, le=1, description="live accuracy may fall this far below the test figure"
    )
    max_sensitivity_drop: float = Field(
        0.05, ge=0, le=1, description="live sensitivity may fall this far below the test figure"
    )
    max_specificity_drop: float = Field(
        0.10, ge=0, le=1, description="live specificity may fall this far below the test figure"
    )
    max_auc_drop: float = Field(
        0.05, ge=0, le=1, description="live ROC-AUC may fall this far below the test figure"
    )
    max_positive_rate_shift: float = Field(
        0.15,
        ge=0,
        le=1,
        description="largest change of the share answered PNEUMONIA against the test split "
        "before it alerts",
    )
    max_refusal_share: float = Field(
        0.10,
        ge=0,
        le=1,
        description="largest share of requests the input guard may refuse before it alerts",
    )
    bootstrap_resamples: int = Field(
        1000, ge=1, description="bootstrap resamples of the live figures' 95 % intervals"
    )


class MonitoringActionSettings(Settings):
    """``handle_monitoring``: what an alert of the monitoring pipeline leads to."""

    on_alert: Literal["report", "retrain"] = Field(
        "report",
        description="`report` (alerts only) or `retrain`: on degradation or drift, a training "
        "run on the production version's data plus the labelled production images (kept "
        "with XRAY_PREDICTION_LOG_IMAGES=keep)",
    )
    min_labelled_images: int = Field(
        20,
        ge=1,
        description="a retrain needs at least this many kept, labelled production images",
    )
    training_config: str = Field(
        "configs/training.yaml",
        description="the run config of that retraining run (relative to the project root)",
    )


STEP_SETTINGS: dict[str, type[Settings]] = {
    "load_dataset": LoadSettings,
    "split_dataset": SplitSettings,
    "check_data_quality": QualityGateConfig,
    "check_data_drift": DriftGateConfig,
    "train_model": TrainConfig,
    "calibrate_model": CalibrationSettings,
    "evaluate_model": EvaluationSettings,
    "fit_input_guard": GuardSettings,
    "analyze_errors": ErrorAnalysisSettings,
    "evaluate_external": ExternalEvaluationSettings,
    "promote_model": PromotionGates,
    "batch_predict": BatchPredictSettings,
    "check_inference_drift": InferenceDriftSettings,
    "handle_drift": DriftActionSettings,
    "load_prediction_window": PredictionWindowSettings,
    "assess_live_quality": MonitoringSettings,
    "handle_monitoring": MonitoringActionSettings,
}
"""Each configurable step's settings model, by step name (its ``config`` parameter)."""

PIPELINE_STEPS: dict[str, tuple[str, ...]] = {
    "training": (
        "load_dataset",
        "split_dataset",
        "check_data_quality",
        "check_data_drift",
        "train_model",
        "calibrate_model",
        "evaluate_model",
        "fit_input_guard",
        "analyze_errors",
        "evaluate_external",
        "promote_model",
    ),
    "inference": ("batch_predict", "check_inference_drift", "handle_drift"),
    "monitoring": (
        "load_prediction_window",
        "check_inference_drift",
        "assess_live_quality",
        "handle_monitoring",
    ),
}


def shipped_values(run_config: dict[str, Any], step: str) -> dict[str, Any]:
    """The settings a run config sets for ``step``, validated (raises on unknown keys)."""
    body = (run_config.get("steps") or {}).get(step) or {}
    values = (body.get("parameters") or {}).get("config") or {}
    STEP_SETTINGS[step].model_validate(values)
    return values


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return str(list(value))
    if isinstance(value, list) and len(value) > 4:
        return f"(all {len(value)})"
    return str(value)


def settings_table(pipeline: str, run_config: dict[str, Any] | None = None) -> str:
    """The README's configuration table of one pipeline, from the field descriptions.

    Args:
        pipeline: ``training`` or ``inference``.
        run_config: The shipped run config; a value it sets is shown with the default.

    Returns:
        A Markdown table: key, default, meaning.
    """
    run_config = run_config or {}
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for step in PIPELINE_STEPS[pipeline]:
        model = STEP_SETTINGS[step]
        shipped = shipped_values(run_config, step)
        for name, field in model.model_fields.items():
            default = field.get_default(call_default_factory=True)
            meaning = field.description or ""
            if name in shipped:
                meaning += f" (the shipped run config sets `{_shown(shipped[name])}`)"
            rows.append(f"| `{step}.config.{name}` | `{_shown(default)}` | {meaning} |")
    return "\n".join(rows)


if __name__ == "__main__":  # python -m xray.logic.settings: print the README's tables
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    for name in PIPELINE_STEPS:
        config = yaml.safe_load((root / "configs" / f"{name}.yaml").read_text()) or {}
        print(f"<!-- settings:{name} -->\n{settings_table(name, config)}\n<!-- /settings -->\n")
