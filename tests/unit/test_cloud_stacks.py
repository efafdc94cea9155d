"""Cloud stack files: loading, values files, overlays and registration (all offline)."""

import shutil
from pathlib import Path

import pytest
import yaml
from zenml.client import Client

import stacks.registry as registry
from stacks.registry import (
    PLACEHOLDERS,
    StackSpecError,
    available_stacks,
    load_stack_spec,
    merge_run_config,
    register_stack,
)

CLOUD = ["sagemaker", "sagemaker-hybrid", "vertex", "vertex-hybrid"]
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _values(key: str) -> dict[str, str]:
    """Every variable the stack needs, from its .env.example."""
    example = PROJECT_ROOT / "stacks" / f"{key.split('-')[0]}.env.example"
    return registry.read_values_file(example)


def test_every_cloud_stack_is_offered() -> None:
    assert set(CLOUD) | {"local"} == set(available_stacks())


@pytest.mark.parametrize("key", CLOUD)
def test_cloud_stack_loads_registers_and_reregisters(key: str) -> None:
    spec = load_stack_spec(key, env=_values(key))
    assert spec.is_remote and not spec.placeholders
    types = {c.type for c in spec.components}
    assert {"artifact_store", "container_registry", "image_builder"} <= types
    train = spec.overlay["steps"]["train_model"]
    assert "parameters" not in train  # infrastructure only
    assert spec.overlay["settings"]["docker"]["requirements"] == "requirements-gpu.txt"
    client = Client()
    previous = client.active_stack_model.name
    try:
        client.get_secret("xray_mlflow", allow_partial_name_match=False)
    except KeyError:  # the README has the user create it once per server
        client.create_secret("xray_mlflow", values={"username": "u", "password": "p"})
    try:
        register_stack(spec)
        register_stack(spec)
        assert client.active_stack_model.name == spec.name
        assert [s.name for s in client.list_stacks(size=100)].count(spec.name) == 1
        registered = {t.value for t, c in client.active_stack_model.components.items() if c}
        assert registered == types
    finally:
        client.activate_stack(previous)


@pytest.mark.parametrize("key", CLOUD)
def test_missing_value_is_named(key: str) -> None:
    values = _values(key)
    missing = sorted(load_stack_spec(key, env={}, placeholders=True).placeholders)[-1]
    del values[missing]
    with pytest.raises(StackSpecError, match=missing):
        load_stack_spec(key, env=values)
    spec = load_stack_spec(key, env=values, placeholders=True)
    assert spec.placeholders == {missing: PLACEHOLDERS[missing]}


def test_values_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(PROJECT_ROOT / "stacks" / "sagemaker.yaml", tmp_path / "sagemaker.yaml")
    monkeypatch.setattr(registry, "STACKS_DIR", tmp_path)
    values = _values("sagemaker")
    (tmp_path / "sagemaker.env").write_text(
        "# my account\n" + "\n".join(f"export {k}='{v}'" for k, v in values.items())
    )
    monkeypatch.setenv("XRAY_S3_BUCKET", "from-the-environment")
    spec = load_stack_spec("sagemaker")
    assert (
        spec.component("artifact_store").configuration["path"] == "s3://from-the-environment/zenml"
    )
    assert spec.component("orchestrator").configuration["region"] == values["XRAY_AWS_REGION"]
    (tmp_path / "sagemaker.env").write_text("XRAY_S3_BUCKET\n")
    with pytest.raises(StackSpecError, match=r"sagemaker.env:1: expected NAME=value"):
        load_stack_spec("sagemaker")


def test_overlay_may_not_carry_hyperparameters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bad.yaml").write_text(
        "name: bad\ncomponents:\n  orchestrator: {name: o, flavor: local}\n"
        "steps:\n  train_model:\n    parameters: {config: {epochs: 99}}\n"
    )
    monkeypatch.setattr(registry, "STACKS_DIR", tmp_path)
    with pytest.raises(StackSpecError, match="steps.train_model may only set .*parameters"):
        load_stack_spec("bad")


def test_overlay_is_merged_into_the_run_config(tmp_path: Path) -> None:
    spec = load_stack_spec(
        "sagemaker", env={**_values("sagemaker"), "XRAY_SAGEMAKER_GPU_INSTANCE": "ml.g5.xlarge"}
    )
    run_config = tmp_path / "mine.yaml"
    run_config.write_text("steps:\n  train_model:\n    parameters: {config: {backbone: vgg16}}\n")
    merged = yaml.safe_load(merge_run_config(run_config, spec, tmp_path / "out").read_text())
    train = merged["steps"]["train_model"]
    assert train["parameters"]["config"] == {"backbone": "vgg16"}  # the run config is intact
    assert train["settings"]["orchestrator"]["instance_type"] == "ml.g5.xlarge"
    assert merged["settings"]["docker"]["parent_image"].startswith("zenmldocker/zenml:")
    local = load_stack_spec("local")
    config = PROJECT_ROOT / "configs" / "training.yaml"
    assert merge_run_config(config, local, tmp_path) == config


@pytest.mark.parametrize("key", ["sagemaker", "vertex"])
def test_the_monitoring_pipeline_is_scheduled_on_the_full_cloud_stacks(
    key: str, tmp_path: Path
) -> None:
    spec = load_stack_spec(key, env=_values(key))
    config = PROJECT_ROOT / "configs" / "monitoring.yaml"
    merged = yaml.safe_load(
        merge_run_config(config, spec, tmp_path, pipeline="monitoring").read_text()
    )
    assert merged["schedule"] == {"cron_expression": "0 6 * * *"}
    training = PROJECT_ROOT / "configs" / "training.yaml"
    merged = yaml.safe_load(
        merge_run_config(training, spec, tmp_path, pipeline="training").read_text()
    )
    assert "schedule" not in merged and "schedules" not in merged


def test_a_schedule_names_a_pipeline_and_schedule_fields_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    head = "name: bad\ncomponents:\n  orchestrator: {name: o, flavor: local}\n"
    monkeypatch.setattr(registry, "STACKS_DIR", tmp_path)
    (tmp_path / "bad.yaml").write_text(head + "schedules:\n  nightly: {cron_expression: x}\n")
    with pytest.raises(StackSpecError, match="schedules.nightly: a pipeline"):
        load_stack_spec("bad")
    (tmp_path / "bad.yaml").write_text(head + "schedules:\n  monitoring: {epochs: 3}\n")
    with pytest.raises(StackSpecError, match="cron_expression"):
        load_stack_spec("bad")


@pytest.mark.parametrize("key", ["sagemaker", "vertex", "sagemaker-hybrid", "vertex-hybrid"])
def test_the_parent_image_is_a_setting(key: str, tmp_path: Path) -> None:
    """A site that cannot pull zenmldocker/zenml builds its own (make base-images)."""
    run_config = tmp_path / "mine.yaml"
    run_config.write_text("steps: {}\n")
    for env, expected in (
        ({}, "zenmldocker/zenml:0.98.0-py3.11"),
        (
            {"XRAY_PARENT_IMAGE": "registry.local/xray-python:3.11"},
            "registry.local/xray-python:3.11",
        ),
    ):
        spec = load_stack_spec(key, env={**_values(key), **env})
        merged = yaml.safe_load(merge_run_config(run_config, spec, tmp_path / "out").read_text())
        assert merged["settings"]["docker"]["parent_image"] == expected


@pytest.mark.parametrize("key", ["sagemaker", "vertex", "sagemaker-hybrid", "vertex-hybrid"])
def test_image_builds_leave_no_intermediate_containers(key: str, tmp_path: Path) -> None:
    """ZenML's local image builder calls the Docker SDK, which keeps every intermediate
    build container unless told otherwise (7.5 GB after one build of the GPU image)."""
    from zenml.config import DockerSettings

    run_config = tmp_path / "mine.yaml"
    run_config.write_text("steps: {}\n")
    spec = load_stack_spec(key, env=_values(key))
    merged = yaml.safe_load(merge_run_config(run_config, spec, tmp_path / "out").read_text())
    settings = DockerSettings.model_validate(merged["settings"]["docker"])
    options = settings.build_config.build_options.to_docker_python_sdk_options()
    assert options["rm"] is True
