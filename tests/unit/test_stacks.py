import pytest
from zenml.client import Client

from stacks.registry import StackSpecError, available_stacks, load_stack_spec, register_stack


def test_local_stack_file() -> None:
    assert "local" in available_stacks()
    spec = load_stack_spec("local")
    types = {c.type: c.flavor for c in spec.components}
    assert types == {
        "orchestrator": "local",
        "artifact_store": "local",
        "experiment_tracker": "mlflow",
    }


def test_environment_variables_are_required_and_named(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stacks.registry as registry

    (tmp_path / "cloudy.yaml").write_text(
        "name: cloudy\ncomponents:\n  artifact_store:\n    name: s\n    flavor: s3\n"
        "    configuration:\n      path: s3://${XRAY_BUCKET}/${XRAY_PREFIX:-zenml}\n"
        "      region: ${XRAY_REGION}\n"
    )
    monkeypatch.setattr(registry, "STACKS_DIR", tmp_path)
    with pytest.raises(StackSpecError, match="XRAY_BUCKET, XRAY_REGION"):
        load_stack_spec("cloudy", env={})
    spec = load_stack_spec("cloudy", env={"XRAY_BUCKET": "b", "XRAY_REGION": "eu-west-1"})
    assert spec.components[0].configuration == {"path": "s3://b/zenml", "region": "eu-west-1"}
    with pytest.raises(StackSpecError, match="No stack file"):
        load_stack_spec("nope")


def test_registration_is_idempotent() -> None:
    client = Client()
    spec = load_stack_spec("local")
    register_stack(spec)
    register_stack(spec)
    assert client.active_stack_model.name == "xray-local"
    names = [s.name for s in client.list_stacks(size=100)]
    assert names.count("xray-local") == 1
    trackers = client.list_stack_components(type="experiment_tracker", name="xray-local-mlflow")
    assert trackers.total == 1


def test_flavor_clash_is_reported() -> None:
    spec = load_stack_spec("local")
    register_stack(spec, activate=False)
    clash = load_stack_spec("local")
    clash.components[0].flavor = "sagemaker"
    with pytest.raises(StackSpecError, match="already exists with flavor 'local'"):
        register_stack(clash, activate=False)
