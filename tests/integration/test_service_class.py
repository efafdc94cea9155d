"""The service in-process with a small real model: the classes' methods directly, and
HTTP through the ASGI app (no server process)."""

import asyncio
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from synthetic import encode, synthetic_pixels
from xray.integrations.packaging import save_to_model_store
from xray.ml.model import KerasModelFile, build_model
from xray.ml.training import predict_probabilities

pytestmark = pytest.mark.integration
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    model = build_model(backbone="compact_cnn", image_size=40, weights=None, seed=5).model
    tag = save_to_model_store(
        KerasModelFile.from_model(model),
        {"threshold": 0.5, "image_size": 40},
        {"zenml_model_version": "7"},
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("XRAY_MODEL_TAG", tag)
    mp.syspath_prepend(str(PROJECT_ROOT / "bentos"))
    sys.modules.pop("service", None)
    import service as module

    yield module.PneumoniaClassifier(), model, module
    sys.modules.pop("service", None)
    mp.undo()


def _file(tmp_path: Path, data: bytes, name: str = "x.jpeg") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_predict_in_process(service, tmp_path: Path) -> None:
    classifier, model, _ = service
    data = encode(synthetic_pixels(1, 70, np.random.default_rng(0)))
    response = asyncio.run(classifier.predict(_file(tmp_path, data)))
    body = json.loads(response.body)
    assert response.status_code == 200 and body["model_version"] == "7"
    expected = predict_probabilities(model, [data], 40)[0]
    assert body["probability"] == pytest.approx(float(expected), abs=1e-5)
    assert body["label"] == ("PNEUMONIA" if body["probability"] >= 0.5 else "NORMAL")


def test_bad_input_in_process(service, tmp_path: Path) -> None:
    classifier, _, _ = service
    response = asyncio.run(classifier.predict(_file(tmp_path, b"not an image", "x.png")))
    assert response.status_code == 400 and "not an image" in json.loads(response.body)["error"]


def test_explain_in_process(service, tmp_path: Path) -> None:
    classifier, _, _ = service
    data = encode(synthetic_pixels(0, 64, np.random.default_rng(1)))
    response = asyncio.run(classifier.explain(_file(tmp_path, data)))
    assert response.status_code == 200 and response.body.startswith(b"\x89PNG")


def test_http_through_the_asgi_app(service, monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    monkeypatch.setenv("XRAY_MAX_UPLOAD_MB", "1")
    _, model, module = service
    good = encode(synthetic_pixels(1, 60, np.random.default_rng(2)))
    with TestClient(module.PneumoniaClassifier.to_asgi()) as client:
        assert client.get("/readyz").status_code == 200 and client.get("/livez").status_code == 200
        ok = client.post("/predict", files={"image": ("x.jpeg", good)})
        assert ok.status_code == 200 and ok.headers["x-disclaimer"].startswith("Not a medical")
        expected = float(predict_probabilities(model, [good], 40)[0])
        assert ok.json()["probability"] == pytest.approx(expected, abs=1e-5)
        bad = {
            "text": client.post("/predict", files={"image": ("x.png", b"text")}),
            "empty": client.post("/predict", files={"image": ("x.png", b"")}),
            "no field": client.post("/predict"),
            "wrong field": client.post("/predict", files={"file": ("x.jpeg", good)}),
            "too large": client.post(
                "/predict",
                content=b"x" * (2 * 2**20),
                headers={"content-type": "multipart/form-data; boundary=b"},
            ),
        }
        for name, response in bad.items():
            assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
            assert "error" in response.json(), name
        assert bad["too large"].status_code == 413
        batch = client.post(
            "/predict_batch", files=[("images", ("a.jpeg", good)), ("images", ("b.jpeg", good))]
        )
        assert batch.status_code == 200 and len(batch.json()) == 2


def test_only_an_overloaded_model_gets_503(service) -> None:
    from xray.ml.serving import Overloaded

    classifier, _, _ = service
    for exc in (Overloaded("600 images wait"), TimeoutError()):
        response = classifier._failed(exc)
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
    bug = classifier._failed(ValueError("shapes do not match"))
    assert bug.status_code == 500 and "retry-after" not in bug.headers
    assert "internal error" in json.loads(bug.body)["error"]
    assert "shapes" not in json.loads(bug.body)["error"]  # no internals in the answer


def test_model_failure_is_a_500_through_predict(service, tmp_path: Path, monkeypatch) -> None:
    classifier, _, _ = service

    async def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(classifier, "_forward", broken)
    data = encode(synthetic_pixels(1, 70, np.random.default_rng(0)))
    response = asyncio.run(classifier.predict(_file(tmp_path, data)))
    assert response.status_code == 500


def test_feedback_answers_in_process(service, tmp_path: Path, monkeypatch) -> None:
    classifier, _, _ = service
    data = encode(synthetic_pixels(0, 64, np.random.default_rng(3)))
    answer = json.loads(asyncio.run(classifier.predict(_file(tmp_path, data))).body)
    feedback = asyncio.run(classifier.feedback(answer["inference_id"], "NORMAL"))
    assert feedback.status_code == 200 and json.loads(feedback.body)["status"] == "recorded"
    bad = asyncio.run(classifier.feedback(answer["inference_id"], "normal"))
    assert bad.status_code == 400
    monkeypatch.setattr(classifier, "log", None)  # XRAY_PREDICTION_LOG=off
    off = asyncio.run(classifier.feedback(answer["inference_id"], "NORMAL"))
    assert off.status_code == 409 and "XRAY_PREDICTION_LOG=off" in json.loads(off.body)["error"]
