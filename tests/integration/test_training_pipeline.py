"""The whole training pipeline on the local stack, in the isolated ZenML store."""

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from zenml.client import Client
from zenml.enums import ExecutionStatus

from stacks.registry import load_stack_spec, register_stack
from synthetic import encode, make_kaggle_tree, set_settings, small_run_config, synthetic_pixels
from xray.logic.constants import DATASET_ARTIFACT, MODEL_NAME

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def small_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped run config with a tiny, fast model."""
    return small_run_config(tmp_path_factory.mktemp("config") / "training.yaml", 48, 4)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_kaggle_tree(
        tmp_path_factory.mktemp("data") / "chest_xray",
        per_class={"train": 24, "val": 2, "test": 10},
        size=56,
    )
    (root / "train" / "NORMAL" / "broken.jpeg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    return root


def _run(config: Path, data: Path, **options: Any) -> Any:
    from pipelines.training import training_pipeline

    register_stack(load_stack_spec("local"))
    return training_pipeline.with_options(config_path=str(config), **options)(data_dir=str(data))


@pytest.fixture(scope="module")
def first_run(small_config: Path, data_dir: Path) -> Any:
    return _run(small_config, data_dir)


def test_pipeline_registers_a_model_version(first_run: Any) -> None:
    assert first_run.status == ExecutionStatus.COMPLETED
    version = Client().get_model_version(MODEL_NAME, first_run.model_version.number)
    meta = version.run_metadata
    metrics = meta["metrics"]
    assert 0.85 <= metrics["roc_auc"] <= 1.0, metrics
    assert 0.6 <= metrics["accuracy"] <= 1.0 and metrics["n"] == 20
    assert metrics["tp"] + metrics["fn"] == 10
    assert 0.0 <= meta["threshold"] <= 1.0 and meta["threshold_rule"] == "target_sensitivity"
    assert meta["image_size"] == 48
    assert meta["class_names"] == ["NORMAL", "PNEUMONIA"]
    assert meta["pretrained"] is False and meta["backbone"] == "compact_cnn"
    assert meta["data_validation"]["passed"] is True, meta["data_validation"]
    import bentoml

    assert meta["bento_tag"].startswith("pneumonia_service:")
    packaged = bentoml.models.get(meta["bentoml_model_tag"])
    assert packaged.info.labels["zenml_model_version"] == str(first_run.model_version.number)
    assert packaged.info.metadata["threshold"] == pytest.approx(meta["threshold"])
    assert bentoml.get(meta["bento_tag"]).tag.name == "pneumonia_service"
    dataset = first_run.steps["load_dataset"].outputs[DATASET_ARTIFACT][0]
    assert meta["data_fingerprint"] == dataset.run_metadata["fingerprint"]
    model_artifact = version.get_model_artifact("keras_model")
    assert model_artifact is not None
    model = model_artifact.load().load()
    assert model.predict(np.zeros((1, 48, 48, 3), np.uint8), verbose=0).shape == (1, 1)
    # The README's use of it: model(images) is inference (batch norms on their moving
    # statistics, no augmentation), whatever else is in the batch.
    grey = np.stack([synthetic_pixels(i % 2, 48, np.random.default_rng(i)) for i in range(4)])
    images = np.repeat(grey[..., None], 3, axis=-1)
    predicted = model.predict(images, verbose=0)
    np.testing.assert_allclose(np.asarray(model(images)), predicted, atol=1e-6)
    np.testing.assert_allclose(np.asarray(model(images[:1])), predicted[:1], atol=1e-6)


def test_bad_file_is_skipped_and_listed(first_run: Any) -> None:
    meta = first_run.steps["load_dataset"].run_metadata
    assert meta["skipped_count"] == 1
    assert "train/NORMAL/broken.jpeg" in meta["skipped_files"]
    split = first_run.steps["split_dataset"].run_metadata["split_counts"]
    assert split["test"]["images"] == 20  # the official test folder, untouched
    assert split["train"]["images"] + split["val"]["images"] == 52  # 2 x (24 + 2)


def test_evaluation_has_intervals_calibration_errors_and_gradcam(first_run: Any) -> None:
    from xray.logic.calibration import apply_temperature

    meta = Client().get_model_version(MODEL_NAME, first_run.model_version.number).run_metadata
    evaluate = first_run.steps["evaluate_model"].run_metadata
    for name in ("roc_auc", "accuracy", "sensitivity", "specificity"):
        low, high = evaluate["test_ci95"][name]
        assert 0.0 <= low <= meta["metrics"][name] <= high <= 1.0, (name, low, high)
    assert 0.0 <= evaluate["ece"] <= 1.0 and 0.0 <= evaluate["brier"] <= 1.0
    fit = first_run.steps["calibrate_model"].run_metadata
    assert fit["temperature"] > 0 and isinstance(fit["applied"], bool)
    # The served model is the calibrated one: trained model's p, through T when applied.
    trained = first_run.steps["train_model"].outputs["trained_model"][0].load().load()
    served = first_run.steps["calibrate_model"].outputs["keras_model"][0].load().load()
    images = np.stack([synthetic_pixels(i % 2, 48, np.random.default_rng(i)) for i in range(4)])
    rgb = np.repeat(images[..., None], 3, axis=-1)
    p_trained = trained.predict(rgb, verbose=0).reshape(-1)
    expected = apply_temperature(p_trained, fit["temperature"]) if fit["applied"] else p_trained
    np.testing.assert_allclose(served.predict(rgb, verbose=0).reshape(-1), expected, rtol=1e-4)
    errors = first_run.steps["analyze_errors"]
    for name in ("error_examples", "gradcam_examples"):
        artifact = errors.outputs[name][0]
        assert artifact.load().png.startswith(b"\x89PNG")
        assert artifact.visualizations, name
    analysis = errors.outputs["error_analysis"][0].load()
    assert analysis.subtypes["NORMAL"]["n"] == 10  # the test folder's NORMAL images
    card = str(first_run.steps["create_model_card"].outputs["model_card"][0].load())
    assert f"{fit['temperature']:.2f}" in card


def test_mlflow_run_has_params_epochs_metrics_plots_and_model(first_run: Any) -> None:
    version = Client().get_model_version(MODEL_NAME, first_run.model_version.number)
    run_id = version.run_metadata["mlflow_run_id"]
    tracker = Client().active_stack.experiment_tracker
    client = MlflowClient(tracking_uri=tracker.get_tracking_uri())
    run = client.get_run(run_id)
    assert run.data.params["train.backbone"] == "compact_cnn"
    assert run.data.params["pretrained"] == "False"
    assert 0.85 <= run.data.metrics["test_roc_auc"] <= 1.0
    assert len(client.get_metric_history(run_id, "val_auc")) == 4
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"model", "plots", "validation"} <= artifacts
    validation = {a.path for a in client.list_artifacts(run_id, "validation")}
    assert validation == {
        f"validation/data_{kind}.{ext}" for kind in ("quality", "drift") for ext in ("html", "json")
    }
    plots = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert plots == {
        "plots/evaluation.png",
        "plots/training_curves.png",
        "plots/reliability.png",
        "plots/error_examples.png",
        "plots/gradcam_examples.png",
    }


def test_unchanged_rerun_is_cached(first_run: Any, small_config: Path, data_dir: Path) -> None:
    again = _run(small_config, data_dir)
    statuses = {name: step.status for name, step in again.steps.items()}
    for never_cached in ("package_model", "build_bento", "register_model", "promote_model"):
        assert statuses.pop(never_cached) == ExecutionStatus.COMPLETED
    assert set(statuses.values()) == {ExecutionStatus.CACHED}, statuses
    version = Client().get_model_version(MODEL_NAME, again.model_version.number)
    assert version.number == first_run.model_version.number + 1
    assert version.run_metadata["threshold"] == pytest.approx(
        Client()
        .get_model_version(MODEL_NAME, first_run.model_version.number)
        .run_metadata["threshold"]
    )


def test_changed_file_invalidates_the_load_cache(
    first_run: Any, small_config: Path, data_dir: Path, tmp_path: Path
) -> None:
    changed = tmp_path / "chest_xray"
    shutil.copytree(data_dir, changed)
    moved = _run(small_config, changed)
    # A new path re-runs the load, but the same content keeps the rest cached.
    assert moved.steps["load_dataset"].status == ExecutionStatus.COMPLETED
    assert moved.steps["split_dataset"].status == ExecutionStatus.CACHED
    assert _run(small_config, changed).steps["load_dataset"].status == ExecutionStatus.CACHED
    victim = (
        changed
        / "train"
        / "PNEUMONIA"
        / sorted(p.name for p in (changed / "train" / "PNEUMONIA").iterdir())[0]
    )
    victim.write_bytes(encode(synthetic_pixels(1, 60, np.random.default_rng(99))))
    rerun = _run(small_config, changed)
    assert rerun.steps["load_dataset"].status == ExecutionStatus.COMPLETED
    old = first_run.steps["load_dataset"].outputs[DATASET_ARTIFACT][0].run_metadata["fingerprint"]
    new = rerun.steps["load_dataset"].outputs[DATASET_ARTIFACT][0].run_metadata["fingerprint"]
    assert old != new


@pytest.fixture(scope="module")
def external_dir(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """Another 'site': 8 images per class of new patients, brighter than the training
    images, plus a renamed copy of a training image (which must be dropped)."""
    from synthetic import write_class_folder

    root = tmp_path_factory.mktemp("external") / "site_b"
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        write_class_folder(root / name, label, 8, 56, seed=40 + label, offset=500)
    train_image = sorted((data_dir / "train" / "NORMAL").glob("IM-*.jpeg"))[0]
    (root / "NORMAL" / "copy.jpeg").write_bytes(train_image.read_bytes())
    return root


def test_external_sets_are_scored_never_used_and_reported(
    first_run: Any, small_config: Path, data_dir: Path, external_dir: Path, tmp_path: Path
) -> None:
    import yaml

    config = yaml.safe_load(small_config.read_text())
    set_settings(config, "promote_model", min_external_auc=0.5)
    gated = tmp_path / "training.yaml"
    gated.write_text(yaml.safe_dump(config))
    from pipelines.training import training_pipeline

    run = training_pipeline.with_options(config_path=str(gated))(
        data_dir=str(data_dir), external_test_dirs=[str(external_dir)]
    )
    assert run.status == ExecutionStatus.COMPLETED
    # Never used for a choice: everything up to the test metrics is the first run's.
    for name in ("train_model", "calibrate_model", "evaluate_model"):
        assert run.steps[name].status == ExecutionStatus.CACHED, name
    external = run.steps["evaluate_external"].outputs["external_metrics"][0].load()
    result = external.sets["site_b"].model_dump()
    assert result["n"] == 16 and result["class_counts"] == {"NORMAL": 8, "PNEUMONIA": 8}
    train_name = sorted((data_dir / "train" / "NORMAL").glob("IM-*.jpeg"))[0].name
    assert result["dropped_overlaps"] == [
        {
            "file": "site_b/NORMAL/copy.jpeg",
            "internal_file": f"train/NORMAL/{train_name}",
            "reason": "identical bytes",
        }
    ]
    assert result["source"] == str(external_dir)
    metrics = result["metrics"]
    assert metrics["n"] == 16 and metrics["tp"] + metrics["fn"] == 8
    for key in ("roc_auc", "accuracy", "sensitivity", "specificity"):
        low, high = result["intervals"][key]
        assert 0 <= low <= metrics[key] <= high <= 1, key
    first_meta = Client().get_model_version(MODEL_NAME, first_run.model_version.number)
    meta = Client().get_model_version(MODEL_NAME, run.model_version.number).run_metadata
    assert meta["threshold"] == pytest.approx(first_meta.run_metadata["threshold"])
    assert metrics["threshold"] == pytest.approx(meta["threshold"])
    assert meta["external"]["site_b"]["metrics"]["roc_auc"] == pytest.approx(metrics["roc_auc"])
    promotion = run.steps["promote_model"].outputs["promotion_decision"][0].load()
    assert "external site_b auc" in promotion.checks
    card = str(run.steps["create_model_card"].outputs["model_card"][0].load())
    external_section = card.split("## Performance on external test sets", 1)[1].split("\n## ")[0]
    assert "site\\_b" in external_section and f"{metrics['roc_auc']:.3f}" in external_section
    assert "1 image(s) dropped" in external_section
    plots = run.steps["evaluate_external"].outputs["external_evaluation_plots"][0]
    assert plots.load().png.startswith(b"\x89PNG") and plots.visualizations
    tracker = Client().active_stack.experiment_tracker
    client = MlflowClient(tracking_uri=tracker.get_tracking_uri())
    mlflow_run = run.steps["evaluate_external"].run_metadata["mlflow_run_id"]
    mlflow_metrics = client.get_run(mlflow_run).data.metrics
    assert mlflow_metrics["external_site_b_roc_auc"] == pytest.approx(metrics["roc_auc"])
