"""Names shared by the pipelines, the steps, the service and the tests."""

CLASS_NAMES: tuple[str, str] = ("NORMAL", "PNEUMONIA")
"""Class names in label order: label 0 is NORMAL, label 1 (the positive class) PNEUMONIA."""

POSITIVE_CLASS = CLASS_NAMES[1]
UNKNOWN_LABEL = "unknown"
"""The label column of an image whose true class is not known (statistics tables)."""
PROBABILITY_EPSILON = 1e-7
"""Probabilities are clipped to ``[EPSILON, 1 - EPSILON]`` before taking a logit (in
temperature scaling: the fit and the served model's layer use the same value)."""
SPLIT_NAMES: tuple[str, str, str] = ("train", "val", "test")
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpeg", ".jpg", ".png", ".dcm", ".dicom"})

MODEL_NAME = "pneumonia_classifier"
"""Name of the ZenML Model (Model Control Plane) every training run registers a version of."""

# Artifact names (step outputs), defined once so that later pipelines can look them up.
DATASET_ARTIFACT = "xray_dataset"
TRAIN_SET_ARTIFACT = "train_set"
VAL_SET_ARTIFACT = "val_set"
TEST_SET_ARTIFACT = "test_set"
SPLIT_SUMMARY_ARTIFACT = "split_summary"
EXTERNAL_SETS_ARTIFACT = "external_sets"
EXTERNAL_METRICS_ARTIFACT = "external_metrics"
EXTERNAL_PLOTS_ARTIFACT = "external_evaluation_plots"
EXTERNAL_DRIFT_REPORT_ARTIFACT = "external_drift_report"
MODEL_ARTIFACT = "keras_model"
TRAINING_HISTORY_ARTIFACT = "training_history"
EVALUATION_ARTIFACT = "evaluation"
THRESHOLD_ARTIFACT = "decision_threshold"
EVALUATION_PLOTS_ARTIFACT = "evaluation_plots"
IMAGE_STATISTICS_ARTIFACT = "image_statistics"
QUALITY_REPORT_ARTIFACT = "data_quality_report"
QUALITY_VERDICT_ARTIFACT = "data_quality_verdict"
DRIFT_REPORT_ARTIFACT = "data_drift_report"
DRIFT_VERDICT_ARTIFACT = "data_drift_verdict"
VALIDATION_SUMMARY_ARTIFACT = "validation_summary"
CALIBRATION_PLOT_ARTIFACT = "calibration_plot"
MODEL_CARD_ARTIFACT = "model_card"
MODEL_CARD_HTML_ARTIFACT = "model_card_html"
BENTO_ARCHIVE_ARTIFACT = "bento_archive"
BENTOML_MODEL_ARCHIVE_ARTIFACT = "bentoml_model_archive"
PROMOTION_ARTIFACT = "promotion_decision"
PREDICTIONS_ARTIFACT = "predictions"
INFERENCE_STATISTICS_ARTIFACT = "inference_statistics"
INFERENCE_METRICS_ARTIFACT = "inference_metrics"
INFERENCE_DRIFT_ARTIFACT = "inference_drift"
SCORING_STEP = "batch_predict"
MERGE_STEP = "merge_predictions"
"""With parallel shards, the step whose outputs are the run's predictions and summary."""


def shard_step(index: int) -> str:
    """The step name of shard ``index`` (0-based) when shards run as parallel steps."""
    return f"{SCORING_STEP}_shard_{index + 1}"


INFERENCE_DRIFT_REPORT_ARTIFACT = "inference_drift_report"
TRAINED_MODEL_ARTIFACT = "trained_model"
TRAINING_REPORT_ARTIFACT = "training_report"
RELEASE_RECORD_ARTIFACT = "release_record"
REGISTERED_RELEASE_ARTIFACT = "registered_release"
TEMPERATURE_ARTIFACT = "temperature_scaling"
ERROR_EXAMPLES_ARTIFACT = "error_examples"
ERROR_ANALYSIS_ARTIFACT = "error_analysis"
GRADCAM_EXAMPLES_ARTIFACT = "gradcam_examples"
DATA_OVERVIEW_ARTIFACT = "data_overview"
INPUT_GUARD_ARTIFACT = "input_guard"
DRIFT_RESPONSE_ARTIFACT = "drift_response"
GUARD_FILE = "guard.json"
"""The fitted input guard inside a BentoML model, beside ``model.keras``."""

# The monitoring pipeline's artifacts.
SERVED_PREDICTIONS_ARTIFACT = "served_predictions"
FEEDBACK_ARTIFACT = "feedback"
SERVED_STATISTICS_ARTIFACT = "served_statistics"
MONITORING_WINDOW_ARTIFACT = "monitoring_window"
MONITORING_REPORT_ARTIFACT = "monitoring_report"
MONITORING_HTML_ARTIFACT = "monitoring_report_html"
MONITORING_RESPONSE_ARTIFACT = "monitoring_response"
