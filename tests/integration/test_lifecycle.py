"""Promotion, the model card, batch inference with drift, and the retrain trigger, on the
local stack in the isolated ZenML store.

The module trains its own model (``MODEL``), so the production version it sees is its
own whatever the other modules train. Three versions: a weak first model (promoted: no
production yet), a good one (promoted over it), a weak one again (not promoted).
"""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from zenml.client import Client
from zenml.enums import ExecutionStatus, ModelStages

from stacks.registry import load_stack_spec, register_stack
from synthetic import encode, make_kaggle_tree, set_settings, small_run_config, synthetic_pixels
from xray.logic.constants import (
    MODEL_ARTIFACT,
    MODEL_CARD_ARTIFACT,
    MODEL_CARD_HTML_ARTIFACT,
    PROMOTION_ARTIFACT,
    TEST_SET_ARTIFACT,
)
from xray.logic.metrics import classification_metrics
from xray.ml.inference import PREDICTION_COLUMNS
from xray.ml.training import predict_probabilities

pytestmark = pytest.mark.integration
MODEL = "lifecycle_test_model"
SIZE = 48


def _training_config(path: Path, weak: bool) -> Path:
    small_run_config(path, SIZE, 1 if weak else 5)
    config = yaml.safe_load(path.read_text())
    config["model"] = {"name": MODEL}
    if weak:  # barely trained: near chance
        set_settings(config, "train_model", learning_rate=1e-7, augment=False)
    else:  # the synthetic classes differ mostly in brightness, which per-image
        # standardisation and acquisition augmentation deliberately hide (X-ray exposure
        # is no diagnosis); 5 epochs at 48 px do not learn the blotches alone
        set_settings(config, "train_model", augment_acquisition=False, standardize_intensity=False)
    set_settings(config, "evaluate_model", bootstrap_resamples=200)
    set_settings(
        config,
        "promote_model",
        min_auc=0.0 if weak else 0.8,
        min_sensitivity=0.0 if weak else 0.5,
        max_auc_drop=0.02,
        max_sensitivity_drop=0.1,
    )
    path.write_text(yaml.safe_dump(config))
    return path


def _inference_config(path: Path, model: str = MODEL) -> Path:
    root = Path(__file__).resolve().parents[2]
    config = yaml.safe_load((root / "configs" / "inference.yaml").read_text())
    config["model"] = {"name": model, "version": "production"}
    set_settings(config, "check_inference_drift", min_images=20)
    # A retrain uses the good config, with the split-drift gate only warning: with a few
    # dozen images, the mix of old and new images differs between splits by chance.
    retrain = yaml.safe_load((path.parent / "good.yaml").read_text())
    set_settings(retrain, "check_data_drift", mode="warn")
    (path.parent / "retrain.yaml").write_text(yaml.safe_dump(retrain))
    set_settings(config, "handle_drift", training_config=str(path.parent / "retrain.yaml"))
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lifecycle")


@pytest.fixture(scope="module")
def data_dir(workdir: Path) -> Path:
    return make_kaggle_tree(
        workdir / "chest_xray", per_class={"train": 30, "val": 2, "test": 12}, size=56
    )


def _train(config: Path, data: Path) -> Any:
    from pipelines.training import training_pipeline

    register_stack(load_stack_spec("local"))
    return training_pipeline.with_options(config_path=str(config), enable_cache=False)(
        data_dir=str(data)
    )


@pytest.fixture(scope="module")
def runs(workdir: Path, data_dir: Path) -> list[Any]:
    weak = _training_config(workdir / "weak.yaml", weak=True)
    good = _training_config(workdir / "good.yaml", weak=False)
    return [_train(weak, data_dir), _train(good, data_dir), _train(weak, data_dir)]


def _decision(run: Any) -> dict[str, Any]:
    return run.steps["promote_model"].outputs[PROMOTION_ARTIFACT][0].load().model_dump()


def _version(run: Any) -> Any:
    return Client().get_model_version(MODEL, run.model_version.number)


def test_first_model_is_promoted_on_the_absolute_gates(runs: list[Any]) -> None:
    first = _decision(runs[0])
    assert first["promoted"] is True and first["comparison"] is None
    assert "no production version yet" in first["reasons"]
    assert _version(runs[0]).stage == ModelStages.ARCHIVED  # replaced by the second


def test_better_model_replaces_production_on_the_same_images(runs: list[Any]) -> None:
    second = _decision(runs[1])
    assert second["promoted"] is True, second["reasons"]
    assert second["production_version"] == str(runs[0].model_version.number)
    comparison = second["comparison"]
    test_set = runs[1].steps["split_dataset"].outputs[TEST_SET_ARTIFACT][0].load()
    assert comparison["images"] + comparison["excluded_seen_by_production"] == len(test_set)
    # The production model was re-scored on this run's test images, not its own numbers.
    old = _version(runs[0]).get_model_artifact(MODEL_ARTIFACT).load()
    p = predict_probabilities(old.load(), test_set.images, old.image_size)
    threshold = float(_version(runs[0]).run_metadata["threshold"])
    expected = classification_metrics(test_set.labels, p, threshold)
    assert comparison["production"]["roc_auc"] == pytest.approx(expected["roc_auc"], abs=1e-6)
    assert comparison["new"]["roc_auc"] > comparison["production"]["roc_auc"]


def test_worse_model_is_not_promoted_and_the_reason_is_recorded(runs: list[Any]) -> None:
    third = _decision(runs[2])
    assert third["promoted"] is False and third["stage"] == "staging"
    assert third["checks"]["not_worse_auc"] is False
    assert any(r.startswith("FAILED AUC") for r in third["reasons"]), third["reasons"]
    version = _version(runs[2])
    assert version.stage == ModelStages.STAGING
    assert version.run_metadata["promotion"]["promoted"] is False
    production = Client().get_model_version(MODEL, ModelStages.PRODUCTION)
    assert production.number == runs[1].model_version.number


def test_model_card_matches_the_version_metadata(runs: list[Any]) -> None:
    run = runs[1]
    meta = _version(run).run_metadata
    step = run.steps["create_model_card"]
    markdown = str(step.outputs[MODEL_CARD_ARTIFACT][0].load())
    html = str(step.outputs[MODEL_CARD_HTML_ARTIFACT][0].load())
    for text in (markdown, html):
        assert "not a medical device" in text.lower()
        assert meta["data_fingerprint"] in text
        assert f"{meta['threshold']:.3f}" in text
        assert f"{meta['metrics']['roc_auc']:.3f}" in text
        assert f"{meta['metrics']['sensitivity']:.3f}" in text
        assert "CC BY 4.0" in text and "10.17632/rscbjbr9sj.2" in text
        assert "pediatric" in text.lower()
    test_counts = run.steps["split_dataset"].run_metadata["split_counts"]["test"]
    assert f"| {test_counts['NORMAL']} |" in markdown or str(test_counts["NORMAL"]) in markdown
    intervals = run.steps["evaluate_model"].run_metadata["test_ci95"]
    low, high = intervals["roc_auc"]
    assert low <= meta["metrics"]["roc_auc"] <= high
    assert f"{low:.3f}" in markdown
    import bentoml

    bento = bentoml.get(meta["bento_tag"])
    assert (Path(bento.path) / "src" / "MODEL_CARD.md").read_text() == markdown


def test_serving_resolves_the_production_version(runs: list[Any]) -> None:
    import bentoml

    from lifecycle.production import production_model_tag

    meta = _version(runs[1]).run_metadata
    bentoml.bentos.delete(meta["bento_tag"])  # as on a machine that did not train it
    bentoml.models.delete(meta["bentoml_model_tag"])
    assert production_model_tag(MODEL) == meta["bentoml_model_tag"]
    model = bentoml.models.get(meta["bentoml_model_tag"])  # imported from the archive
    assert model.info.labels["zenml_model_version"] == str(runs[1].model_version.number)


def test_the_launcher_serves_the_production_version(runs: list[Any], workdir: Path) -> None:
    import os

    import httpx
    from conftest import bento_server

    env = {k: v for k, v in os.environ.items() if k != "XRAY_MODEL_TAG"}
    env["XRAY_MODEL_NAME"] = MODEL
    with bento_server(env, launcher=True) as url:
        image = encode(synthetic_pixels(1, 56, np.random.default_rng(1)), "PNG")
        answer = httpx.post(f"{url}/predict", files={"image": ("x.png", image)}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == str(runs[1].model_version.number)
        threshold = float(_version(runs[1]).run_metadata["threshold"])
        assert answer.json()["threshold"] == pytest.approx(threshold)


def test_the_launcher_names_the_tag_or_says_why_there_is_none(runs: list[Any]) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]

    def launch(name: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "application.serve", "--print-tag", "--model-name", name]
        return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)

    printed = launch(MODEL)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == _version(runs[1]).run_metadata["bentoml_model_tag"]
    missing = launch("never_trained_model")
    assert missing.returncode == 1
    assert "No production version of model 'never_trained_model'" in missing.stderr


def _write_images(folder: Path, n: int, size: int, seed: int, invert: bool = False) -> None:
    rng = np.random.default_rng(seed)
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = synthetic_pixels(label, size, rng)
            if invert:
                pixels = 255 - pixels
            (folder / name / f"new-{i}.jpeg").write_bytes(encode(pixels))


def _infer(workdir: Path, data: Path, out: Path, *extra: str, model: str = MODEL) -> Any:
    import run as cli

    config = _inference_config(workdir / f"inference-{model}.yaml", model)
    args = ["--pipeline", "inference", "--config", str(config), "--data", str(data)]
    return CliRunner().invoke(cli.main, [*args, "--out", str(out), *extra])


def test_inference_on_same_distribution_data(runs: list[Any], workdir: Path) -> None:
    new = workdir / "same"
    _write_images(new, 20, 56, seed=123)
    (new / "NORMAL" / "broken.jpeg").write_bytes(b"\xff\xd8\xff not an image")
    out = workdir / "out-same"
    result = _infer(workdir, new, out)
    assert result.exit_code == 0, result.output
    assert str(out / "predictions.csv") in result.output and "not a medical device" in result.output
    predictions = pd.read_csv(out / "predictions.csv")
    assert list(predictions.columns) == list(PREDICTION_COLUMNS)  # the file is the schema
    assert predictions["accepted"].all()  # same distribution: the guard refuses none
    assert len(predictions) == 40
    assert predictions["probability"].between(0, 1).all()
    assert set(predictions["truth"]) == {"NORMAL", "PNEUMONIA"}
    threshold = float(_version(runs[1]).run_metadata["threshold"])
    expected = np.where(predictions["probability"] >= threshold, "PNEUMONIA", "NORMAL")
    assert (predictions["label"] == expected).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["accuracy"] >= 0.7, summary["metrics"]
    assert pd.read_csv(out / "skipped.csv")["file"].tolist() == ["NORMAL/broken.jpeg"]
    drift = json.loads((out / "drift.json").read_text())
    assert drift["drift_detected"] is False, drift
    assert drift["share_drifted"] <= 0.2
    assert Path(drift["report"]).is_file() and Path(drift["report"]).stat().st_size > 1000


def test_inference_in_worker_processes_equals_one_process(runs: list[Any], workdir: Path) -> None:
    """``batch_predict.config.shards: 2`` on the local stack: two worker processes score
    the halves; the merged files equal those of the one-process run above."""
    import run as cli

    config = yaml.safe_load(_inference_config(workdir / "inference-sharded.yaml").read_text())
    set_settings(config, "batch_predict", shards=2, batch_size=8)
    path = workdir / "inference-sharded.yaml"
    path.write_text(yaml.safe_dump(config))
    out = workdir / "out-sharded"
    args = ["--pipeline", "inference", "--config", str(path), "--data", str(workdir / "same")]
    result = CliRunner().invoke(cli.main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    one, two = (pd.read_csv(d / "predictions.csv") for d in (workdir / "out-same", out))
    pd.testing.assert_frame_equal(one, two, atol=1e-6)
    assert pd.read_csv(out / "skipped.csv")["file"].tolist() == ["NORMAL/broken.jpeg"]
    drift = [json.loads((d / "drift.json").read_text()) for d in (workdir / "out-same", out)]
    assert drift[0]["share_drifted"] == drift[1]["share_drifted"]
    assert drift[0]["scores"] == pytest.approx(drift[1]["scores"])


def test_inference_flags_shifted_data_and_names_the_statistics(
    runs: list[Any], workdir: Path
) -> None:
    shifted = workdir / "shifted"
    _write_images(shifted, 20, 56, seed=7, invert=True)
    out = workdir / "out-shifted"
    result = _infer(workdir, shifted, out)
    assert result.exit_code == 0, result.output
    drift = json.loads((out / "drift.json").read_text())
    assert drift["drift_detected"] is True
    assert {"mean", "p50"} <= set(drift["drifted_features"]), drift
    assert not {"width", "height"} & set(drift["drifted_features"])  # sizes did not shift
    assert "DRIFT detected" in result.output

    failed = _infer(workdir, shifted, workdir / "out-fail", "--on-drift", "fail")
    assert failed.exit_code != 0
    assert "handle_drift" in failed.output and "mean" in failed.output
    assert (workdir / "out-fail" / "predictions.csv").is_file()  # written before failing


def test_unlabelled_folder_and_single_image(runs: list[Any], workdir: Path) -> None:
    flat = workdir / "flat" / "batch-1"
    flat.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for i in range(3):
        (flat / f"scan-{i}.png").write_bytes(encode(synthetic_pixels(i % 2, 56, rng), "PNG"))
    result = _infer(workdir, flat.parent, workdir / "out-flat")
    assert result.exit_code == 0, result.output
    predictions = pd.read_csv(workdir / "out-flat" / "predictions.csv", keep_default_na=False)
    assert predictions["file"].tolist() == [f"batch-1/scan-{i}.png" for i in range(3)]
    assert (predictions["truth"] == "").all()
    drift = json.loads((workdir / "out-flat" / "drift.json").read_text())
    assert drift["tested"] is False and drift["drift_detected"] is False

    single = _infer(workdir, flat / "scan-0.png", workdir / "out-one")
    assert single.exit_code == 0, single.output
    assert len(pd.read_csv(workdir / "out-one" / "predictions.csv")) == 1


def test_missing_production_model_gives_the_documented_error(workdir: Path) -> None:
    result = _infer(workdir, workdir, workdir / "out-none", model="never_trained_model")
    assert result.exit_code != 0
    assert "No production version of model 'never_trained_model'" in result.output
    assert "zenml model version update" in result.output


def test_drift_retrains_on_old_and_new_data_whatever_starts_the_run(
    runs: list[Any], workdir: Path, data_dir: Path
) -> None:
    """The inference pipeline started directly (as a schedule or the dashboard starts it,
    not through run.py) retrains on drift with ``on_drift: retrain`` in its config."""
    from pipelines.inference import inference_pipeline
    from xray.logic.constants import DRIFT_RESPONSE_ARTIFACT

    before = {r.id for r in Client().list_pipeline_runs(pipeline_name="training", size=100)}
    shifted = workdir / "shifted"  # labelled, drifted (written by the test above)
    if not shifted.is_dir():
        _write_images(shifted, 20, 56, seed=7, invert=True)
    config = yaml.safe_load(_inference_config(workdir / "retrain-inference.yaml").read_text())
    set_settings(config, "handle_drift", on_drift="retrain")
    (workdir / "retrain-inference.yaml").write_text(yaml.safe_dump(config))
    register_stack(load_stack_spec("local"))
    run = inference_pipeline.with_options(
        config_path=str(workdir / "retrain-inference.yaml"), enable_cache=False
    )(data_dir=str(shifted))
    assert run.status == ExecutionStatus.COMPLETED
    response = run.steps["handle_drift"].outputs[DRIFT_RESPONSE_ARTIFACT][0].load()
    assert response.action == "retrain" and not response.retrain.error, response
    assert response.retrain.data_dirs == [str(data_dir), str(shifted)]
    new_runs = [
        r
        for r in Client().list_pipeline_runs(pipeline_name="training", size=100)
        if r.id not in before
    ]
    assert len(new_runs) == 1 and new_runs[0].status == ExecutionStatus.COMPLETED
    assert new_runs[0].name == response.retrain.run_name
    assert response.retrain.model_version == str(new_runs[0].model_version.number)
    assert response.retrain.promoted is _decision(new_runs[0])["promoted"]
    params = new_runs[0].steps["load_dataset"].config.parameters
    assert params["data_dir"] == str(data_dir)
    assert params["extra_data_dirs"] == [str(shifted)]
    assert new_runs[0].steps["load_dataset"].run_metadata["images"] == 88 + 40
    # the old and new images were split together: new images reach the test split
    split = new_runs[0].steps["split_dataset"].config.parameters["config"]
    assert split["use_official_test"] is False
