"""Step: record the trained model's facts on its ZenML Model version."""

import logging
from typing import Annotated, Any

from zenml import get_step_context, step

from xray.constants import CLASS_NAMES
from xray.external import HEADLINE

logger = logging.getLogger(__name__)


# Never cached: a cached re-run still creates a new model version, which must carry the
# facts too.
@step(enable_cache=False)
def register_model(
    metrics: dict[str, Any],
    threshold: float,
    data_fingerprint: str,
    training_facts: dict[str, Any],
    validation_summary: dict[str, Any],
    bentoml_model_tag: str,
    bento_tag: str,
    sources: list[str],
    external_metrics: dict[str, Any] | None = None,
) -> Annotated[dict[str, Any], "model_version_facts"]:
    """Attaches metrics, threshold, image size, classes and data fingerprint to the model.

    The pipeline's ``model`` setting makes every run create a new version of the ZenML
    Model; this step records what a user of that version needs to know.

    Args:
        metrics: Test metrics from ``evaluate_model``.
        threshold: The decision threshold chosen on validation.
        data_fingerprint: Content fingerprint of the data set the model was trained on.
        training_facts: How the model was trained (backbone, image size,
            ``pretrained``...). The model itself is linked to the version as its model
            artifact by ``train_model``.
        validation_summary: The data gates' outcome (passed, warnings).
        bentoml_model_tag: The model in the BentoML model store.
        bento_tag: The Bento that serves it (its archive is the version's
            ``bento_archive`` artifact).
        sources: The data folders the model was trained on (a retrain on new data
            merges them with the new folder).
        external_metrics: Per external test set, its headline metrics and intervals
            (``evaluate_external``); None without ``--external-test``.

    Returns:
        The facts recorded on the model version.
    """
    context = get_step_context()
    version = context.model
    facts: dict[str, Any] = {
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, int | float)},
        "threshold": float(threshold),
        "threshold_rule": metrics.get("threshold_rule", ""),
        "image_size": int(training_facts["image_size"]),
        "class_names": list(CLASS_NAMES),
        "data_fingerprint": data_fingerprint,
        "pretrained": bool(training_facts.get("pretrained", False)),
        "backbone": training_facts.get("backbone", ""),
        "mlflow_run_id": training_facts.get("mlflow_run_id", ""),
        "bentoml_model_tag": bentoml_model_tag,
        "bento_tag": bento_tag,
        "data_sources": list(sources),
        "data_validation": {
            "passed": bool(validation_summary["passed"]),
            "warnings": validation_summary["warnings"],
            "drift_share": float(validation_summary["drift_share"]),
        },
        "metrics_scope": "in-split: the test split comes from the training data's collection",
    }
    if external_metrics:
        facts["external"] = {
            name: {
                "source": result["source"],
                "n": result["n"],
                "metrics": {k: result["metrics"][k] for k in HEADLINE},
                "ci95": {k: result["intervals"][k] for k in HEADLINE},
            }
            for name, result in external_metrics.items()
        }
    version.log_metadata(facts)
    logger.info("Registered %s version %s", version.name, version.version)
    return {**facts, "model_name": version.name, "model_version": str(version.version)}
