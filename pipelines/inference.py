"""The batch inference pipeline: production model -> predictions -> drift -> action (warn,
fail, or a retrain on the old plus the new data)."""

from zenml import Model, get_pipeline_context, pipeline
from zenml.enums import ModelStages

from steps.inference.batch_predict import batch_predict
from steps.inference.check_inference_drift import check_inference_drift
from steps.inference.handle_drift import handle_drift
from steps.inference.merge_predictions import merge_predictions
from xray.logic.constants import (
    IMAGE_STATISTICS_ARTIFACT,
    INPUT_GUARD_ARTIFACT,
    MODEL_ARTIFACT,
    MODEL_NAME,
    THRESHOLD_ARTIFACT,
    shard_step,
)


@pipeline(name="inference", model=Model(name=MODEL_NAME, version=ModelStages.PRODUCTION))
def inference_pipeline(data_dir: str, shards: int = 1, parallel_steps: bool = False) -> None:
    """Scores the images under ``data_dir`` with the ``production`` model version and
    checks them for drift against that model's training images.

    The pipeline's model is the ``production`` version (a run config's ``model`` may name
    another model or version); the model, its threshold,
    its input guard and its statistics table come from that version's artifacts (the run
    is linked to it in the dashboard).

    Args:
        data_dir: A folder of images (any layout; class folders give the truth) or one
            image: local, ``s3://`` or ``gs://``.
        shards: ``batch_predict.config.shards`` (the launcher passes it).
        parallel_steps: With ``shards`` > 1, one ``batch_predict`` step per shard, run in
            parallel by the orchestrator and then merged (the cloud stacks); else one
            step with ``shards`` worker processes (a local orchestrator runs steps one
            at a time).
    """
    version = get_pipeline_context().model
    inputs = (
        version.get_model_artifact(MODEL_ARTIFACT),
        version.get_artifact(THRESHOLD_ARTIFACT),
        version.get_artifact(INPUT_GUARD_ARTIFACT),
    )
    if parallel_steps and shards > 1:
        parts = [
            batch_predict(
                *inputs,
                data_dir=data_dir,
                shard_index=i,
                shard_count=shards,
                id=shard_step(i),
            )
            for i in range(shards)
        ]
        predictions, statistics, _summary = merge_predictions(
            [p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts]
        )
    else:
        predictions, statistics, _summary = batch_predict(*inputs, data_dir=data_dir)
    _report, drift = check_inference_drift(
        statistics, version.get_artifact(IMAGE_STATISTICS_ARTIFACT)
    )
    handle_drift(drift, data_dir=data_dir)
