"""Rehearsal: run a cloud stack's compiled definition with every cloud step inside the
image ZenML built for it, started the way the cloud would start it, on this machine.

ZenML's real submission path runs unchanged (snapshot, image build with the stack's
Docker settings, code upload to the artifact store, the orchestrator's own compiler)
against a real ZenML server, artifact store and MLflow server on loopback
(:mod:`stacks.emulators`). Only the cloud's control plane is replaced, at the calls that
would reach it:

- SageMaker orchestrator: ``Pipeline.create`` keeps the pipeline definition and
  ``Pipeline.start`` executes it: each step's arguments are the ``CreateTrainingJob`` (or
  ``CreateProcessingJob``) request SageMaker would receive, run as a container in
  ``DependsOn`` order;
- Vertex orchestrator: ``_upload_and_run_pipeline`` executes the compiled KFP pipeline
  spec: each task's container (image, command, arguments, environment, KFP placeholders
  resolved) in ``dependentTasks`` order; a task compiled as a Vertex custom job runs its
  worker pool's container spec;
- step operators (hybrid stacks): the SageMaker ``create_training_job`` /
  ``describe_training_job`` calls and the Vertex ``create_custom_job`` /
  ``get_custom_job`` calls are answered by the same container runner;
- the image push (ECR, Artifact Registry): the built image stays on the local engine;
- Google's identity (Application Default Credentials): anonymous, for the configured
  project (AWS's is the emulator's keys in the environment);
- the "remote orchestrators need a remote ZenML server" check: the server is on loopback.

A container runs as ``docker run --rm --network host --env-file FILE IMAGE COMMAND``; the
env file holds the step's environment as the cloud would pass it plus what the cloud's
role would provide (the emulator's endpoint and keys). Every command is kept with its log,
so a failing step is reported with both.

Every interception is in :func:`rehearsed`, against the pinned ZenML/SDK versions;
``tests/unit/test_rehearsal.py`` fails if an upgrade moves one of them.
"""

import contextlib
import json
import re
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from stacks.interception import patched

ACCOUNT = "000000000000"
CUSTOM_JOB_LAUNCHER = "google_cloud_pipeline_components.container.v1.custom_job.launcher"
_KFP_PLACEHOLDER = re.compile(r"\{\{\$\.[^}]*\}\}")


class RehearsalError(RuntimeError):
    """The rehearsal could not run, or a step failed (with its log and command)."""


@dataclass
class ContainerRun:
    """One container started for a step.

    Attributes:
        name: The job or task name (as the cloud would show it).
        image: The image it ran.
        command: Entrypoint and arguments.
        env_file: The ``--env-file`` it was started with (mode 0600).
        log: Its combined output.
        seconds: Wall time.
        returncode: Its exit status.
    """

    name: str
    image: str
    command: list[str]
    env_file: Path
    log: Path
    seconds: float = 0.0
    returncode: int | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def docker_command(self) -> list[str]:
        """The exact command that started it (re-runnable as is)."""
        return [
            "docker", "run", "--rm", "--network", "host", "--env-file", str(self.env_file),
            self.image, *self.command,
        ]  # fmt: skip

    def failure(self, lines: int = 40) -> str:
        """What to print when it failed: the end of its log and the command."""
        tail = self.log.read_text(errors="replace").splitlines()[-lines:]
        return (
            f"Step container '{self.name}' exited with {self.returncode} after "
            f"{self.seconds:.0f} s. Last {len(tail)} lines of {self.log}:\n"
            + "\n".join(f"  | {line}" for line in tail)
            + f"\nStarted with:\n  {shlex.join(self.docker_command())}"
        )


@dataclass
class ContainerRunner:
    """Runs step containers one at a time, keeping each command, log and timing.

    Attributes:
        out_dir: Where env files and logs go (``<out_dir>/steps/``).
        role_env: What the cloud's identity provides inside a job (the emulator's
            endpoint and credentials), added to every container's environment.
        runs: Every container started, in order.
    """

    out_dir: Path
    role_env: dict[str, str]
    runs: list[ContainerRun] = field(default_factory=list)

    def run(self, name: str, image: str, command: list[str], env: dict[str, str]) -> ContainerRun:
        """Runs one container to its end."""
        folder = self.out_dir / "steps"
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{len(self.runs) + 1:02d}-{re.sub(r'[^A-Za-z0-9_.-]', '-', name)}"
        env_file = folder / f"{stem}.env"
        env_file.touch(mode=0o600)
        lines = []
        for key, value in {**env, **self.role_env}.items():
            if "\n" in str(value):
                raise RehearsalError(f"Environment variable {key} of {name} spans lines.")
            lines.append(f"{key}={value}")
        env_file.write_text("\n".join(lines) + "\n")
        run = ContainerRun(name, image, list(command), env_file, folder / f"{stem}.log")
        self.runs.append(run)
        start = time.monotonic()
        with run.log.open("wb") as log:
            done = subprocess.run(run.docker_command(), stdout=log, stderr=subprocess.STDOUT)
        run.seconds = time.monotonic() - start
        run.returncode = done.returncode
        return run


def _topological(nodes: dict[str, list[str]]) -> list[str]:
    """Names in an order where each comes after everything it depends on."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise RehearsalError(f"Dependency cycle: {' -> '.join((*path, name))}")
        if name in seen:
            return
        for upstream in nodes.get(name, []):
            visit(upstream, (*path, name))
        seen.add(name)
        order.append(name)

    for name in sorted(nodes):
        visit(name, ())
    return order


class LocalSageMakerClient:
    """The SageMaker API calls ZenML makes for jobs, answered by running the container.

    ``create_training_job`` / ``create_processing_job`` take the request SageMaker would
    receive and run its image with its entrypoint, arguments and environment, plus what a
    job's container gets from SageMaker (``TRAINING_JOB_NAME``, ``TRAINING_JOB_ARN``).
    """

    def __init__(self, runner: ContainerRunner, region: str) -> None:
        self.runner = runner
        self.region = region
        self.jobs: dict[str, ContainerRun] = {}

    def _arn(self, kind: str, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{ACCOUNT}:{kind}/{name.lower()}"

    def create_training_job(self, **request: Any) -> dict[str, str]:
        name = request["TrainingJobName"]
        spec = request["AlgorithmSpecification"]
        arn = self._arn("training-job", name)
        env = {**request.get("Environment", {}), "TRAINING_JOB_NAME": name, "TRAINING_JOB_ARN": arn}
        command = [*spec.get("ContainerEntrypoint", []), *spec.get("ContainerArguments", [])]
        self.jobs[name] = self.runner.run(name, spec["TrainingImage"], command, env)
        return {"TrainingJobArn": arn}

    def create_processing_job(self, **request: Any) -> dict[str, str]:
        name = request["ProcessingJobName"]
        spec = request["AppSpecification"]
        arn = self._arn("processing-job", name)
        command = [*spec.get("ContainerEntrypoint", []), *spec.get("ContainerArguments", [])]
        env = {**request.get("Environment", {}), "PROCESSING_JOB_ARN": arn}
        self.jobs[name] = self.runner.run(name, spec["ImageUri"], command, env)
        return {"ProcessingJobArn": arn}

    def describe_training_job(self, TrainingJobName: str) -> dict[str, Any]:  # noqa: N803
        run = self.jobs[TrainingJobName]
        status = "Completed" if run.ok else "Failed"
        answer = {"TrainingJobName": TrainingJobName, "TrainingJobStatus": status}
        if not run.ok:
            answer["FailureReason"] = f"exit {run.returncode}; log: {run.log}"
        return answer


def _resolve_sagemaker(value: Any, context: dict[str, Any]) -> Any:
    """Replaces ``{"Get": "Execution.X"}`` / ``{"Get": "Parameters.X"}`` expressions."""
    if isinstance(value, dict):
        if set(value) == {"Get"}:
            if value["Get"] not in context:
                raise RehearsalError(f"The definition uses {value['Get']}, which is not known.")
            return context[value["Get"]]
        return {key: _resolve_sagemaker(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve_sagemaker(item, context) for item in value]
    return value


def run_sagemaker_pipeline(
    definition: dict[str, Any], execution_arn: str, client: LocalSageMakerClient
) -> None:
    """Executes a SageMaker pipeline definition: each step's job, in dependency order.

    Raises:
        RehearsalError: A step's container failed (its log and command in the message),
            or the definition has a step type or expression SageMaker would resolve that
            this does not.
    """
    context: dict[str, Any] = {"Execution.PipelineExecutionArn": execution_arn}
    for parameter in definition.get("Parameters", []):
        context[f"Parameters.{parameter['Name']}"] = parameter.get("DefaultValue")
    steps = {step["Name"]: step for step in definition.get("Steps", [])}
    order = _topological({name: step.get("DependsOn", []) for name, step in steps.items()})
    execution = execution_arn.rsplit("/", 1)[-1]
    for name in order:
        step = steps[name]
        args = _resolve_sagemaker(step["Arguments"], context)
        job = f"{name}-{execution}"[:63].replace("_", "-")
        if step["Type"] == "Training":
            client.create_training_job(TrainingJobName=job, **args)
        elif step["Type"] == "Processing":
            client.create_processing_job(ProcessingJobName=job, **args)
        else:
            raise RehearsalError(f"Step {name} has type {step['Type']}, which is not rehearsed.")
        run = client.jobs[job]
        if not run.ok:
            raise RehearsalError(run.failure())


class LocalVertexJobs:
    """The Vertex AI job-service calls ZenML makes, answered by running the container of
    the custom job's first worker pool (with ``CLOUD_ML_JOB_ID`` set, as Vertex does)."""

    def __init__(self, runner: ContainerRunner) -> None:
        self.runner = runner
        self.jobs: dict[str, ContainerRun] = {}

    def create_custom_job(self, parent: str, custom_job: dict[str, Any]) -> SimpleNamespace:
        job_id = str(int(time.time() * 1000))
        name = f"{parent}/customJobs/{job_id}"
        pools = custom_job["job_spec"]["worker_pool_specs"]
        container = pools[0]["container_spec"]
        env = {item["name"]: item["value"] for item in container.get("env", [])}
        env["CLOUD_ML_JOB_ID"] = job_id
        command = [*container.get("command", []), *container.get("args", [])]
        display = custom_job.get("display_name") or job_id
        self.jobs[name] = self.runner.run(display, container["image_uri"], command, env)
        return SimpleNamespace(name=name)

    def get_custom_job(self, name: str) -> SimpleNamespace:
        from google.cloud.aiplatform_v1.types import JobState

        run = self.jobs[name]
        state = JobState.JOB_STATE_SUCCEEDED if run.ok else JobState.JOB_STATE_FAILED
        return SimpleNamespace(name=name, state=state)


def _fill_kfp(value: Any, placeholders: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, replacement in placeholders.items():
            value = value.replace(key, replacement)
        return value
    if isinstance(value, dict):
        return {key: _fill_kfp(item, placeholders) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill_kfp(item, placeholders) for item in value]
    return value


def _task_parameters(component: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    """A task's input parameters: the component's defaults, then the task's constants."""
    values = {
        key: spec.get("defaultValue")
        for key, spec in component.get("inputDefinitions", {}).get("parameters", {}).items()
    }
    for key, given in task.get("inputs", {}).get("parameters", {}).items():
        constant = given.get("runtimeValue", {}).get("constant")
        if constant is not None:
            values[key] = constant
    return values


def run_kfp_pipeline(
    spec: dict[str, Any], job_name: str, jobs: LocalVertexJobs, parent: str
) -> None:
    """Executes a compiled KFP pipeline spec as Vertex AI Pipelines would: each task's
    container in dependency order, or, for a task compiled as a Vertex custom job, that
    job's worker-pool container.

    Raises:
        RehearsalError: A task's container failed (its log and command in the message), or
            a task needs a KFP feature (artifact passing, a placeholder) not rehearsed.
    """
    placeholders = {
        "{{$.pipeline_job_name}}": job_name,
        "{{$.pipeline_job_uuid}}": job_name.rsplit("-", 1)[-1],
        "{{$.pipeline_google_cloud_project_id}}": parent.split("/")[1],
        "{{$.pipeline_google_cloud_location}}": parent.split("/")[3],
        "{{$.pipeline_persistent_resource_id}}": "",
    }
    spec = _fill_kfp(spec, placeholders)
    tasks = spec["root"]["dag"]["tasks"]
    executors = spec["deploymentSpec"]["executors"]
    order = _topological({name: task.get("dependentTasks", []) for name, task in tasks.items()})
    for name in order:
        task = tasks[name]
        component = spec["components"][task["componentRef"]["name"]]
        container = executors[component["executorLabel"]]["container"]
        command = [*container.get("command", []), *container.get("args", [])]
        if CUSTOM_JOB_LAUNCHER in command:
            params = _task_parameters(component, task)
            job = {"display_name": params.get("display_name") or name,
                   "job_spec": {"worker_pool_specs": params["worker_pool_specs"]}}  # fmt: skip
            created = jobs.create_custom_job(parent, job)
            run = jobs.jobs[created.name]
        else:
            leftover = _KFP_PLACEHOLDER.findall(json.dumps(container))
            if leftover:
                raise RehearsalError(f"Task {name} uses {leftover[0]}, which is not rehearsed.")
            env = {item["name"]: item["value"] for item in container.get("env", [])}
            run = jobs.runner.run(name, container["image"], command, env)
        if not run.ok:
            raise RehearsalError(run.failure())


@dataclass
class ImageBuild:
    """One image ZenML built: name, size (bytes) and build seconds."""

    image: str
    seconds: float
    size: int


@contextlib.contextmanager
def rehearsed(
    out_dir: Path, runner: ContainerRunner, region: str, builds: list[ImageBuild]
) -> Iterator[None]:
    """Patches the calls that would reach a cloud's control plane (see the module)."""
    import boto3
    from google.auth.credentials import AnonymousCredentials
    from sagemaker.session import Session
    from sagemaker.workflow.pipeline import Pipeline
    from zenml.container_engines.docker_engine import DockerContainerEngine
    from zenml.image_builders.local_image_builder import LocalImageBuilder
    from zenml.integrations.aws.step_operators.sagemaker_step_operator import (
        SagemakerStepOperator,
    )
    from zenml.integrations.gcp.google_credentials_mixin import GoogleCredentialsMixin
    from zenml.integrations.gcp.orchestrators.vertex_orchestrator import VertexOrchestrator
    from zenml.integrations.gcp.step_operators.vertex_step_operator import VertexStepOperator
    from zenml.stack.stack import Stack

    sagemaker = LocalSageMakerClient(runner, region)
    definitions: dict[str, dict[str, Any]] = {}  # what create() registered, by pipeline
    vertex = LocalVertexJobs(runner)
    original_build = LocalImageBuilder.build

    def prepare_pipeline_submission(self: Any, snapshot: Any) -> None:
        self.validate(fail_if_secrets_missing=True)  # the ZenML server is on loopback

    def build(self: Any, image_name: str, build_context: Any, **kwargs: Any) -> str:
        start = time.monotonic()
        result = original_build(self, image_name, build_context, **kwargs)
        size = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Size}}", image_name],
            capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
        builds.append(ImageBuild(image_name, time.monotonic() - start, int(size or 0)))
        return result

    def push_image(self: Any, image_name: str, container_registry: Any = None) -> str:
        return image_name  # stays on the local engine, where the step containers run

    def create(self: Any, role_arn: str | None = None, **_: Any) -> dict[str, str]:
        definitions[self.name] = json.loads(self.definition())
        (out_dir / "sagemaker_pipeline.json").write_text(
            json.dumps(definitions[self.name], indent=2)
        )
        return {"PipelineArn": f"arn:aws:sagemaker:{region}:{ACCOUNT}:pipeline/{self.name}"}

    def start(self: Any, **_: Any) -> SimpleNamespace:
        execution = uuid.uuid4().hex[:12]
        arn = f"arn:aws:sagemaker:{region}:{ACCOUNT}:pipeline/{self.name}/execution/{execution}"
        run_sagemaker_pipeline(definitions[self.name], arn, sagemaker)
        return SimpleNamespace(arn=arn, wait=lambda **_: None)

    def step_operator_session(self: Any) -> Session:
        return Session(
            boto_session=boto3.Session(region_name=region),
            sagemaker_client=sagemaker,
            default_bucket=self.config.bucket,
        )

    def google_identity(self: Any) -> tuple[Any, str]:
        return AnonymousCredentials(), getattr(self.config, "project", None) or "xray-rehearsal"

    def job_service_client(self: Any, *_: Any, **__: Any) -> LocalVertexJobs:
        return vertex

    def upload_and_run(
        self: Any, pipeline_name: str, pipeline_file_path: str, run_name: str, **_: Any
    ) -> None:
        spec = json.loads(Path(pipeline_file_path).read_text())
        (out_dir / "vertex_pipeline.json").write_text(json.dumps(spec, indent=2))
        project = getattr(self.config, "project", None) or "rehearsal"
        parent = f"projects/{project}/locations/{self.config.location}"
        run_kfp_pipeline(spec, run_name, vertex, parent)

    patches = [
        (Stack, "prepare_pipeline_submission", prepare_pipeline_submission),
        (LocalImageBuilder, "build", build),
        (DockerContainerEngine, "push_image", push_image),
        (Pipeline, "create", create),
        (Pipeline, "start", start),
        (SagemakerStepOperator, "_get_sagemaker_session", step_operator_session),
        (VertexStepOperator, "get_job_service_client", job_service_client),
        (GoogleCredentialsMixin, "_get_authentication", google_identity),
        (VertexOrchestrator, "_upload_and_run_pipeline", upload_and_run),
    ]
    with patched(patches, "stacks/rehearsal.py"):
        yield
