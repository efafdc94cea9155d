"""Cloud rehearsals for real: ``python run.py --stack <cloud> --rehearse`` builds the stack's
image with ZenML's image builder (requirements-gpu.txt, CUDA wheels included) on the base
image, runs each cloud step in it as the cloud would start it, against a ZenML server, a
storage emulator and an MLflow server on 127.0.0.1, and must end with a promoted version
whose Bento archive is on the emulator and ``bentoml serve`` answering with it.

Two stacks cover both clouds and both ways of leaving the machine: ``sagemaker`` (the
SageMaker pipeline definition, every step a training-job container, S3) and
``vertex-hybrid`` (local orchestrator, the Vertex custom job of ``train_model``, GCS).
The other two are rehearsed the same way by hand (README: Rehearse a cloud run); their
definitions' execution is unit-tested (tests/unit/test_rehearsal.py). A tiny model keeps
the training short; the pipeline, images and services are the real ones.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import docker

from synthetic import small_run_config

TIMEOUT_S = 2400  # a cold image build plus 17 step containers, with room to spare
pytestmark = [pytest.mark.containers, pytest.mark.timeout(TIMEOUT_S + 60)]
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _rehearse(
    stack: str, base_image: str, *extra: str, config: Path
) -> subprocess.CompletedProcess:
    env = {**os.environ, "XRAY_PARENT_IMAGE": base_image}
    command = [sys.executable, "run.py", "--stack", stack, "--rehearse", "--config", str(config)]
    return subprocess.run(
        [*command, *extra],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_run_config(tmp_path_factory.mktemp("rehearsal") / "training.yaml", 48, 2)


@pytest.mark.parametrize(
    ("stack", "bucket", "containers"),
    [("sagemaker", "s3://xray-rehearsal/", 17), ("vertex-hybrid", "gs://xray-rehearsal/", 1)],
)
def test_a_cloud_stack_rehearses_to_a_promoted_served_version(
    stack: str, bucket: str, containers: int, base_image: str, config: Path
) -> None:
    containers_before = docker("ps", "-aq").stdout.split()
    done = _rehearse(stack, base_image, config=config)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert docker("ps", "-aq").stdout.split() == containers_before  # none left behind
    outcome = json.loads(
        (PROJECT_ROOT / "outputs" / "rehearsal" / stack / "rehearsal.json").read_text()
    )
    assert outcome["status"] == "completed" and outcome["stage"] == "production"
    assert outcome["artifact_uri"].startswith(bucket)  # the Bento archive, on the emulator
    (image,) = outcome["images"]  # one image, built by ZenML with the stack's settings
    assert image["size"] > 3e9  # TensorFlow with its CUDA wheels
    ran = outcome["containers"]
    assert len(ran) == containers and all(c["returncode"] == 0 for c in ran)
    assert all(c["image"] == image["image"] for c in ran)
    if stack == "vertex-hybrid":
        assert ran[0]["name"].endswith("train_model")  # only the GPU step left the machine
    prediction = outcome["prediction"]
    assert prediction["label"] in {"NORMAL", "PNEUMONIA"} and 0 <= prediction["probability"] <= 1
    assert "bentoml serve answered /predict" in done.stdout


def test_a_failing_cloud_step_prints_its_log_and_command(
    base_image: str, config: Path, tmp_path: Path
) -> None:
    """Files that list as images but do not decode pass the client's layout check and
    fail inside the load step's container, on the data uploaded to the emulator."""
    for name in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "corrupt" / name).mkdir(parents=True)
        for i in range(6):
            (tmp_path / "corrupt" / name / f"{i}.jpeg").write_bytes(b"not a jpeg " * 50)
    done = _rehearse("sagemaker", base_image, "--data", str(tmp_path / "corrupt"), config=config)
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert "Step container 'load-dataset-" in output and "exited with 1" in output
    assert "usable images under s3://xray-rehearsal/data/corrupt" in output  # the step's log
    assert "docker run --rm --network host --env-file" in output  # the exact command
    assert "--step_name load_dataset" in output
