"""The loop after serving, on 127.0.0.1 and the local stack: traffic -> feedback ->
monitoring report -> alert to a webhook -> retrain; a challenger in shadow and its
promotion on live evidence; a version that waits for, then gets, a person's sign-off.

The module trains its own model (``MODEL``): version 1 (production) and version 2, which
passes the gates but waits in staging (``require_approval``) and is served in shadow.
"""

import json
import threading
import time
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import bento_server, server_output
from zenml.client import Client
from zenml.enums import ModelStages

import run as cli
from stacks.emulators import free_port
from stacks.registry import load_stack_spec, register_stack
from synthetic import encode, make_kaggle_tree, set_settings, small_run_config, synthetic_pixels
from xray.logic.constants import MODEL_ARTIFACT, MODEL_CARD_ARTIFACT
from xray.logic.metrics import classification_metrics
from xray.ml.training import predict_probabilities

pytestmark = pytest.mark.integration
MODEL = "monitoring_test_model"
SIZE = 48
SERVED = 32  # requests: 16 per class (promote --challenger needs 30 labels)


def _training_config(path: Path, seed: int, require_approval: bool = False) -> Path:
    small_run_config(path, SIZE, 5)
    config = yaml.safe_load(path.read_text())
    config["model"] = {"name": MODEL}
    set_settings(
        config,
        "train_model",
        augment_acquisition=False,
        standardize_intensity=False,
        seed=seed,
    )
    set_settings(config, "evaluate_model", bootstrap_resamples=200)
    set_settings(config, "check_data_drift", mode="warn")
    set_settings(
        config,
        "promote_model",
        min_auc=0.6,
        min_sensitivity=0.5,
        max_auc_drop=0.3,
        max_sensitivity_drop=0.5,
        require_approval=require_approval,
    )
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("monitoring")


@pytest.fixture(scope="module")
def versions(workdir: Path) -> list[Any]:
    from pipelines.training import training_pipeline

    data = make_kaggle_tree(
        workdir / "chest_xray", per_class={"train": 30, "val": 2, "test": 12}, size=56
    )
    register_stack(load_stack_spec("local"))
    runs = []
    for seed, approval in ((42, False), (7, True)):
        config = _training_config(workdir / f"train-{seed}.yaml", seed, approval)
        pipeline = training_pipeline.with_options(config_path=str(config), enable_cache=False)
        runs.append(pipeline(data_dir=str(data)))
    return [Client().get_model_version(MODEL, run.model_version.number) for run in runs]


def test_a_version_that_passes_waits_for_sign_off(versions: list[Any]) -> None:
    first, second = versions
    assert first.stage == ModelStages.PRODUCTION
    decision = second.run_metadata["promotion"]
    assert decision["awaiting_approval"] is True and decision["promoted"] is False
    assert all(decision["checks"].values()) and second.stage == ModelStages.STAGING
    assert any("python run.py approve" in reason for reason in decision["reasons"])


class _Receiver(BaseHTTPRequestHandler):
    posts: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).posts.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", free_port()), _Receiver)
    _Receiver.posts = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/alerts"
    server.shutdown()


def _post_feedback(url: str, body: dict) -> httpx.Response:
    """POST /feedback as a client should: a 503 (the documented "retry shortly") is
    retried once after its Retry-After. The 503 and the server's account of it (its
    output) become a warning in the test report, so a retry is never silent."""
    response = httpx.post(f"{url}/feedback", json=body, timeout=30)
    if response.status_code == 503:
        warnings.warn(
            f"/feedback answered 503 ({response.text}); the server's output:\n"
            f"{server_output(url, 4000)}",
            stacklevel=2,
        )
        time.sleep(float(response.headers.get("Retry-After", "1")))
        response = httpx.post(f"{url}/feedback", json=body, timeout=30)
    return response


def _serve_and_label(log_dir: Path, files: list[bytes], truth: list[str]) -> list[dict]:
    """Serves production with version 2 in shadow; answers, then labels, every image."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "XRAY_MODEL_TAG"}
    env.update(
        XRAY_MODEL_NAME=MODEL,
        XRAY_PREDICTION_LOG_DIR=str(log_dir),
        XRAY_PREDICTION_LOG_IMAGES="keep",
        XRAY_GUARD_MODE="flag",
    )
    with bento_server(env, launcher=True, extra=("--challenger", "staging")) as url:
        answers = []
        for data in files[:24]:
            response = httpx.post(f"{url}/predict", files={"image": ("x.png", data)}, timeout=60)
            assert response.status_code == 200, response.text
            answers.append(response.json())
        batch = [("images", (f"{i}.png", data)) for i, data in enumerate(files[24:])]
        answers += httpx.post(f"{url}/predict_batch", files=batch, timeout=60).json()
        for answer, label in zip(answers, truth, strict=True):
            body = {"inference_id": answer["inference_id"], "label": label, "source": "test"}
            response = _post_feedback(url, body)
            assert response.status_code == 200, (response.text, dict(response.headers))
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        assert 'xray_feedback_total{label="NORMAL",outcome="recorded"} 16.0' in metrics
    return answers


def _monitoring_config(workdir: Path) -> Path:
    config = yaml.safe_load((Path(cli.__file__).parent / "configs" / "monitoring.yaml").read_text())
    set_settings(config, "check_inference_drift", min_images=20)
    set_settings(config, "assess_live_quality", min_labelled=10, bootstrap_resamples=200)
    set_settings(
        config,
        "handle_monitoring",
        on_alert="retrain",
        min_labelled_images=10,
        training_config=str(workdir / "train-42.yaml"),
    )
    config["model"] = {"name": MODEL, "version": "production"}
    path = workdir / "monitoring.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_traffic_feedback_report_alert_retrain_and_the_challenger(
    versions: list[Any], workdir: Path, webhook: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(5)
    truth = ["NORMAL", "PNEUMONIA"] * (SERVED // 2)
    # 96 px where the model trained on 56 px: the served images' sizes drift
    files = [encode(synthetic_pixels(i % 2, 96, rng), "PNG") for i in range(SERVED)]
    log_dir = workdir / "log"
    answers = _serve_and_label(log_dir, files, truth)
    assert {a["model_version"] for a in answers} == {str(versions[0].number)}

    monkeypatch.setenv("XRAY_PREDICTION_LOG_DIR", str(log_dir))
    monkeypatch.setenv("XRAY_ALERT_WEBHOOK_URL", webhook)
    monkeypatch.setenv("XRAY_MODEL_NAME", MODEL)
    out = workdir / "report"
    args = ["--pipeline", "monitoring", "--config", str(_monitoring_config(workdir))]
    result = CliRunner().invoke(cli.main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "monitoring.json").read_text())
    assert (out / "monitoring.html").read_text().count("not a medical device") >= 1

    # The live figures are those of the answers and the labels.
    y = np.array([label == "PNEUMONIA" for label in truth], int)
    p = np.array([a["probability"] for a in answers])
    expected = classification_metrics(y, p, answers[0]["threshold"])
    assert report["n_predictions"] == SERVED and report["n_labelled"] == SERVED
    for key, name in (
        ("accuracy", "accuracy"),
        ("sensitivity", "sensitivity"),
        ("specificity", "specificity"),
        ("auc", "roc_auc"),
    ):
        assert report["live"][key] == pytest.approx(expected[name], abs=1e-9), key
    low, high = report["live_intervals"]["roc_auc"]
    assert low <= report["live"]["auc"] <= high
    assert report["positive_rate"] == pytest.approx((p >= answers[0]["threshold"]).mean())

    # Drift of the served images: an alert, delivered to the webhook.
    assert report["drift_detected"] is True and {"width", "height"} <= set(
        report["drifted_features"]
    )
    assert any(alert.startswith("data drift") for alert in report["alerts"])
    assert len(_Receiver.posts) == 1 and "data drift" in _Receiver.posts[0]["text"]
    assert _Receiver.posts[0]["details"]["n_labelled"] == SERVED

    # The challenger's figures, from its own answers on the same requests.
    shadow = report["shadow"]
    challenger = versions[1].get_model_artifact(MODEL_ARTIFACT).load()
    p2 = predict_probabilities(challenger.load(), files, challenger.image_size)
    threshold2 = float(versions[1].run_metadata["threshold"])
    expected2 = classification_metrics(y, p2, threshold2)
    assert shadow["challenger_version"] == str(versions[1].number)
    assert shadow["n_compared"] == SERVED
    assert shadow["challenger"]["metrics"]["roc_auc"] == pytest.approx(
        expected2["roc_auc"], abs=1e-4
    )
    agreement = np.mean((p >= answers[0]["threshold"]) == (p2 >= threshold2))
    assert shadow["agreement"] == pytest.approx(agreement)

    # The retrain: version 1's data plus the labelled production images.
    assert "retrain" in result.output.lower(), result.output
    newest = Client().list_model_versions(MODEL, sort_by="desc:number", size=1).items[0]
    assert newest.number == versions[1].number + 1
    labelled = log_dir / "labelled"
    kept = list(labelled.glob("*/*/*.png"))
    assert len(kept) == SERVED
    assert str(labelled) in str(newest.run_metadata["data_sources"])


def test_the_challenger_is_promoted_on_live_evidence_then_a_person_signs_off(
    versions: list[Any], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XRAY_PREDICTION_LOG_DIR", str(workdir / "log"))
    monkeypatch.setenv("XRAY_MODEL_NAME", MODEL)
    gates = workdir / "train-42.yaml"  # gates without require_approval
    result = CliRunner().invoke(cli.main, ["promote", "--challenger", "--config", str(gates)])
    assert result.exit_code == 0, result.output
    assert f"Challenger version {versions[1].number} promoted" in result.output
    assert "live evidence: both models on the same 32 labelled requests" in result.output
    production = Client().get_model_version(MODEL, ModelStages.PRODUCTION)
    assert production.number == versions[1].number

    # A person signs version 1 off again (it passed its gates): it serves again.
    refused = CliRunner().invoke(cli.main, ["approve", "1", "--by", "Dr. Test", "--note", ""])
    assert refused.exit_code != 0 and "--by NAME --note TEXT" in refused.output
    approved = CliRunner().invoke(
        cli.main, ["approve", str(versions[0].number), "--by", "Dr. Test", "--note", "card read"]
    )
    assert approved.exit_code == 0, approved.output
    version = Client().get_model_version(MODEL, versions[0].number)
    assert version.stage == ModelStages.PRODUCTION
    assert version.run_metadata["approval"]["by"] == "Dr. Test"
    card = str(version.get_artifact(MODEL_CARD_ARTIFACT).load())
    assert "Sign-off" in card and "Dr. Test" in card and "card read" in card


def test_a_version_that_failed_its_gates_cannot_be_signed_off(
    versions: list[Any], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XRAY_MODEL_NAME", MODEL)
    from lifecycle.approval import log_model_metadata

    version = versions[0]
    decision = version.run_metadata["promotion"]
    log_model_metadata(
        version,
        {
            "promotion": {
                **decision,
                "checks": {**decision["checks"], "min_auc": False},
                "reasons": ["FAILED test AUC 0.400 vs minimum 0.900"],
            }
        },
    )
    result = CliRunner().invoke(
        cli.main, ["approve", str(version.number), "--by", "Dr. Test", "--note", "x"]
    )
    assert result.exit_code != 0
    assert "did not pass the promotion gates" in result.output
    assert "FAILED test AUC 0.400" in result.output
