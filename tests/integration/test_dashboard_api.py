"""The local ZenML server (the dashboard's backend) serves a run, its steps, metadata and
visualizations: `zenml login --local` on a free port of 127.0.0.1 in an isolated config
folder, `python run.py` against it, then the server's REST API."""

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port

from synthetic import make_kaggle_tree, small_run_config

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ZENML = str(Path(sys.executable).with_name("zenml"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    root = tmp_path_factory.mktemp("dashboard")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_STORE", "XRAY_MODEL"))}
    env.update(
        ZENML_CONFIG_PATH=str(root / "zenml-config"),
        ZENML_REPOSITORY_PATH=str(root / "zenml-repo"),
        BENTOML_HOME=str(root / "bentoml"),
        ZENML_AUTO_OPEN_DASHBOARD="false",
        ZENML_ANALYTICS_OPT_IN="false",
    )
    port = free_port()
    login = [ZENML, "login", "--local", "--port", str(port), "--ip-address", "127.0.0.1"]
    try:
        started = subprocess.run(login, env=env, capture_output=True, text=True, timeout=240)
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        yield f"http://127.0.0.1:{port}", env
    finally:
        subprocess.run([ZENML, "logout", "--local"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def run_output(server: tuple[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> str:
    url, env = server
    root = tmp_path_factory.mktemp("dashboard-data")
    data = make_kaggle_tree(root / "chest_xray", per_class={"train": 16, "val": 2, "test": 6})
    config = small_run_config(root / "training.yaml", 48, 2)
    command = [sys.executable, "run.py", "--stack", "local", "--config", str(config)]
    result = subprocess.run(
        [*command, "--data", str(data)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def api(server: tuple[str, dict[str, str]]) -> httpx.Client:
    url, _ = server
    token = httpx.post(f"{url}/api/v1/login", data={"username": "default", "password": ""})
    token.raise_for_status()
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    return httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=60)


def _steps(api: httpx.Client, run_id: str) -> dict[str, Any]:
    steps = api.get("/steps", params={"pipeline_run_id": run_id, "size": 100, "hydrate": True})
    steps.raise_for_status()
    return {step["name"]: step for step in steps.json()["items"]}


def _visualization(api: httpx.Client, step: dict[str, Any], output: str) -> dict[str, Any]:
    artifact = step["resources"]["outputs"][output][0]
    answer = api.get(f"/artifact_versions/{artifact['id']}/visualize", params={"index": 0})
    answer.raise_for_status()
    return answer.json()


def test_run_prints_its_dashboard_url(server: tuple[str, dict[str, str]], run_output: str) -> None:
    url, _ = server
    match = re.search(r"^Dashboard:\s+(\S+)$", run_output, re.MULTILINE)
    assert match and match.group(1).startswith(f"{url}/projects/default/runs/"), run_output
    assert httpx.get(match.group(1), timeout=30).status_code == 200  # the dashboard's page


def test_server_serves_the_run_steps_metadata_and_visualizations(
    api: httpx.Client, run_output: str
) -> None:
    runs = api.get("/runs", params={"size": 1, "sort_by": "desc:created"}).json()["items"]
    assert runs and runs[0]["body"]["status"] == "completed"
    assert runs[0]["id"] in run_output
    steps = _steps(api, runs[0]["id"])
    assert {"load_dataset", "train_model", "evaluate_model", "promote_model"} <= set(steps)
    assert all(step["body"]["status"] == "completed" for step in steps.values())
    metadata = steps["evaluate_model"]["metadata"]["run_metadata"]
    assert 0.0 <= metadata["test_metrics"]["roc_auc"] <= 1.0
    assert set(metadata["test_ci95"]) >= {"roc_auc", "sensitivity", "specificity"}
    assert (
        steps["split_dataset"]["metadata"]["run_metadata"]["split_counts"]["test"]["images"] == 12
    )
    promotion = steps["promote_model"]["metadata"]["run_metadata"]
    assert promotion["stage"] in ("production", "staging") and promotion["reasons"]

    kinds = {
        ("compute_image_statistics", "data_overview"): "image",
        ("evaluate_model", "evaluation_plots"): "image",
        ("analyze_errors", "gradcam_examples"): "image",
        ("check_data_quality", "data_quality_report"): "html",
        ("create_model_card", "model_card_html"): "html",
        ("create_model_card", "model_card"): "markdown",
    }
    for (step, output), kind in kinds.items():
        shown = _visualization(api, steps[step], output)
        assert shown["type"] == kind, (step, output, shown["type"])
        assert 100 < len(shown["value"]) < 8 * 2**20, (step, output, len(shown["value"]))
    card = _visualization(api, steps["create_model_card"], "model_card")["value"]
    assert "not a medical device" in card.lower()
