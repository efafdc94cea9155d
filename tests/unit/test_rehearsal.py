"""The rehearsal's cloud stand-ins without a Docker engine: a fake ``docker`` on PATH
records each container it is asked to run, so the definitions' execution order, the
resolved commands and environments, and the failure report are checked here; the real
images and services are the container suite's (tests/containers/test_cloud_rehearsal.py)."""

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from stacks.rehearsal import (
    CUSTOM_JOB_LAUNCHER,
    ContainerRunner,
    LocalSageMakerClient,
    LocalVertexJobs,
    RehearsalError,
    _topological,
    rehearsed,
    run_kfp_pipeline,
    run_sagemaker_pipeline,
)

FAKE_DOCKER = """#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
env_file = args[args.index("--env-file") + 1]
env = dict(line.split("=", 1) for line in open(env_file).read().splitlines() if line)
with open(os.environ["FAKE_DOCKER_CALLS"], "a") as calls:
    calls.write(json.dumps({"args": args, "env": env}) + "\\n")
print("step output line")
sys.exit(3 if "fail_me" in " ".join(args) else 0)
"""


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake ``docker`` first on PATH; returns the file where it records its calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    record = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_DOCKER_CALLS", str(record))
    return record


def _calls(record: Path) -> list[dict]:
    return [json.loads(line) for line in record.read_text().splitlines()]


def _runner(tmp_path: Path) -> ContainerRunner:
    return ContainerRunner(tmp_path / "out", role_env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})


def test_dependencies_come_first_and_a_cycle_is_named() -> None:
    order = _topological({"c": ["a", "b"], "b": ["a"], "a": []})
    assert order == ["a", "b", "c"]
    with pytest.raises(RehearsalError, match="cycle: a -> b -> a"):
        _topological({"a": ["b"], "b": ["a"]})


def _training_step(name: str, after: list[str], image: str = "img:1") -> dict:
    return {
        "Name": name,
        "Type": "Training",
        "DependsOn": after,
        "Arguments": {
            "AlgorithmSpecification": {
                "TrainingImage": image,
                "ContainerEntrypoint": ["python", "-m", "zenml.entrypoints.entrypoint"],
                "ContainerArguments": ["--step_name", name],
            },
            "Environment": {
                "ZENML_SAGEMAKER_RUN_ID": {"Get": "Execution.PipelineExecutionArn"},
                "BATCH": {"Get": "Parameters.Batch"},
            },
        },
    }


def test_a_sagemaker_definition_runs_each_job_request_in_order(tmp_path: Path, calls: Path) -> None:
    definition = {
        "Parameters": [{"Name": "Batch", "DefaultValue": "8"}],
        "Steps": [_training_step("train", ["load"]), _training_step("load", [])],
    }
    arn = "arn:aws:sagemaker:us-east-1:000000000000:pipeline/p/execution/abc123"
    runner = _runner(tmp_path)
    run_sagemaker_pipeline(definition, arn, LocalSageMakerClient(runner, "us-east-1"))
    made = _calls(calls)
    assert [c["args"][-1] for c in made] == ["load", "train"]
    first = made[0]
    assert first["args"][:4] == ["run", "--rm", "--network", "host"]
    assert first["args"][-5:-2] == ["python", "-m", "zenml.entrypoints.entrypoint"]
    assert first["env"]["ZENML_SAGEMAKER_RUN_ID"] == arn  # the execution ARN, resolved
    assert first["env"]["BATCH"] == "8"
    assert first["env"]["TRAINING_JOB_NAME"] == "load-abc123"
    assert first["env"]["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"  # the role's part
    env_file = Path(first["args"][first["args"].index("--env-file") + 1])
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


def test_a_failing_sagemaker_step_stops_the_run_with_its_log_and_command(
    tmp_path: Path, calls: Path
) -> None:
    definition = {
        "Parameters": [{"Name": "Batch", "DefaultValue": "8"}],
        "Steps": [
            _training_step("load", []),
            _training_step("fail_me", ["load"]),
            _training_step("after", ["fail_me"]),
        ],
    }
    client = LocalSageMakerClient(_runner(tmp_path), "us-east-1")
    with pytest.raises(RehearsalError) as failure:
        run_sagemaker_pipeline(definition, "arn:x/execution/e1", client)
    message = str(failure.value)
    assert "'fail-me-e1' exited with 3" in message
    assert "| step output line" in message  # the log's end
    assert "docker run --rm --network host --env-file" in message  # the exact command
    assert len(_calls(calls)) == 2  # nothing ran after the failure
    described = client.describe_training_job(TrainingJobName="fail-me-e1")
    assert described["TrainingJobStatus"] == "Failed"


def test_an_unknown_sagemaker_expression_is_named(tmp_path: Path, calls: Path) -> None:
    step = _training_step("load", [])
    step["Arguments"]["Environment"]["BATCH"] = "8"
    step["Arguments"]["Environment"]["X"] = {"Get": "Steps.other.Properties"}
    with pytest.raises(RehearsalError, match="Steps.other.Properties"):
        run_sagemaker_pipeline(
            {"Steps": [step]}, "arn:x/execution/e", LocalSageMakerClient(_runner(tmp_path), "r")
        )


def _kfp_spec() -> dict:
    env = [{"name": "ZENML_VERTEX_RUN_ID", "value": "{{$.pipeline_job_name}}"}]
    pools = [
        {
            "machine_spec": {
                "machine_type": "n1-standard-8",
                "accelerator_type": "NVIDIA_TESLA_T4",
            },
            "container_spec": {
                "image_uri": "img:gpu",
                "command": ["python", "-m", "zenml.entrypoints.entrypoint"],
                "args": ["--step_name", "train"],
                "env": env,
            },
        }
    ]
    return {
        "root": {
            "dag": {
                "tasks": {
                    "train": {"componentRef": {"name": "comp-train"}, "dependentTasks": ["load"]},
                    "load": {"componentRef": {"name": "comp-load"}},
                }
            }
        },
        "components": {
            "comp-load": {"executorLabel": "exec-load"},
            "comp-train": {
                "executorLabel": "exec-train",
                "inputDefinitions": {"parameters": {"worker_pool_specs": {"defaultValue": pools}}},
            },
        },
        "deploymentSpec": {
            "executors": {
                "exec-load": {
                    "container": {
                        "image": "img:cpu",
                        "command": ["python", "-m", "zenml.entrypoints.entrypoint"],
                        "args": ["--step_name", "load"],
                        "env": env,
                    }
                },
                "exec-train": {
                    "container": {
                        "image": "gcpc",
                        "command": ["python3", "-u", "-m", CUSTOM_JOB_LAUNCHER],
                        "args": ["--type", "CustomJob"],
                    }
                },
            }
        },
    }


def test_a_kfp_spec_runs_tasks_and_custom_jobs_with_placeholders_resolved(
    tmp_path: Path, calls: Path
) -> None:
    jobs = LocalVertexJobs(_runner(tmp_path))
    parent = "projects/xray-rehearsal/locations/us-central1"
    run_kfp_pipeline(_kfp_spec(), "training-20261203-abc", jobs, parent)
    made = _calls(calls)
    images = [c["args"][c["args"].index("--env-file") + 2] for c in made]
    assert images == ["img:cpu", "img:gpu"]  # the custom job runs its worker pool's image
    assert [c["env"]["ZENML_VERTEX_RUN_ID"] for c in made] == ["training-20261203-abc"] * 2
    assert "CLOUD_ML_JOB_ID" in made[1]["env"]
    from google.cloud.aiplatform_v1.types import JobState

    (name,) = jobs.jobs
    assert name.startswith(f"{parent}/customJobs/")
    assert jobs.get_custom_job(name).state == JobState.JOB_STATE_SUCCEEDED


def test_an_unresolved_kfp_placeholder_is_named(tmp_path: Path, calls: Path) -> None:
    spec = _kfp_spec()
    spec["deploymentSpec"]["executors"]["exec-load"]["container"]["args"].append(
        "{{$.inputs.artifacts['data'].uri}}"
    )
    with pytest.raises(RehearsalError, match=r"inputs.artifacts"):
        run_kfp_pipeline(
            spec, "job-1", LocalVertexJobs(_runner(tmp_path)), "projects/p/locations/l"
        )
    assert not calls.exists()


def test_the_interceptions_exist_and_are_undone(tmp_path: Path) -> None:
    from sagemaker.workflow.pipeline import Pipeline
    from zenml.integrations.gcp.step_operators.vertex_step_operator import VertexStepOperator
    from zenml.stack.stack import Stack

    before = (Pipeline.start, Stack.prepare_pipeline_submission)
    inherited = "get_job_service_client" not in VertexStepOperator.__dict__
    with rehearsed(tmp_path, _runner(tmp_path), "us-east-1", []):
        assert Pipeline.start is not before[0]
        assert "get_job_service_client" in VertexStepOperator.__dict__
    assert (Pipeline.start, Stack.prepare_pipeline_submission) == before
    assert ("get_job_service_client" not in VertexStepOperator.__dict__) == inherited


def test_rehearse_refuses_the_local_stack_and_a_dry_run_together() -> None:
    from run import main

    both = CliRunner().invoke(main, ["--stack", "sagemaker", "--rehearse", "--dry-run"])
    assert both.exit_code == 2 and "alternatives" in both.output
    local = CliRunner().invoke(main, ["--stack", "local", "--rehearse"])
    assert local.exit_code == 1 and "--rehearse is for cloud stacks" in local.output
    inference = CliRunner().invoke(main, ["--rehearse", "--pipeline", "inference", "--data", "x"])
    assert inference.exit_code == 2 and "training pipeline" in inference.output


def test_rehearse_without_a_docker_engine_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from run import main

    monkeypatch.setenv("PATH", str(tmp_path))  # no docker command
    result = CliRunner().invoke(main, ["--stack", "vertex", "--rehearse"])
    assert result.exit_code == 1
    assert "No docker command" in result.output and "runs every cloud step" in result.output


def test_a_missing_parent_image_points_to_make_base_images(
    calls: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    docker = Path(os.environ["PATH"].split(os.pathsep)[0]) / "docker"
    docker.write_text('#!/bin/sh\n[ "$1" = info ] || [ "$1" = buildx ] && exit 0\nexit 1\n')
    monkeypatch.setenv("XRAY_PARENT_IMAGE", "nowhere/python:3.11")
    from run import main

    result = CliRunner().invoke(main, ["--stack", "sagemaker-hybrid", "--rehearse"])
    assert result.exit_code == 1
    assert "nowhere/python:3.11 is not on this Docker engine" in result.output
    assert "make base-images" in result.output
