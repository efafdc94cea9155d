"""The service's prediction log, feedback, shadow challenger and /metrics, over HTTP on
127.0.0.1; and the log in a real PostgreSQL server."""

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import numpy as np
import pytest
from conftest import bento_server

from synthetic import encode, synthetic_pixels
from xray.integrations.packaging import save_to_model_store
from xray.io.prediction_log import PredictionLog, PredictionStore
from xray.ml.model import KerasModelFile, build_model

pytestmark = pytest.mark.integration
SIZE = 48


def _tag(seed: int, version: str, threshold: float) -> str:
    model = build_model(backbone="compact_cnn", image_size=SIZE, weights=None, seed=seed).model
    return save_to_model_store(
        KerasModelFile.from_model(model),
        metadata={"threshold": threshold, "image_size": SIZE},
        labels={"zenml_model_version": version},
    )


@pytest.fixture(scope="module")
def tags() -> tuple[str, str]:
    return _tag(3, "4", 0.5), _tag(11, "5", 0.45)


def _images(n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [encode(synthetic_pixels(i % 2, 64 + i, rng)) for i in range(n)]


def _metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "log"


def test_answers_feedback_shadow_and_metrics(tags: tuple[str, str], log_dir: Path) -> None:
    production, challenger = tags
    env = {
        **os.environ,
        "XRAY_MODEL_TAG": production,
        "XRAY_CHALLENGER_TAG": challenger,
        "XRAY_PREDICTION_LOG_DIR": str(log_dir),
    }
    files = _images(5)
    with bento_server(env) as url:
        answers = []
        for data in files[:3]:
            response = httpx.post(f"{url}/predict", files={"image": ("x.png", data)}, timeout=60)
            assert response.status_code == 200, response.text
            assert response.headers["x-inference-id"] == response.json()["inference_id"]
            answers.append(response.json())
        batch = httpx.post(
            f"{url}/predict_batch",
            files=[("images", (f"{i}.png", d)) for i, d in enumerate(files[3:])],
            timeout=60,
        )
        assert batch.status_code == 200
        answers += batch.json()
        assert batch.headers["x-inference-id"] == ",".join(a["inference_id"] for a in batch.json())
        ids = [a["inference_id"] for a in answers]
        assert len(set(ids)) == 5

        def feedback(body: dict) -> httpx.Response:
            return httpx.post(f"{url}/feedback", json=body, timeout=30)

        first = feedback({"inference_id": ids[0], "label": "PNEUMONIA", "source": "radiologist"})
        assert first.status_code == 200 and first.json()["status"] == "recorded"
        again = feedback({"inference_id": ids[0], "label": "PNEUMONIA", "source": "radiologist"})
        assert again.json()["status"] == "unchanged"
        assert feedback({"inference_id": ids[1], "label": "NORMAL"}).json()["status"] == "recorded"
        assert (
            feedback({"inference_id": ids[0], "label": "NORMAL", "source": "radiologist"}).json()[
                "status"
            ]
            == "updated"
        )
        unknown = feedback({"inference_id": "0" * 32, "label": "NORMAL"})
        assert unknown.status_code == 404 and "inference_id" in unknown.json()["error"]
        bad = feedback({"inference_id": ids[2], "label": "pneumonia?"})
        assert bad.status_code == 400 and "NORMAL" in bad.json()["error"]
        assert feedback({"label": "NORMAL"}).status_code == 400  # no id

        deadline = time.monotonic() + 30  # the challenger scores after the answers
        while time.monotonic() < deadline:
            metrics = httpx.get(f"{url}/metrics", timeout=10).text
            if _metric(metrics, "xray_shadow_comparisons_total") >= 5:
                break
            time.sleep(0.5)
        assert _metric(metrics, "xray_predictions_total", role="production", model_version="4") == 5
        assert _metric(metrics, "xray_predictions_total", role="challenger", model_version="5") == 5
        assert _metric(metrics, "xray_shadow_comparisons_total", challenger_version="5") == 5
        assert _metric(metrics, "xray_probability_count", role="production") == 5
        assert _metric(metrics, "xray_request_seconds_count", route="/predict", status="200") == 3
        assert _metric(metrics, "xray_feedback_total", outcome="unknown") == 1
    store = PredictionStore(f"sqlite:///{log_dir / 'predictions.db'}")
    predictions, labels = store.window()
    production_rows = predictions[predictions["role"] == "production"].set_index("inference_id")
    assert sorted(production_rows.index) == sorted(ids)
    for answer in answers:
        row = production_rows.loc[answer["inference_id"]]
        assert row["probability"] == pytest.approx(answer["probability"], abs=1e-9)
        assert row["label"] == answer["label"] and row["model_version"] == "4"
        assert row["mean"] > 0 and row["width"] >= 64
    assert (predictions["role"] == "challenger").sum() == 5
    assert "sha256" not in predictions.columns and "path" not in predictions.columns
    assert dict(zip(labels["inference_id"], labels["label"], strict=True)) == {
        ids[0]: "NORMAL",
        ids[1]: "NORMAL",
    }


def test_answered_requests_survive_a_crash(tags: tuple[str, str], log_dir: Path) -> None:
    """The API worker killed (SIGKILL) right after its answers, while the database is
    unreachable: the next start moves them into the database."""
    env = {
        **os.environ,
        "XRAY_MODEL_TAG": tags[0],
        "XRAY_PREDICTION_LOG_DIR": str(log_dir),
        # the database is unreachable while the first server runs: nothing is moved
        "XRAY_PREDICTION_LOG_URL": "sqlite:////proc/no-such-dir/predictions.db",
    }
    ids = []
    with bento_server(env) as url:
        for data in _images(4, seed=1):
            response = httpx.post(f"{url}/predict", files={"image": ("x.png", data)}, timeout=60)
            ids.append(response.json()["inference_id"])
        (journal,) = (log_dir / "journal").glob("*.jsonl")  # <worker pid>-<token>.jsonl
        os.kill(int(journal.stem.split("-")[0]), signal.SIGKILL)
    del env["XRAY_PREDICTION_LOG_URL"]
    with bento_server(env) as url:
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    predictions, _ = PredictionStore(f"sqlite:///{log_dir / 'predictions.db'}").window()
    assert sorted(predictions["inference_id"]) == sorted(ids)


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL 16 server (the pgserver wheel's binaries) and its pg8000 URL."""
    pgserver = pytest.importorskip("pgserver", reason="pgserver wheels: Linux x86_64 only")
    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    socket_dir = parse_qs(urlparse(server.get_uri()).query)["host"][0]
    yield f"postgresql+pg8000://postgres@/postgres?unix_sock={socket_dir}/.s.PGSQL.5432"
    server.cleanup()


def test_the_log_in_a_postgresql_server(postgres_url: str, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from xray.io.prediction_log import PredictionRecord

    now = datetime.now(UTC)
    records = [
        PredictionRecord(
            inference_id=f"pg-{i}",
            time=now - timedelta(hours=i),
            route="/predict",
            model_version="4",
            probability=i / 10,
            label="NORMAL",
            threshold=0.5,
            statistics={"mean": float(i)},
        )
        for i in range(6)
    ]
    store = PredictionStore(postgres_url)
    log = PredictionLog(store, tmp_path, interval=0.05).start()
    log.record(records)
    log.record(records[:2])  # moved twice, stored once
    assert log.flush(20)
    log.close()
    assert store.add_feedback("pg-1", "PNEUMONIA", "pathology") == "recorded"
    assert store.add_feedback("pg-1", "PNEUMONIA", "pathology") == "unchanged"
    predictions, feedback = store.window(since=now - timedelta(hours=3, minutes=30))
    assert sorted(predictions["inference_id"]) == ["pg-0", "pg-1", "pg-2", "pg-3"]
    assert predictions.set_index("inference_id").loc["pg-2", "mean"] == 2
    assert feedback.to_dict("records")[0]["label"] == "PNEUMONIA"
