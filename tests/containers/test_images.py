"""Real images on a real Docker engine: the base image from Debian packages, and a serving
image (``bentoml containerize`` of a calibrated model) answering the service's contract.

Run with ``make test-containers`` (``pytest -m containers``); the default suite leaves
them out. The base image is built when missing (``scripts/base_image.sh``, about 2
minutes), trusting this machine's CA certificates so that pip and uv inside reach PyPI
through a TLS-intercepting proxy.
"""

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import docker as _docker
from conftest import free_port
from PIL import Image

from application.serve import wait_until_ready
from application.serving_image import containerize
from xray.integrations.packaging import build_bento, save_to_model_store
from xray.ml.model import KerasModelFile, build_model, with_temperature
from xray.ml.serving import decode_upload

pytestmark = pytest.mark.containers
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SIZE = 48
CARD = "# Model card: container test\n\nNot a medical device.\n"


def test_the_base_image_has_python_311_and_reaches_pypi_over_tls(base_image: str) -> None:
    version = _docker("run", "--rm", base_image, "python", "-c", "import sys; print(sys.version)")
    assert version.returncode == 0 and version.stdout.startswith("3.11."), version.stderr
    pip = _docker(
        "run", "--rm", base_image, "pip", "download", "--no-deps", "-q", "-d", "/tmp", "six"
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr


@pytest.fixture(scope="module")
def calibrated() -> tuple[object, str]:
    model = with_temperature(
        build_model(backbone="compact_cnn", image_size=SIZE, weights=None, seed=5).model, 0.66
    )
    tag = save_to_model_store(
        KerasModelFile.from_model(model),
        metadata={"threshold": 0.5, "image_size": SIZE, "class_names": ["NORMAL", "PNEUMONIA"]},
        labels={"zenml_model_version": "7"},
    )
    return model, tag


@pytest.fixture(scope="module")
def serving_container(base_image: str, calibrated: tuple[object, str]) -> Iterator[str]:
    bento = build_bento(calibrated[1], model_card=CARD, base_image=base_image)
    image = containerize(bento, "xray-serving:container-test")
    port = free_port()
    started = _docker("run", "-d", "--rm", "-p", f"127.0.0.1:{port}:3000", image)
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until_ready(url, 180):
            pytest.fail("the serving container was not ready in 180 s: " + _logs(container))
        yield url, image
    finally:
        _docker("rm", "-f", container)


def _logs(container: str) -> str:
    return _docker("logs", container).stderr[-3000:]


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_serving_image_answers_the_contract(
    serving_container: tuple[str, str], calibrated: tuple[object, str]
) -> None:
    url, image = serving_container
    assert httpx.get(f"{url}/livez", timeout=5).status_code == 200
    data = _png(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64))
    answer = httpx.post(f"{url}/predict", files={"image": ("x.png", data)}, timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    model = calibrated[0]
    expected = float(model(decode_upload(data, SIZE)[None], training=False)[0, 0])
    assert body["probability"] == pytest.approx(expected, abs=1e-5)  # the calibrated model
    assert body["model_version"] == "7" and "not a medical device" in body["disclaimer"]
    bad = httpx.post(f"{url}/predict", files={"image": ("x.png", b"not an image")}, timeout=30)
    assert bad.status_code == 400 and "error" in bad.json()
    card = _docker(
        "run", "--rm", "--entrypoint", "cat", image, "/home/bentoml/bento/src/MODEL_CARD.md"
    )
    assert card.returncode == 0 and card.stdout == CARD
