"""`run.py --stack <cloud>`: dry run and preflight, with no account, credentials or server."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _bare_env(tmp_path: Path) -> dict[str, str]:
    """The test environment minus every account value and credential."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("XRAY_", "AWS_", "GOOGLE_", "CLOUDSDK_", "MLFLOW_"))
    }
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        CLOUDSDK_CONFIG=str(tmp_path / "no-gcloud"),
        PATH=f"{tmp_path / 'bin'}:{env['PATH']}",
    )
    (tmp_path / "bin").mkdir(exist_ok=True)  # a `docker` that cannot reach an engine
    docker = tmp_path / "bin" / "docker"
    docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    docker.chmod(0o755)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("key", "kind", "gpu"),
    [
        ("sagemaker", "sagemaker_pipeline.json", "ml.g4dn.xlarge"),
        ("vertex", "vertex_pipeline.json", "NVIDIA_TESLA_T4"),
        ("sagemaker-hybrid", "snapshot_steps.json", "ml.g4dn.xlarge"),
        ("vertex-hybrid", "snapshot_steps.json", "NVIDIA_TESLA_T4"),
    ],
)
def test_dry_run_writes_the_definition_with_a_gpu_for_training_only(
    key: str, kind: str, gpu: str, tmp_path: Path
) -> None:
    result = _run(["--stack", key, "--dry-run"], _bare_env(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    path = Path(re.search(r"definition \([a-z-]+\): (\S+)", out).group(1))
    assert path.name == kind and path.is_file()
    definition = json.loads(path.read_text())
    text = json.dumps(definition)
    assert "WARNING:" in out and "is not set; the placeholder" in out  # unset values listed
    summary = dict(re.findall(r"^  step (\w+)\s+(.+)$", out, re.M))
    assert len(summary) == 17 and gpu in summary["train_model"]
    assert all(gpu not in where for step, where in summary.items() if step != "train_model")

    if key == "sagemaker":
        steps = {s["Name"]: s["Arguments"] for s in definition["Steps"]}
        assert steps["train_model"]["ResourceConfig"]["InstanceType"] == gpu
        assert steps["train_model"]["EnableManagedSpotTraining"] is True
        assert "spot" in summary["train_model"]
        for name, args in steps.items():
            if name != "train_model":
                assert args["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
                assert "EnableManagedSpotTraining" not in args
        assert "UNSET-XRAY_SAGEMAKER_ROLE_ARN" in steps["train_model"]["RoleArn"]
    elif key == "vertex":
        assert text.count(gpu) >= 1
        tasks = definition["root"]["dag"]["tasks"]
        assert set(tasks) >= {"train-model", "load-dataset"}
        train_component = definition["components"][tasks["train-model"]["componentRef"]["name"]]
        pools = train_component["inputDefinitions"]["parameters"]["worker_pool_specs"]
        assert pools["defaultValue"][0]["machine_spec"]["accelerator_type"] == gpu
        assert (
            train_component["inputDefinitions"]["parameters"]["strategy"]["defaultValue"] == "SPOT"
        )
    else:
        steps = definition["steps"]
        assert steps["train_model"]["step_operator"]
        assert all(s["step_operator"] is None for n, s in steps.items() if n != "train_model")
        assert "this machine" in summary["load_dataset"]
    dockerfiles = re.findall(r"Dockerfile: (\S+)\)", out)
    assert dockerfiles
    assert "FROM zenmldocker/zenml:0.98.0-py3.11" in Path(dockerfiles[0]).read_text()
    image = re.search(r"image: (\S+)", out).group(1)
    assert "xray-zenml:" in image


def test_dry_run_of_the_monitoring_pipeline_shows_its_schedule(tmp_path: Path) -> None:
    result = _run(
        ["--stack", "vertex", "--pipeline", "monitoring", "--dry-run"], _bare_env(tmp_path)
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "Dry run of the monitoring pipeline" in out
    assert re.search(r"schedule: cron '0 6 \* \* \*' \(ZenML schedule monitoring-", out), out
    summary = dict(re.findall(r"^  step (\w+)\s+(.+)$", out, re.M))
    assert set(summary) == {
        "load_prediction_window",
        "check_inference_drift",
        "assess_live_quality",
        "handle_monitoring",
    }
    path = Path(re.search(r"definition \([a-z-]+\): (\S+)", out).group(1))
    assert path.parent.name == "vertex-monitoring" and path.is_file()


@pytest.mark.parametrize("key", ["vertex", "sagemaker"])
def test_dry_run_of_sharded_batch_inference_shows_parallel_jobs(key: str, tmp_path: Path) -> None:
    """``batch_predict.config.shards: 3`` on a cloud stack: three ``batch_predict`` jobs
    with no dependency between them, then the merge; each shard gets the step's settings."""
    config = tmp_path / "inference.yaml"
    config.write_text(
        "steps:\n  batch_predict: {parameters: {config: {shards: 3, batch_size: 64}}}\n"
    )
    args = ["--stack", key, "--pipeline", "inference", "--data", "data/sample"]
    result = _run([*args, "--config", str(config), "--dry-run"], _bare_env(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    shards = ["batch_predict_shard_1", "batch_predict_shard_2", "batch_predict_shard_3"]
    summary = dict(re.findall(r"^  step (\w+)\s+(.+)$", out, re.M))
    assert set(summary) == {*shards, "merge_predictions", "check_inference_drift", "handle_drift"}
    assert f"in parallel (3 jobs at once): {', '.join(shards)}" in out
    path = Path(re.search(r"definition \([a-z-]+\): (\S+)", out).group(1))
    written = path.parent / f"inference.{key}.shards-3.yaml"
    steps = yaml.safe_load(written.read_text())["steps"]
    assert all(steps[s]["parameters"]["config"]["batch_size"] == 64 for s in shards)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            "sagemaker",
            [
                "XRAY_S3_BUCKET",
                "XRAY_SAGEMAKER_ROLE_ARN",
                "zenml login https://",
                "no AWS credentials",
                "artifact store: XRAY_S3_BUCKET is unset",
                "container registry: XRAY_ECR_REGISTRY is unset",
                "docker info",
                "MLflow: XRAY_MLFLOW_TRACKING_URI is unset",
                "--dry-run",
            ],
        ),
        (
            "vertex",
            [
                "XRAY_GCP_PROJECT",
                "zenml login https://",
                "gcloud auth application-default login",
                "artifact store: XRAY_GCS_BUCKET is unset",
                "container registry: XRAY_ARTIFACT_REGISTRY is unset",
                "docker info",
                "MLflow: XRAY_MLFLOW_TRACKING_URI is unset",
            ],
        ),
    ],
)
def test_preflight_lists_every_problem_fast(key: str, expected: list[str], tmp_path: Path) -> None:
    start = time.perf_counter()
    result = _run(["--stack", key], _bare_env(tmp_path))
    elapsed = time.perf_counter() - start
    assert result.returncode == 1
    message = result.stderr
    for text in expected:
        assert text in message, f"{text!r} missing from:\n{message}"
    assert "nothing was submitted" in message
    assert elapsed < 30, elapsed


def test_preflight_refuses_local_data_for_a_remote_orchestrator(tmp_path: Path) -> None:
    env = _bare_env(tmp_path)
    env.update({k: v for k, v in _example("sagemaker").items()})
    result = _run(["--stack", "sagemaker", "--data", str(tmp_path)], env)
    assert result.returncode == 1
    assert f"{tmp_path} is on this machine" in result.stderr
    assert "aws s3 sync" in result.stderr and "sagemaker-hybrid" in result.stderr
    assert "account values" not in result.stderr  # all set from the example file


def _example(stack: str) -> dict[str, str]:
    from stacks.registry import read_values_file

    return read_values_file(PROJECT_ROOT / "stacks" / f"{stack}.env.example")
