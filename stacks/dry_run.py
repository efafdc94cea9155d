"""Dry run: compile a pipeline for a cloud stack without touching the cloud.

ZenML has no dry-run flag, so this runs ZenML's real submission path (snapshot, Docker
build configuration, the orchestrator's own compiler) against an isolated, throw-away
ZenML store and stops it at the points where it would reach out:

- the remote-server check and the image build: the Dockerfile ZenML generated is written
  out and the image name it would push is returned instead of building;
- SageMaker: ``Pipeline.create`` writes ``Pipeline.definition()`` instead of calling the
  API, and ``Session.default_bucket`` returns the configured bucket instead of probing S3;
- Vertex AI: ``VertexOrchestrator._upload_and_run_pipeline`` keeps the KFP JSON the
  orchestrator has just compiled instead of uploading it;
- hybrid stacks (local orchestrator + step operator): ``LocalOrchestrator.submit_pipeline``
  runs no step; the compiled snapshot (every step's configuration and the step
  operator's resolved settings) is written instead. The step operator's own job request
  is only built when the step runs, from the step run itself, so it is not part of a
  dry run.

Every interception is in :func:`_intercepted`, against the pinned ZenML/SageMaker SDK
versions; ``tests/integration/test_cloud_cli.py`` fails if an upgrade moves one of them.
"""

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stacks.interception import patched
from stacks.registry import StackSpec

logger = logging.getLogger(__name__)


class DryRunComplete(Exception):  # noqa: N818 - control flow, not an error
    """Raised inside ZenML's submission once the definition has been captured."""


@dataclass
class DryRunResult:
    """What a dry run produced.

    Attributes:
        stack: The stack key.
        definition: The written definition: SageMaker pipeline definition JSON, KFP
            pipeline spec JSON, or (hybrid stacks) the step-operator job requests.
        kind: ``sagemaker-pipeline``, ``vertex-pipeline`` or ``step-operator-jobs``.
        steps: Per step: where it runs (instance/machine type, accelerator, spot).
        images: Image names ZenML would build and push, with their Dockerfiles.
        artifact_store: Where artifacts would go.
        warnings: Unset account values replaced by placeholders, and other caveats.
        pipeline: The compiled pipeline.
        schedule: The ZenML schedule it would be submitted with (name, cron), if any.
    """

    stack: str
    definition: Path
    kind: str
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    artifact_store: str = ""
    warnings: list[str] = field(default_factory=list)
    pipeline: str = "training"
    schedule: dict[str, Any] | None = None

    def summary(self) -> str:
        """A short human-readable summary of what would be submitted."""
        lines = [
            f"Dry run of the {self.pipeline} pipeline on stack '{self.stack}': nothing was "
            "submitted."
        ]
        lines.append(f"  definition ({self.kind}): {self.definition}")
        if self.schedule:
            lines.append(
                f"  schedule: cron '{self.schedule['cron_expression']}' (ZenML schedule "
                f"{self.schedule['name']}; the orchestrator starts each run)"
            )
        for image, dockerfile in self.images.items():
            lines.append(f"  image: {image}  (Dockerfile: {dockerfile})")
        lines.append(f"  artifacts: {self.artifact_store}")
        width = max((len(s) for s in self.steps), default=0)
        for step, where in self.steps.items():
            lines.append(f"  step {step:<{width}}  {_describe(where)}")
        for group in self.parallel_groups():
            lines.append(f"  in parallel ({len(group)} jobs at once): {', '.join(group)}")
        for warning in self.warnings:
            lines.append(f"  WARNING: {warning}")
        return "\n".join(lines)

    def parallel_groups(self) -> list[list[str]]:
        """Steps the orchestrator starts at once: two or more with the same upstream
        steps (the inference pipeline's shards). Empty where the definition carries no
        dependencies (hybrid stacks run steps one at a time)."""
        if not any("after" in where for where in self.steps.values()):
            return []
        groups: dict[tuple[str, ...], list[str]] = {}
        for step, where in self.steps.items():
            groups.setdefault(tuple(sorted(where.get("after") or [])), []).append(step)
        return [sorted(g) for g in groups.values() if len(g) > 1]


def _describe(where: dict[str, Any]) -> str:
    parts = [str(where.get("runs_on", "?"))]
    if where.get("accelerator"):
        parts.append(f"{int(where.get('accelerator_count') or 1)} x {where['accelerator']}")
    if where.get("spot"):
        parts.append("spot/preemptible, resumes from checkpoints")
    return ", ".join(parts)


class _NoEngine:
    """Stands in for Docker when ZenML asks whether a parent image is local."""

    def is_image_local(self, image: str) -> bool:
        return False


@contextlib.contextmanager
def _intercepted(out_dir: Path, captured: dict[str, Any]) -> Iterator[None]:
    """Patches the few calls that would build images or reach a cloud API."""
    from sagemaker.session import Session
    from sagemaker.workflow.pipeline import Pipeline
    from zenml.image_builders.local_image_builder import LocalImageBuilder
    from zenml.integrations.gcp.orchestrators.vertex_orchestrator import VertexOrchestrator
    from zenml.orchestrators.local.local_orchestrator import LocalOrchestrator
    from zenml.stack.stack import Stack
    from zenml.utils import code_utils, pipeline_docker_image_builder

    def prepare_pipeline_submission(self: Any, snapshot: Any) -> None:
        self.validate(fail_if_secrets_missing=True)  # everything but the server check
        if snapshot.schedule is not None:
            captured["schedule"] = {
                "name": snapshot.schedule.name,
                "cron_expression": snapshot.schedule.cron_expression,
            }

    def build(self: Any, image_name: str, build_context: Any, **_: Any) -> str:
        name = image_name.rsplit("/", 1)[-1].replace(":", "_")
        dockerfile = out_dir / f"{name}.Dockerfile"
        for destination, content in build_context.get_extra_files().items():
            if destination == "Dockerfile":
                dockerfile.write_text(content)
        files = build_context.get_files()
        (out_dir / f"{name}.context.txt").write_text("\n".join(sorted(files)) + "\n")
        captured.setdefault("images", {})[image_name] = str(dockerfile)
        captured.setdefault("context_files", set()).update(files)
        return image_name

    def upload_code(code_archive: Any) -> str:
        from zenml.client import Client

        files = code_archive.get_files()
        (out_dir / "code-archive.txt").write_text("\n".join(sorted(files)) + "\n")
        captured.setdefault("context_files", set()).update(files)
        path = f"{Client().active_stack.artifact_store.path}/code_uploads/<hash>.tar.gz"
        captured["code_upload"] = path
        return path

    def create(self: Any, role_arn: str | None = None, **_: Any) -> dict[str, str]:
        path = out_dir / "sagemaker_pipeline.json"
        path.write_text(json.dumps(json.loads(self.definition()), indent=2))
        captured.update(definition=path, kind="sagemaker-pipeline", role_arn=role_arn)
        raise DryRunComplete

    def default_bucket(self: Any) -> str:
        return self._default_bucket_name_override or "unset-default-bucket"

    def run_locally(self: Any, snapshot: Any, stack: Any, **_: Any) -> None:
        path = out_dir / "snapshot_steps.json"
        steps = {}
        built = snapshot.build.images if snapshot.build else {}
        images = {key: item.image for key, item in built.items()}
        for name, step in snapshot.step_configurations.items():
            operator = stack.step_operator if step.config.step_operator else None
            settings = operator.get_settings(step).model_dump(mode="json") if operator else {}
            steps[name] = {
                "step_operator": step.config.step_operator,
                "step_operator_flavor": operator.flavor if operator else None,
                "step_operator_settings": settings,
                "image": next((i for k, i in images.items() if k.startswith(name)), None),
                "upstream_steps": step.spec.upstream_steps,
            }
        path.write_text(json.dumps({"snapshot_id": str(snapshot.id), "steps": steps}, indent=2))
        captured.update(definition=path, kind="step-operator-jobs")
        raise DryRunComplete

    def upload_and_run(self: Any, pipeline_file_path: str, **_: Any) -> None:
        path = out_dir / "vertex_pipeline.json"
        shutil.copyfile(pipeline_file_path, path)
        captured.update(definition=path, kind="vertex-pipeline")
        raise DryRunComplete

    patches = [
        (Stack, "prepare_pipeline_submission", prepare_pipeline_submission),
        (LocalImageBuilder, "build", build),
        (code_utils, "upload_code_if_necessary", upload_code),
        (pipeline_docker_image_builder, "get_container_engine", _NoEngine),
        (Pipeline, "create", create),
        (Session, "default_bucket", default_bucket),
        (VertexOrchestrator, "_upload_and_run_pipeline", upload_and_run),
        (LocalOrchestrator, "submit_pipeline", run_locally),
    ]
    with patched(patches, "stacks/dry_run.py"):
        yield


def _stand_in_production(model_name: str) -> None:
    """A ``production`` version in the throw-away store: the inference and monitoring
    pipelines' model is resolved when they are compiled."""
    from zenml.client import Client
    from zenml.enums import ModelStages

    client = Client()
    try:
        client.get_model_version(model_name, ModelStages.PRODUCTION)
    except KeyError:
        with contextlib.suppress(Exception):
            client.create_model(model_name)
        version = client.create_model_version(model_name, name="dry-run")
        version.set_stage(ModelStages.PRODUCTION, force=True)


def dry_run(
    spec: StackSpec,
    config_path: Path,
    data_dir: str,
    listing: str,
    out_dir: Path,
    pipeline_name: str = "training",
    arguments: dict[str, Any] | None = None,
) -> DryRunResult:
    """Compiles a pipeline (training, inference, or monitoring with the stack's
    schedule) for ``spec`` and writes what would be submitted.

    Call it with ZenML pointed at a throw-away store (``run.py --dry-run`` does): the
    stack is registered there with whatever values (or placeholders) ``spec`` carries.

    Args:
        spec: The stack, usually loaded with ``placeholders=True``.
        config_path: The run config with the stack's overlay merged in.
        data_dir: What the load step will read.
        listing: The data listing version passed to the load step.
        out_dir: Where to write the definition, Dockerfiles and context listings.
        pipeline_name: ``training`` (on ``data_dir``), ``inference`` (on ``data_dir``)
            or ``monitoring`` (the model of these two is a stand-in production version
            of the throw-away store).
        arguments: More pipeline arguments (the inference pipeline's shards).

    Returns:
        The definition's path and a summary of steps, images and placeholders.

    Raises:
        RuntimeError: If ZenML finished without reaching an intercepted submission
            (a ZenML or SDK upgrade moved the submission path).
    """
    from zenml.client import Client

    from pipelines.inference import inference_pipeline
    from pipelines.monitoring import monitoring_pipeline
    from pipelines.training import training_pipeline
    from stacks.registry import register_stack
    from xray.logic.constants import MODEL_NAME

    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")  # never probe for credentials
    os.environ["ZENML_DISABLE_PIPELINE_LOGS_STORAGE"] = "true"  # client logs go nowhere
    client = Client()
    for name, keys in spec.secret_references().items():
        try:
            client.get_secret(name, allow_partial_name_match=False)
        except KeyError:
            client.create_secret(name, values={key: f"UNSET-{name}.{key}" for key in keys})
            spec.placeholders[f"ZenML secret {name}"] = f"UNSET-{name}.*"
    register_stack(spec)
    captured: dict[str, Any] = {}
    chosen = {
        "training": training_pipeline,
        "inference": inference_pipeline,
        "monitoring": monitoring_pipeline,
    }[pipeline_name]
    pipeline = chosen.with_options(config_path=str(config_path), enable_cache=False)
    with _intercepted(out_dir, captured), contextlib.suppress(DryRunComplete):
        if pipeline_name == "training":
            pipeline(data_dir=data_dir, listing=listing)
        elif pipeline_name == "inference":
            _stand_in_production(MODEL_NAME)
            pipeline(data_dir=data_dir, **(arguments or {}))
        else:
            _stand_in_production(MODEL_NAME)
            pipeline()
    if "definition" not in captured:
        raise RuntimeError(
            "The dry run reached no intercepted submission call; the pinned ZenML or "
            "cloud SDK version has changed (see stacks/dry_run.py)."
        )
    result = DryRunResult(
        stack=spec.key,
        definition=captured["definition"],
        kind=captured["kind"],
        images=captured.get("images", {}),
        artifact_store=Client().active_stack.artifact_store.path,
        pipeline=pipeline_name,
        schedule=captured.get("schedule"),
    )
    definition = json.loads(result.definition.read_text())
    if result.kind == "sagemaker-pipeline":
        result.steps = sagemaker_steps(definition)
    elif result.kind == "vertex-pipeline":
        result.steps = vertex_steps(definition)
    else:
        result.steps = step_operator_steps(definition)
    result.warnings = [
        f"{name} is not set; the placeholder {value!r} stands in for it."
        for name, value in spec.placeholders.items()
    ]
    context = captured.get("context_files", set())
    if (
        pipeline_name == "training"
        and context
        and not any(f.startswith("data/sample/") for f in context)
    ):
        result.warnings.append("data/sample is not in the image (check .dockerignore).")
    return result


def sagemaker_steps(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Where each step of a SageMaker pipeline definition runs."""
    steps = {}
    for step in definition.get("Steps", []):
        args = step.get("Arguments", {})
        resources = args.get("ResourceConfig") or args.get("ProcessingResources", {}).get(
            "ClusterConfig", {}
        )
        image = args.get("AlgorithmSpecification", {}).get("TrainingImage") or args.get(
            "AppSpecification", {}
        ).get("ImageUri")
        steps[step["Name"]] = {
            "runs_on": resources.get("InstanceType"),
            "spot": bool(args.get("EnableManagedSpotTraining")),
            "image": image,
            "after": step.get("DependsOn", []),
        }
    return steps


def vertex_steps(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Where each task of a Vertex (KFP) pipeline spec runs.

    Tasks converted to Vertex custom training jobs carry ``worker_pool_specs`` (machine,
    accelerator) and ``strategy`` as constant inputs; plain container tasks run on
    Vertex Pipelines' default machine unless they request resources.
    """
    steps = {}
    executors = definition.get("deploymentSpec", {}).get("executors", {})
    components = definition.get("components", {})
    tasks = definition.get("root", {}).get("dag", {}).get("tasks", {})
    names = {key: task.get("taskInfo", {}).get("name", key) for key, task in tasks.items()}
    for name, task in tasks.items():
        display = names[name]
        after = [names.get(t, t) for t in task.get("dependentTasks") or []]
        params = task.get("inputs", {}).get("parameters", {})
        component = components.get(task.get("componentRef", {}).get("name", ""), {})
        defaults = component.get("inputDefinitions", {}).get("parameters", {})

        def constant(key: str, params: dict[str, Any] = params, defaults: Any = defaults) -> Any:
            value = params.get(key, {}).get("runtimeValue", {}).get("constant")
            return value if value is not None else defaults.get(key, {}).get("defaultValue")

        pools = constant("worker_pool_specs")
        if pools:
            machine = pools[0].get("machine_spec", {})
            steps[display] = {
                "runs_on": f"custom job on {machine.get('machine_type')}",
                "accelerator": machine.get("accelerator_type"),
                "accelerator_count": machine.get("accelerator_count"),
                "spot": constant("strategy") == "SPOT",
                "image": pools[0].get("container_spec", {}).get("image_uri"),
                "after": after,
            }
            continue
        executor = component.get("executorLabel", "")
        container = executors.get(executor, {}).get("container", {})
        accelerator = container.get("resources", {}).get("accelerator", {})
        steps[display] = {
            "runs_on": "Vertex Pipelines default machine",
            "accelerator": accelerator.get("type") or accelerator.get("resourceType"),
            "accelerator_count": accelerator.get("count") or accelerator.get("resourceCount"),
            "spot": False,
            "image": container.get("image"),
            "after": after,
        }
    return steps


def step_operator_steps(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Where each step of a hybrid stack runs: this machine, or the step operator's job."""
    steps = {}
    for name, step in definition.get("steps", {}).items():
        settings = step.get("step_operator_settings") or {}
        flavor = step.get("step_operator_flavor")
        if not flavor:
            steps[name] = {"runs_on": "this machine (local orchestrator)"}
        elif flavor == "sagemaker":
            steps[name] = {
                "runs_on": f"SageMaker training job on {settings.get('instance_type')}",
                "spot": bool(settings.get("estimator_args", {}).get("use_spot_instances")),
                "image": step.get("image"),
            }
        else:
            steps[name] = {
                "runs_on": f"Vertex AI custom job on {settings.get('machine_type')}",
                "accelerator": settings.get("accelerator_type"),
                "accelerator_count": settings.get("accelerator_count"),
                "image": step.get("image"),
            }
    return steps
