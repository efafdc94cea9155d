"""Rehearse a cloud stack on this machine (``python run.py --stack sagemaker --rehearse``).

The training pipeline goes through ZenML's real submission for the stack — its images
built by ZenML's image builder with the stack's Docker settings, its code uploaded to the
artifact store, its definition compiled by the orchestrator — and every step that would
run in the cloud runs in that image, started with the command the cloud would use
(:mod:`stacks.rehearsal`). Behind it, on 127.0.0.1 only: a ZenML server, the S3 or GCS
emulator as the artifact store and a real MLflow server whose credentials come from the
stack's ZenML secret (:mod:`stacks.emulators`). It ends with the promoted model version's
artifacts read back from the emulator and ``bentoml serve`` answering ``/predict``.

Everything it starts is stopped at the end; the step logs, env files and the definition
stay under ``outputs/rehearsal/<stack>/``.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from application.workspace import (
    DEFAULT_DATA,
    PROJECT_ROOT,
    RunError,
    ensure_zenml_repository,
    isolate_zenml,
    resolve_data,
)
from xray.io.paths import is_uri
from xray.logic.constants import BENTO_ARCHIVE_ARTIFACT, MODEL_NAME

DEFAULT_PARENT_IMAGE = "zenmldocker/zenml:0.98.0-py3.11"
#: The account values of a rehearsal: well-formed, plainly not real, never contacted.
REHEARSAL_VALUES = {
    "XRAY_AWS_REGION": "us-east-1",
    "XRAY_S3_BUCKET": "xray-rehearsal",
    "XRAY_SAGEMAKER_ROLE_ARN": "arn:aws:iam::000000000000:role/xray-rehearsal",
    "XRAY_ECR_REGISTRY": "000000000000.dkr.ecr.us-east-1.amazonaws.com",
    "XRAY_GCP_PROJECT": "xray-rehearsal",
    "XRAY_GCP_REGION": "us-central1",
    "XRAY_GCS_BUCKET": "xray-rehearsal",
    "XRAY_ARTIFACT_REGISTRY": "us-central1-docker.pkg.dev/xray-rehearsal/xray",
    "XRAY_VERTEX_SERVICE_ACCOUNT": "xray-rehearsal@xray-rehearsal.iam.gserviceaccount.com",
}
SERVE_TIMEOUT_S = 300


@dataclass
class RehearsalOutcome:
    """What a rehearsal did, with its timings (also written to ``rehearsal.json``)."""

    stack: str
    run_name: str = ""
    status: str = ""
    images: list[dict[str, Any]] = field(default_factory=list)
    containers: list[dict[str, Any]] = field(default_factory=list)
    model_version: str = ""
    stage: str = ""
    artifact_uri: str = ""
    prediction: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    out_dir: str = ""

    def report(self) -> list[str]:
        """What the CLI prints at the end."""
        lines = [
            "",
            f"Rehearsal of stack '{self.stack}': run '{self.run_name}' {self.status}; "
            "every service was on 127.0.0.1 and nothing left this machine.",
        ]
        for image in self.images:
            lines.append(
                f"  image {image['image']}: built in {image['seconds']:.1f} s, "
                f"{image['size'] / 1e9:.2f} GB (kept on the local engine, not pushed)"
            )
        where = "in its image" if self.containers else ""
        lines.append(f"  {len(self.containers)} step container(s) {where}:")
        lines += [
            f"    {c['name']:<40} {c['seconds']:6.0f} s  exit {c['returncode']}"
            for c in self.containers
        ]
        lines.append(
            f"  Model {MODEL_NAME} version {self.model_version}: {self.stage}; "
            f"Bento archive at {self.artifact_uri}"
        )
        if self.prediction:
            shown = {
                k: self.prediction[k] for k in ("label", "probability") if k in self.prediction
            }
            lines.append(f"  bentoml serve answered /predict with {json.dumps(shown)}")
        total, pipeline = self.seconds.get("total", 0.0), self.seconds.get("pipeline", 0.0)
        lines.append(
            f"  Wall time {total / 60:.1f} min (pipeline {pipeline / 60:.1f} "
            f"min). Logs, env files and the definition: {self.out_dir}"
        )
        return lines


def _parent_image(echo: Callable[[str], None]) -> str:
    """The stacks' parent image, on the local engine (pulled when missing).

    Raises:
        RunError: No Docker engine, or the image is missing and cannot be pulled.
    """
    from application.serving_image import ImageBuildError, docker_environment

    try:
        docker_environment()
    except ImageBuildError as exc:
        raise RunError(f"{exc} A rehearsal runs every cloud step in a container.") from None
    image = os.environ.get("XRAY_PARENT_IMAGE") or DEFAULT_PARENT_IMAGE
    inspect = subprocess.run(["docker", "image", "inspect", image], capture_output=True)
    if inspect.returncode == 0:
        return image
    echo(f"Pulling the parent image {image} ...")
    pulled = subprocess.run(["docker", "pull", image], capture_output=True, text=True)
    if pulled.returncode != 0:
        raise RunError(
            f"The parent image {image} is not on this Docker engine and cannot be pulled "
            f"({(pulled.stderr or pulled.stdout).strip()[-300:]}). Build one from Debian "
            "packages with `make base-images`, then set "
            "XRAY_PARENT_IMAGE=xray-python:3.11-bookworm (README: Rehearse a cloud run)."
        )
    return image


def _stage_data(data: str | None, bucket_uri: str) -> str:
    """What the load step reads: the shipped sample travels with the code; a folder of
    this machine is uploaded to the emulator's bucket, as it must be for the cloud."""
    resolved = resolve_data(data)
    if resolved == DEFAULT_DATA or is_uri(resolved) or not Path(resolved).is_absolute():
        return resolved
    import fsspec

    local = Path(resolved)
    target = f"{bucket_uri}/data/{local.name}"
    protocol = bucket_uri.split("://", 1)[0]
    options = {"token": "anon"} if protocol == "gs" else {}
    fs = fsspec.filesystem(protocol, **options)
    fs.put(str(local), target.split("://", 1)[1], recursive=True)
    return target


def _serve_and_predict(image: Path, log: Path) -> dict[str, Any]:
    """``python -m application.serve`` on a free loopback port, one ``/predict``, stop.

    Raises:
        RunError: It did not become ready in time or did not answer 200.
    """
    import httpx

    from application.serve import wait_until_ready
    from stacks.emulators import LOOPBACK, free_port

    port = free_port()
    command = [sys.executable, "-m", "application.serve", "--host", LOOPBACK, "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://{LOOPBACK}:{port}"
    try:
        if not wait_until_ready(url, SERVE_TIMEOUT_S, lambda: process.poll() is None):
            tail = log.read_text(errors="replace")[-2000:]
            raise RunError(f"bentoml serve did not become ready ({log}):\n{tail}")
        answer = httpx.post(
            f"{url}/predict", files={"image": (image.name, image.read_bytes())}, timeout=60
        )
        if answer.status_code != 200:
            raise RunError(f"/predict answered {answer.status_code}: {answer.text[:500]}")
        return answer.json()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 15)
            process.wait(timeout=30)


def _first_image(data: str) -> Path:
    root = PROJECT_ROOT / data if not Path(data).is_absolute() else Path(data)
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in {".jpeg", ".jpg", ".png"}:
            return path
    return next(iter(sorted((PROJECT_ROOT / DEFAULT_DATA).rglob("*.jpeg"))))


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def rehearse(
    stack: str, config: Path, data: str | None, echo: Callable[[str], None]
) -> RehearsalOutcome:
    """Rehearses ``stack``'s training run on this machine; see the module.

    Args:
        stack: A cloud stack key (``sagemaker``, ``vertex``, or a hybrid).
        config: The run config (the stack's overlay is merged in, as for a real run).
        data: ``--data``: default the shipped sample (inside the code the steps download);
            a local folder is uploaded to the emulator's bucket first.
        echo: Progress printer.

    Returns:
        The outcome (also written to ``outputs/rehearsal/<stack>/rehearsal.json``).

    Raises:
        RunError: A precondition, a service, a step (with its log and command), the
            promotion or the serving check failed.
    """
    from stacks.registry import StackSpecError, load_stack_spec

    start = time.monotonic()
    try:
        probe = load_stack_spec(stack, placeholders=True)
    except StackSpecError as exc:
        raise RunError(str(exc)) from None
    if not probe.is_remote:
        raise RunError(f"--rehearse is for cloud stacks; '{stack}' runs here already.")
    storage = "gcs" if any(c.flavor == "gcp" for c in probe.components) else "s3"
    parent = _parent_image(echo)
    out_dir = PROJECT_ROOT / "outputs" / "rehearsal" / stack
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    root = Path(tempfile.mkdtemp(prefix="xray-rehearsal-"))
    isolate_zenml(root)
    os.environ["BENTOML_HOME"] = str(root / "bentoml")  # serving must read the emulator
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    outcome = RehearsalOutcome(stack=stack, out_dir=str(out_dir.relative_to(PROJECT_ROOT)))
    # A SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C: the services are stopped.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        _rehearse(stack, config, data, storage, parent, root, out_dir, outcome, echo)
    finally:
        signal.signal(signal.SIGTERM, previous)
        outcome.seconds["total"] = time.monotonic() - start
        (out_dir / "rehearsal.json").write_text(json.dumps(asdict(outcome), indent=2) + "\n")
        shutil.rmtree(root, ignore_errors=True)
    return outcome


def _rehearse(
    stack: str,
    config: Path,
    data: str | None,
    storage: str,
    parent: str,
    root: Path,
    out_dir: Path,
    outcome: RehearsalOutcome,
    echo: Callable[[str], None],
) -> None:
    from application.train import train
    from stacks.emulators import MLFLOW_USER, ServiceError, cloud_services
    from stacks.registry import load_stack_spec, register_stack
    from stacks.rehearsal import ContainerRunner, ImageBuild, RehearsalError, rehearsed
    from stacks.upstream import apply_upstream_fixes

    echo(f"Starting the ZenML server, the {storage.upper()} emulator and MLflow on 127.0.0.1 ...")
    try:
        with cloud_services(storage, root / "services") as services:
            os.environ.update(services.env)
            values = {
                **REHEARSAL_VALUES,
                "XRAY_MLFLOW_TRACKING_URI": services.mlflow_uri,
                "XRAY_PARENT_IMAGE": parent,
            }
            spec = load_stack_spec(stack, env={**os.environ, **values})
            ensure_zenml_repository()
            from zenml.client import Client

            for name in spec.secret_references():
                Client().create_secret(
                    name, values={"username": MLFLOW_USER, "password": services.mlflow_password}
                )
            apply_upstream_fixes(spec)
            register_stack(spec)
            data_dir = _stage_data(data, services.bucket_uri)
            runner = ContainerRunner(out_dir, role_env=services.env)
            builds: list[ImageBuild] = []
            echo(
                f"Running the '{stack}' definition, its steps in containers (data: {data_dir}) ..."
            )
            started = time.monotonic()
            failure = ""
            try:
                with rehearsed(out_dir, runner, REHEARSAL_VALUES["XRAY_AWS_REGION"], builds):
                    result = train(spec, config, [data_dir], no_cache=True)
            except (RehearsalError, RunError) as exc:
                failed = [run.failure() for run in runner.runs if run.returncode not in (0, None)]
                failure = "\n".join([str(exc), *[f for f in failed if f not in str(exc)]])
                result = None
            outcome.seconds["pipeline"] = time.monotonic() - started
            outcome.images = [asdict(build) for build in builds]
            outcome.containers = [
                {"name": r.name, "image": r.image, "seconds": round(r.seconds, 1),
                 "returncode": r.returncode, "log": str(r.log.relative_to(PROJECT_ROOT))}
                for r in runner.runs
            ]  # fmt: skip
            if failure:
                raise RunError(failure)
            if result is None:
                raise RunError("The run returned before it ended; the rehearsal needs it to end.")
            outcome.run_name, outcome.status = result.run_name, result.status
            version = Client().get_model_version(MODEL_NAME, "production")
            if result.release is None or str(version.number) != str(result.release.model_version):
                reasons = "; ".join(result.promotion.reasons) if result.promotion else "no decision"
                raise RunError(f"The rehearsed run did not promote its model version: {reasons}")
            outcome.model_version, outcome.stage = str(version.number), "production"
            outcome.artifact_uri = version.get_artifact(BENTO_ARCHIVE_ARTIFACT).uri
            if not outcome.artifact_uri.startswith(services.bucket_uri):
                raise RunError(
                    f"The Bento archive is at {outcome.artifact_uri}, not on the emulator."
                )
            echo("Serving the production version with bentoml serve ...")
            outcome.prediction = _serve_and_predict(
                _first_image(data_dir if not is_uri(data_dir) else DEFAULT_DATA),
                out_dir / "serve.log",
            )
    except ServiceError as exc:  # a service did not start; the started ones are stopped
        raise RunError(str(exc)) from None
