"""Step: promote the new model version to production only when it is better."""

import hashlib
import logging
from typing import Annotated, Any

import pandas as pd
from zenml import get_step_context, log_metadata, step

from lifecycle.production import production_version
from xray.logic.constants import IMAGE_STATISTICS_ARTIFACT, MODEL_ARTIFACT, PROMOTION_ARTIFACT
from xray.logic.dataset import ImageDataset
from xray.logic.promotion import Comparison, compare, comparison_indices, decide
from xray.logic.records import PromotionDecision, ReleaseRecord
from xray.logic.settings import PromotionGates
from xray.ml.model import KerasModelFile
from xray.ml.training import predict_probabilities

logger = logging.getLogger(__name__)


def _seen_by(version: Any) -> set[str]:
    """SHA-256 of every image the version was trained or tuned on (train + val)."""
    try:
        table: pd.DataFrame = version.get_artifact(IMAGE_STATISTICS_ARTIFACT).load()
    except (AttributeError, KeyError):  # no statistics recorded: nothing to exclude
        return set()
    return set(table.loc[table["split"].isin(["train", "val"]), "sha256"])


def _load(artifact: Any, production: Any) -> KerasModelFile:
    """The production model, or an error saying why it cannot be compared and what to do."""
    try:
        return artifact.load()
    except Exception as exc:  # noqa: BLE001 - any storage or credential failure
        raise RuntimeError(
            f"Cannot load production version {production.number} of '{production.model.name}' "
            f"from {artifact.uri} to compare with it ({type(exc).__name__}: {exc}). Restore "
            "access to that artifact store (credentials, network), or take the version out "
            f"of production: zenml model version update {production.model.name} "
            f"{production.number} --stage archived"
        ) from exc


def _rescore(
    model: KerasModelFile,
    threshold: float,
    old: KerasModelFile,
    old_threshold: float,
    test_set: ImageDataset,
    production: Any,
) -> Comparison:
    """Both models on this run's test images that production never trained on."""
    test_hashes = [hashlib.sha256(image).hexdigest() for image in test_set.images]
    keep, excluded = comparison_indices(test_hashes, _seen_by(production))
    return compare(
        test_set.labels,
        predict_probabilities(model.load(), test_set.images, model.image_size),
        threshold,
        predict_probabilities(old.load(), test_set.images, old.image_size),
        old_threshold,
        keep,
        excluded,
    )


@step(enable_cache=False)
def promote_model(
    model: KerasModelFile,
    test_set: ImageDataset,
    release: ReleaseRecord,
    config: PromotionGates | None = None,
) -> Annotated[PromotionDecision, PROMOTION_ARTIFACT]:
    """Moves this run's model version to ``production`` when it passes the gates, else to
    ``staging``; the decision and every reason go into the version's metadata.

    The production model is re-scored here on this run's test split, without the images
    it was trained or tuned on, and the new model on the same images.

    Args:
        model: This run's model.
        test_set: This run's test split.
        release: This run's release record: its test metrics (absolute gates), its
            threshold and its external sets' scores, if any.
        config: Minimum AUC and sensitivity, tolerated loss against production, and the
            optional minimums on external test sets (:class:`xray.logic.settings.PromotionGates`).

    Returns:
        The decision (promoted, stage, reasons, checks, both models' comparison metrics).
    """
    gates = config or PromotionGates()
    metrics, threshold = release.metrics.model_dump(), release.threshold
    external = {name: s.model_dump() for name, s in release.external.sets.items()} or None
    context = get_step_context()
    version = context.model
    production = production_version(version.name)
    comparison = None
    if production is not None and production.id != version.id:
        old_artifact = production.get_model_artifact(MODEL_ARTIFACT)
        old_threshold = float(production.run_metadata["threshold"])
        if old_artifact.id == context.inputs["model"][0].id and old_threshold == threshold:
            # A cached re-run: production is this very model and threshold, on the same
            # split; re-scoring would only repeat this run's numbers.
            same = {k: float(metrics[k]) for k in ("roc_auc", "sensitivity", "specificity")}
            comparison = Comparison(len(test_set), 0, same, same, "same model as production")
        else:
            comparison = _rescore(
                model,
                threshold,
                _load(old_artifact, production),
                old_threshold,
                test_set,
                production,
            )
    decision = decide(
        metrics,
        gates,
        comparison,
        str(production.number) if production is not None else None,
        external=external,
    )
    version.set_stage(decision.stage, force=True)
    record = PromotionDecision.model_validate(decision.to_dict())
    version.log_metadata({"promotion": decision.to_dict()})
    log_metadata(
        metadata={
            "promoted": decision.promoted,
            "stage": decision.stage,
            "reasons": decision.reasons,
        }
    )
    (logger.info if decision.promoted else logger.warning)(
        "Model %s version %s: %s", version.name, version.version, decision.message()
    )
    return record
