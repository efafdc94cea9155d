"""What steps hand one another: small typed records (stored by ZenML's pydantic
materializer as JSON, readable in the dashboard).

A step's signature then states its contract. The release record is the one description
of a trained version: the model card, the BentoML model's metadata, the Bento and the
ZenML model version's metadata are all made from it, not re-assembled three times.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from xray.logic.constants import CLASS_NAMES
from xray.logic.settings import TrainConfig


class Record(BaseModel):
    """Base of the records: NaN survives the JSON round trip (an AUC on one class)."""

    model_config = ConfigDict(ser_json_inf_nan="strings")


class Metrics(Record):
    """Classification figures at a threshold (:func:`xray.logic.metrics.classification_metrics`)."""

    accuracy: float
    sensitivity: float
    specificity: float
    precision: float
    f1: float
    roc_auc: float
    pr_auc: float
    tn: int
    fp: int
    fn: int
    tp: int
    n: int
    threshold: float

    def headline(self) -> str:
        """``AUC 0.950, accuracy 0.900, sensitivity 0.950, specificity 0.850``."""
        return (
            f"AUC {self.roc_auc:.3f}, accuracy {self.accuracy:.3f}, sensitivity "
            f"{self.sensitivity:.3f}, specificity {self.specificity:.3f}"
        )


class SplitSummary(Record):
    """What ``split_dataset`` did (the card's split description is written from it)."""

    split_counts: dict[str, dict[str, int]]
    official_test_kept: bool
    official_test_present: bool
    dropped_files: list[dict[str, str]] = Field(default_factory=list)
    dropped_for_test_overlap: int = 0
    patient_ids_parsed: int = 0
    images_with_parsed_patient: int = 0
    images_one_patient_per_file: int = 0
    seed: int
    val_fraction: float
    test_fraction: float | None


class GateVerdict(Record):
    """One data gate's outcome (:class:`xray.integrations.validation.Verdict`)."""

    kind: str
    mode: str
    passed: bool
    failed_checks: list[str]
    checks: list[dict[str, Any]]
    details: dict[str, Any]


class ValidationSummary(Record):
    """Both data gates together: what the model version and the card record."""

    passed: bool
    warnings: list[str]
    quality_failed_checks: list[str]
    drift_failed_checks: list[str]
    drift_share: float
    skipped: int


class TrainingReport(Record):
    """How the model was trained."""

    pretrained: bool
    backbone: str
    image_size: int
    epochs_run: int
    best_val_auc: float
    backbone_passes: int
    phases: dict[str, str]
    config: TrainConfig
    mlflow_run_id: str | None = None


class CalibrationFit(Record):
    """The temperature scaling fit of ``calibrate_model``
    (:func:`xray.logic.calibration.calibrate`)."""

    temperature: float
    applied: bool
    min_improvement: float
    val_nll_before: float
    val_nll_after: float
    val_ece_before: float
    val_ece_after: float


class Evaluation(Record):
    """The threshold chosen on validation and the test figures at it."""

    threshold: float
    threshold_rule: str
    target_sensitivity: float
    val_sensitivity: float
    val_specificity: float
    threshold_under_shift: bool
    metrics: Metrics
    intervals: dict[str, Any] = Field(description="95 % patient-bootstrap intervals by metric")
    bootstrap_unit: str = "patient"
    bootstrap_resamples: int
    calibration: dict[str, Any] = Field(description="ECE, Brier and reliability bins on test")
    shift_operating_points: dict[str, Any] | None = None


class ErrorAnalysis(Record):
    """Per-subtype test results and how many confident errors are shown."""

    subtypes: dict[str, Any]
    shown_errors: int


class ExternalSet(Record):
    """One ``--external-test`` set scored at the final threshold."""

    metrics: Metrics
    intervals: dict[str, Any]
    n: int
    class_counts: dict[str, int]
    patients: int
    source: str = ""
    dropped_overlaps: list[dict[str, str]] = Field(default_factory=list)
    drift_share: float | None = None
    drifted_columns: list[str] = Field(default_factory=list)


class ExternalEvaluation(Record):
    """Every external set, by name (empty without ``--external-test``)."""

    sets: dict[str, ExternalSet] = Field(default_factory=dict)


class ReleaseRecord(Record):
    """Everything a user of one trained version needs to know, in one place.

    Made once by ``make_release_record``; the card, the BentoML model, the Bento and the
    model version's metadata are written from it.
    """

    model_name: str
    model_version: str
    created: str
    class_names: list[str] = Field(default_factory=lambda: list(CLASS_NAMES))
    image_size: int
    data_fingerprint: str
    sources: list[str]
    split_counts: dict[str, dict[str, int]]
    split: SplitSummary
    training: TrainingReport
    calibration: CalibrationFit | None = None
    evaluation: Evaluation
    validation: ValidationSummary
    error_analysis: ErrorAnalysis | None = None
    external: ExternalEvaluation = Field(default_factory=ExternalEvaluation)
    bentoml_model_tag: str | None = Field(None, description="set by register_model")
    bento_tag: str | None = Field(None, description="set by register_model")

    @property
    def threshold(self) -> float:
        """The decision threshold chosen on validation."""
        return self.evaluation.threshold

    @property
    def metrics(self) -> Metrics:
        """The in-split test figures at the threshold."""
        return self.evaluation.metrics

    def served_metadata(self) -> dict[str, Any]:
        """What the BentoML model carries (the service reads threshold and image size)."""
        return {
            "threshold": self.threshold,
            "class_names": self.class_names,
            "image_size": self.image_size,
            "metrics": self.metrics.model_dump(mode="json"),
            "data_fingerprint": self.data_fingerprint,
            "zenml_model": self.model_name,
            "zenml_model_version": self.model_version,
        }

    def version_metadata(self) -> dict[str, Any]:
        """What the ZenML model version carries: the served facts, plus the training,
        data and external figures a user of the version needs (``register_model``)."""
        from xray.logic.external import HEADLINE

        evaluation, training, validation = self.evaluation, self.training, self.validation
        served = {k: v for k, v in self.served_metadata().items() if not k.startswith("zenml_")}
        facts: dict[str, Any] = {
            **served,
            "metrics": {
                **self.metrics.model_dump(),
                "val_sensitivity": evaluation.val_sensitivity,
                "val_specificity": evaluation.val_specificity,
            },
            "threshold_rule": evaluation.threshold_rule,
            "pretrained": training.pretrained,
            "backbone": training.backbone,
            "mlflow_run_id": training.mlflow_run_id or "",
            "bentoml_model_tag": self.bentoml_model_tag or "",
            "bento_tag": self.bento_tag or "",
            "data_sources": self.sources,
            "data_validation": {
                "passed": validation.passed,
                "warnings": validation.warnings,
                "drift_share": validation.drift_share,
            },
            "metrics_scope": "in-split: the test split comes from the training data's collection",
        }
        if self.external.sets:
            facts["external"] = {
                name: {
                    "source": result.source,
                    "n": result.n,
                    "metrics": {k: getattr(result.metrics, k) for k in HEADLINE},
                    "ci95": {k: result.intervals[k] for k in HEADLINE},
                }
                for name, result in self.external.sets.items()
            }
        return facts


class PromotionDecision(Record):
    """Whether a version became production, and every reason
    (:class:`xray.logic.promotion.Decision`)."""

    promoted: bool
    stage: str
    reasons: list[str]
    checks: dict[str, bool]
    production_version: str | None = None
    comparison: dict[str, Any] | None = None
    gates: dict[str, float | bool | None] = Field(default_factory=dict)
    awaiting_approval: bool = False


class InferenceSummary(Record):
    """What a batch inference run scored (``summary.json``)."""

    source: str
    layout: str
    images: int
    predicted: dict[str, int]
    guard_mode: str
    refused: int
    refused_files: list[dict[str, str]]
    threshold: float
    images_per_second: float | None
    skipped: list[dict[str, str]]
    metrics: dict[str, Any] | None = Field(
        None, description="against the class folders, when the truth is known"
    )


class DriftResult(Record):
    """New images against the model's training images (``drift.json``)."""

    drift_detected: bool
    share_drifted: float
    drifted_features: list[str]
    images: int
    reference_images: int
    max_drift_share: float
    tested: bool
    note: str | None = None
    scores: dict[str, float] | None = None
    method: dict[str, str] | None = None


class RetrainResult(Record):
    """The training run a drifted inference run started (``on_drift: retrain``).

    Attributes:
        data_dirs: The folders it trained on: the production version's, then the new one.
        run_name: The training run (empty when it could not start).
        status: Its final status (``completed``, ``failed``...).
        model_version: The version it registered (empty when it stopped before).
        promoted: Whether that version became production (None when not decided).
        reasons: The promotion decision's reasons.
        error: Why the run failed or could not start (empty when it completed).
    """

    data_dirs: list[str]
    run_name: str = ""
    status: str = ""
    model_version: str = ""
    promoted: bool | None = None
    reasons: list[str] = Field(default_factory=list)
    error: str = ""

    def report(self) -> list[str]:
        """What the CLI prints about the retrain."""
        lines = [f"Drift detected: retrained on {' + '.join(self.data_dirs)}."]
        if self.error:
            return lines + [f"The retraining run {self.run_name or ''} failed: {self.error}"]
        state = "promoted to production" if self.promoted else "NOT promoted"
        lines.append(
            f"Retraining run '{self.run_name}' finished with status {self.status}: version "
            f"{self.model_version} {state}"
            + (f": {'; '.join(self.reasons)}" if self.reasons else "")
        )
        return lines


class DriftResponse(Record):
    """What ``handle_drift`` did about the drift result.

    Attributes:
        action: ``none`` (no drift), ``warn`` or ``retrain`` (``fail`` fails the run).
        retrain: The retraining run, with ``retrain``.
    """

    action: str
    retrain: RetrainResult | None = None


class LiveQuality(Record):
    """A model's figures on the labelled predictions of a window.

    Attributes:
        model_version: The version that answered.
        n_labelled: Predictions with feedback (the guard's withheld answers excluded).
        metrics: The figures at the version's threshold (None without labels).
        intervals: 95 % bootstrap intervals by metric (requests resampled).
    """

    model_version: str
    n_labelled: int
    metrics: Metrics | None = None
    intervals: dict[str, list[float]] = Field(default_factory=dict)


class ShadowComparison(Record):
    """The challenger beside production on the same requests."""

    challenger_version: str
    n_compared: int = Field(description="requests both models scored")
    agreement: float | None = Field(None, description="share with the same label")
    production: LiveQuality
    challenger: LiveQuality


class MonitoringReport(Record):
    """What the monitoring pipeline found in a window of served predictions
    (``monitoring.json``)."""

    model_version: str
    since: str | None
    until: str | None
    n_predictions: int
    n_labelled: int
    live: dict[str, float | None] = Field(
        description="accuracy, sensitivity, specificity and auc on the labelled predictions"
    )
    live_intervals: dict[str, list[float]]
    reference: dict[str, float] = Field(description="the version's test figures")
    quality_judged: bool = Field(description="enough labels to judge (min_labelled)")
    performance_degraded: bool
    degradation_reasons: list[str]
    drift_detected: bool
    drift_tested: bool
    share_drifted: float
    drifted_features: list[str]
    positive_rate: float | None
    reference_positive_rate: float | None
    probability_histogram: dict[str, list[float]]
    refusal_share: float | None
    alerts: list[str]
    shadow: ShadowComparison | None = None

    def report(self) -> list[str]:
        """What the CLI prints."""
        lines = [
            f"Monitored model version {self.model_version}: {self.n_predictions} prediction(s)"
            f", {self.n_labelled} labelled, window {self.since or 'start'} .. "
            f"{self.until or 'now'}."
        ]
        if self.live.get("accuracy") is not None:
            live = self.live
            lines.append(
                f"Live ({self.n_labelled} labelled): accuracy {live['accuracy']:.3f}, "
                f"sensitivity {_shown(live['sensitivity'])}, specificity "
                f"{_shown(live['specificity'])}, AUC {_shown(live['auc'])}"
                + ("" if self.quality_judged else " (too few labels to judge)")
                + "."
            )
        if self.shadow is not None:
            shadow = self.shadow
            lines.append(
                f"Challenger {shadow.challenger_version}: agreement "
                f"{_shown(shadow.agreement)} on {shadow.n_compared} request(s)"
                + (
                    f"; live AUC {_shown(shadow.challenger.metrics.roc_auc)} vs production "
                    f"{_shown(shadow.production.metrics.roc_auc)} on the same "
                    f"{shadow.challenger.n_labelled} labelled"
                    if shadow.challenger.metrics and shadow.production.metrics
                    else ""
                )
                + "."
            )
        lines += [f"ALERT: {alert}" for alert in self.alerts] or ["No alert."]
        return lines


def _shown(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


class MonitoringResponse(Record):
    """What ``handle_monitoring`` did about the report's alerts.

    Attributes:
        action: ``none`` (no alert), ``report`` or ``retrain``.
        labelled_images: The labelled production images a retrain added.
        retrain: The retraining run, with ``retrain``.
        note: Why a retrain did not start.
        deliveries: Where the alerts went (alerter, webhook) and whether they arrived.
    """

    action: str
    labelled_images: int = 0
    retrain: RetrainResult | None = None
    note: str = ""
    deliveries: list[str] = Field(default_factory=list)
