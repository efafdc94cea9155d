"""The pipeline with an S3 artifact store (moto on 127.0.0.1) and its data on s3://."""

from pathlib import Path

import boto3
import numpy as np
import pytest
import yaml
from zenml.client import Client
from zenml.enums import ExecutionStatus
from zenml.io import fileio

from stacks.registry import ComponentSpec, StackSpec, register_stack
from synthetic import make_kaggle_tree, small_run_config
from xray.io.loading import load_images
from xray.logic.constants import DATASET_ARTIFACT, TRAINED_MODEL_ARTIFACT

pytestmark = pytest.mark.integration


def test_artifacts_round_trip_through_s3(tmp_path: Path, s3_endpoint: str) -> None:
    from pipelines.training import training_pipeline

    tree = make_kaggle_tree(
        tmp_path / "chest_xray", per_class={"train": 16, "val": 2, "test": 6}, size=48
    )
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    for bucket in ("xray-data", "xray-artifacts"):
        s3.create_bucket(Bucket=bucket)
    for path in tree.rglob("*.jpeg"):
        s3.upload_file(str(path), "xray-data", f"chest_xray/{path.relative_to(tree).as_posix()}")

    spec = StackSpec(
        key="s3-test",
        name="xray-s3-test",
        description="local orchestrator, S3 artifact store on moto",
        components=[
            ComponentSpec("orchestrator", "xray-local-orchestrator", "local"),
            ComponentSpec(
                "artifact_store",
                "xray-moto-artifacts",
                "s3",
                {
                    "path": "s3://xray-artifacts/zenml",
                    "client_kwargs": {"endpoint_url": s3_endpoint},
                },
            ),
            ComponentSpec(
                "experiment_tracker",
                "xray-file-mlflow",
                "mlflow",
                {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
            ),
        ],
    )
    register_stack(spec)
    config = small_run_config(tmp_path / "training.yaml", 40, 2)
    # Its own model: a production version whose artifacts live on this emulator (gone
    # after the test) must not be what other tests' promotion compares with.
    settings = yaml.safe_load(config.read_text())
    settings["model"] = {"name": "s3_test_model"}
    config.write_text(yaml.safe_dump(settings))
    try:
        run = training_pipeline.with_options(config_path=str(config), enable_cache=False)(
            data_dir="s3://xray-data/chest_xray"
        )
    finally:
        Client().activate_stack("default")

    assert run.status == ExecutionStatus.COMPLETED
    dataset_artifact = run.steps["load_dataset"].outputs[DATASET_ARTIFACT][0]
    model_artifact = run.steps["train_model"].outputs[TRAINED_MODEL_ARTIFACT][0]
    assert dataset_artifact.uri.startswith("s3://xray-artifacts/zenml/")
    assert model_artifact.uri.startswith("s3://xray-artifacts/zenml/")
    stored = s3.list_objects_v2(Bucket="xray-artifacts", Prefix="zenml/")["KeyCount"]
    assert stored > 0

    dataset = dataset_artifact.load()
    assert dataset.fingerprint() == load_images(str(tree), min_images=10).fingerprint()
    model = model_artifact.load().load()
    assert model.predict(np.zeros((2, 40, 40, 3), np.uint8), verbose=0).shape == (2, 1)
    # A finished training leaves no checkpoint behind in the artifact store.
    assert not fileio.exists("s3://xray-artifacts/zenml/checkpoints/train_model") or not (
        fileio.listdir("s3://xray-artifacts/zenml/checkpoints/train_model")
    )
