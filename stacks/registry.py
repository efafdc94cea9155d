"""Reads ``stacks/*.yaml`` and registers the stack with ZenML, idempotently.

A stack file names the stack and its components (type -> name, flavor, configuration),
and may carry an infrastructure overlay for the run config: pipeline ``settings`` (e.g.
Docker) and per-step ``settings``/``step_operator`` (e.g. the GPU instance of
``train_model``). Values may reference variables as ``${NAME}`` (required) or
``${NAME:-default}``. They are read from the environment, or from ``stacks/<key>.env``
(``NAME=value`` lines, git-ignored) where the environment does not set them; a missing
required variable is an error that names it, so account values are never committed.
A dry run fills missing variables with visible placeholders instead (see
:data:`PLACEHOLDERS`) and lists them.
"""

import copy
import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STACKS_DIR = Path(__file__).resolve().parent
#: Keys a stack file may contribute to the run config: infrastructure only.
OVERLAY_STEP_KEYS = {"settings", "step_operator", "retry"}
SCHEDULE_KEYS = {"cron_expression", "start_time", "end_time", "name"}
"""What a stack file's ``schedules.<pipeline>`` may set (a ZenML ``Schedule``)."""
#: What a dry run puts where an account value is unset: well-formed (so SDK validation
#: and ARN parsing pass offline) and plainly not real.
PLACEHOLDERS = {
    "XRAY_AWS_REGION": "us-east-1",
    "XRAY_S3_BUCKET": "unset-xray-s3-bucket",
    "XRAY_SAGEMAKER_ROLE_ARN": "arn:aws:iam::000000000000:role/UNSET-XRAY_SAGEMAKER_ROLE_ARN",
    "XRAY_ECR_REGISTRY": "000000000000.dkr.ecr.us-east-1.amazonaws.com",
    "XRAY_MLFLOW_TRACKING_URI": "https://unset-xray-mlflow-tracking-uri.invalid",
    "XRAY_GCP_PROJECT": "unset-xray-gcp-project",
    "XRAY_GCP_REGION": "us-central1",
    "XRAY_GCS_BUCKET": "unset-xray-gcs-bucket",
    "XRAY_ARTIFACT_REGISTRY": "us-central1-docker.pkg.dev/unset-xray-gcp-project/unset",
    "XRAY_VERTEX_SERVICE_ACCOUNT": "unset@unset-xray-gcp-project.iam.gserviceaccount.com",
}
_SECRET = re.compile(r"\{\{\s*([A-Za-z0-9_\-]+)\.([A-Za-z0-9_\-]+)\s*\}\}")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class StackSpecError(ValueError):
    """A stack file is invalid or needs environment variables that are not set."""


@dataclass
class ComponentSpec:
    """One stack component as written in a stack file."""

    type: str
    name: str
    flavor: str
    configuration: dict[str, Any] = field(default_factory=dict)


@dataclass
class StackSpec:
    """A stack as written in ``stacks/<key>.yaml``."""

    key: str
    name: str
    description: str
    components: list[ComponentSpec]
    overlay: dict[str, Any] = field(default_factory=dict)
    placeholders: dict[str, str] = field(default_factory=dict)

    def component(self, ctype: str) -> ComponentSpec | None:
        """The component of type ``ctype`` (e.g. ``"orchestrator"``), if the stack has one."""
        return next((c for c in self.components if c.type == ctype), None)

    def secret_references(self) -> dict[str, set[str]]:
        """ZenML secrets the components reference as ``{{name.key}}``: name -> keys."""
        found: dict[str, set[str]] = {}
        for component in self.components:
            for value in component.configuration.values():
                for name, key in _SECRET.findall(str(value)):
                    found.setdefault(name, set()).add(key)
        return found

    @property
    def is_remote(self) -> bool:
        """Whether any step runs off this machine (remote orchestrator or step operator)."""
        orchestrator = self.component("orchestrator")
        return self.component("step_operator") is not None or (
            orchestrator is not None and orchestrator.flavor != "local"
        )

    @property
    def parallel_steps(self) -> bool:
        """Whether the orchestrator runs independent steps at once (a cloud pipeline
        service; the local orchestrator runs them one after another)."""
        orchestrator = self.component("orchestrator")
        return orchestrator is not None and orchestrator.flavor != "local"


def available_stacks() -> list[str]:
    """The stack keys that ``--stack`` accepts: the names of ``stacks/*.yaml``."""
    return sorted(p.stem for p in STACKS_DIR.glob("*.yaml"))


def spec_for_stack(name: str) -> StackSpec | None:
    """The stack file that registers the stack ``name`` (placeholders for unset account
    values: only its run-config overlay is used), or None when no file does."""
    for key in available_stacks():
        try:
            spec = load_stack_spec(key, placeholders=True)
        except StackSpecError:
            continue
        if spec.name == name:
            return spec
    return None


def stack_values_file(key: str) -> Path:
    """``stacks/<key>.env``: the user's own account values for a stack (git-ignored)."""
    return STACKS_DIR / f"{key}.env"


def read_values_file(path: Path) -> dict[str, str]:
    """Reads ``NAME=value`` lines (``export`` prefixes, quotes and ``#`` comments allowed).

    Raises:
        StackSpecError: If a line is not ``NAME=value``; the line number is named.
    """
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name.strip()):
            raise StackSpecError(f"{path}:{number}: expected NAME=value, got {line!r}.")
        values[name.strip()] = value.strip().strip("'\"")
    return values


def _substitute(value: Any, missing: set[str], env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, missing, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, missing, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if env.get(name):
            return env[name]
        if default is not None:
            return default
        missing.add(name)
        return match.group(0)

    return _VARIABLE.sub(replace, value)


def _check_overlay(path: Path, raw: dict[str, Any]) -> dict[str, Any]:
    overlay: dict[str, Any] = {}
    if raw.get("settings") is not None:
        if not isinstance(raw["settings"], dict):
            raise StackSpecError(f"{path}: 'settings' must be a mapping.")
        overlay["settings"] = raw["settings"]
    steps = raw.get("steps")
    if steps is not None:
        if not isinstance(steps, dict):
            raise StackSpecError(f"{path}: 'steps' must map step names to settings.")
        for name, body in steps.items():
            extra = set(body or {}) - OVERLAY_STEP_KEYS
            if not isinstance(body, dict) or extra:
                raise StackSpecError(
                    f"{path}: steps.{name} may only set {', '.join(sorted(OVERLAY_STEP_KEYS))}"
                    f" (infrastructure); {', '.join(sorted(map(str, extra))) or 'its body'} "
                    f"belongs in configs/."
                )
        overlay["steps"] = steps
    schedules = raw.get("schedules")
    if schedules is not None:
        from xray.logic.settings import PIPELINE_STEPS

        if not isinstance(schedules, dict):
            raise StackSpecError(f"{path}: 'schedules' must map pipeline names to schedules.")
        for name, body in schedules.items():
            extra = set(body or {}) - SCHEDULE_KEYS
            if name not in PIPELINE_STEPS or not isinstance(body, dict) or extra:
                raise StackSpecError(
                    f"{path}: schedules.{name}: a pipeline ({', '.join(PIPELINE_STEPS)}) "
                    f"with {', '.join(sorted(SCHEDULE_KEYS))} only"
                )
        overlay["schedules"] = schedules
    return overlay


def load_stack_spec(
    key: str, env: dict[str, str] | None = None, placeholders: bool = False
) -> StackSpec:
    """Reads ``stacks/<key>.yaml`` and fills in ``${VARIABLES}``.

    Args:
        key: The stack file's name without ``.yaml``.
        env: Variables to use (default: ``os.environ`` over ``stacks/<key>.env``).
        placeholders: Fill unset required variables with :data:`PLACEHOLDERS` (or
            ``UNSET-<NAME>``) instead of failing; they are listed in ``spec.placeholders``.

    Returns:
        The stack specification, with its run-config overlay.

    Raises:
        StackSpecError: If the file is missing or malformed, or required variables are
            unset (all of them are named) and ``placeholders`` is false.
    """
    path = STACKS_DIR / f"{key}.yaml"
    if not path.is_file():
        raise StackSpecError(
            f"No stack file {path}. Available stacks: {', '.join(available_stacks())}."
        )
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw.get("components"), dict) or not raw.get("name"):
        raise StackSpecError(f"{path} needs a 'name' and a 'components' mapping.")
    if env is None:
        values_file = stack_values_file(key)
        env = read_values_file(values_file) if values_file.is_file() else {}
        env.update({k: v for k, v in os.environ.items() if v})
    missing: set[str] = set()
    _substitute(raw, missing, env)
    filled: dict[str, str] = {}
    if missing and placeholders:
        filled = {name: PLACEHOLDERS.get(name, f"UNSET-{name}") for name in sorted(missing)}
        env = {**env, **filled}
        missing = set()
    if missing:
        names = ", ".join(sorted(missing))
        raise StackSpecError(
            f"The '{key}' stack needs these variables: {names}. Export them (e.g. "
            f"`export {sorted(missing)[0]}=...`) or write them as NAME=value lines in "
            f"{stack_values_file(key)} (git-ignored; start from "
            f"stacks/{key.split('-')[0]}.env.example). The README's stack section says "
            f"what each one is; `python run.py --stack {key} --dry-run` previews the stack "
            f"without them."
        )
    raw = _substitute(raw, missing, env)
    components = []
    for ctype, body in raw["components"].items():
        if not isinstance(body, dict) or not body.get("name") or not body.get("flavor"):
            raise StackSpecError(f"{path}: component '{ctype}' needs a 'name' and a 'flavor'.")
        config = body.get("configuration") or {}
        components.append(ComponentSpec(ctype, body["name"], body["flavor"], config))
    return StackSpec(
        key, raw["name"], raw.get("description", ""), components, _check_overlay(path, raw), filled
    )


def _same_configuration(existing: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return all(existing.get(k) == v for k, v in wanted.items())


def register_stack(spec: StackSpec, activate: bool = True) -> str:
    """Registers (or updates) the stack's components and the stack, then activates it.

    Re-running with the same file changes nothing; a changed configuration updates the
    component in place; a component name already used with another flavor is an error.

    Args:
        spec: The stack to register.
        activate: Make it the active stack.

    Returns:
        The stack's name.

    Raises:
        StackSpecError: If a component name is taken by a component of another flavor.
    """
    from zenml.client import Client
    from zenml.enums import StackComponentType

    client = Client()
    wanted: dict[StackComponentType, str] = {}
    for component in spec.components:
        ctype = StackComponentType(component.type)
        try:
            existing = client.get_stack_component(
                ctype, component.name, allow_name_prefix_match=False
            )
        except KeyError:
            existing = None
        if existing is None:
            client.create_stack_component(
                component.name, component.flavor, ctype, component.configuration
            )
        elif existing.flavor_name != component.flavor:
            raise StackSpecError(
                f"A {component.type} named '{component.name}' already exists with flavor "
                f"'{existing.flavor_name}', not '{component.flavor}'. Delete it with "
                f"`zenml {component.type.replace('_', '-')} delete {component.name}` or "
                f"rename the component in stacks/{spec.key}.yaml."
            )
        elif not _same_configuration(existing.configuration, component.configuration):
            client.update_stack_component(
                component.name, ctype, configuration=component.configuration
            )
        wanted[ctype] = component.name

    try:
        stack = client.get_stack(spec.name, allow_name_prefix_match=False)
    except KeyError:
        stack = None
    if stack is None:
        client.create_stack(spec.name, components=wanted)
    else:
        current = {ctype: comps[0].name for ctype, comps in stack.components.items() if comps}
        if current != wanted:
            removed = {ctype: [] for ctype in current if ctype not in wanted}
            client.update_stack(spec.name, component_updates={**wanted, **removed})
    if activate:
        client.activate_stack(spec.name)
    return spec.name


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def merge_run_config(
    config_path: Path,
    spec: StackSpec | None,
    out_dir: Path,
    overrides: dict[str, Any] | None = None,
    pipeline_steps: Collection[str] | None = None,
    pipeline: str | None = None,
) -> Path:
    """Writes the run config with the stack's infrastructure overlay merged in.

    The run config (hyperparameters, gates) stays the one file in ``configs/``; the stack
    adds only settings such as Docker, instance types and accelerators, so one config
    serves every stack.

    Args:
        config_path: The run config YAML.
        spec: The stack whose overlay to merge (None: a stack without a stack file,
            nothing to merge but ``overrides``).
        out_dir: Folder to write the merged file to.
        overrides: Values set last (command-line flags such as ``--on-drift``).
        pipeline_steps: The pipeline's step names; overlay settings of other steps
            (``train_model`` for the inference pipeline) are left out.
        pipeline: The pipeline's name: the stack's ``schedules.<pipeline>``, if any,
            becomes the run config's ``schedule`` (ZenML then schedules the run on the
            stack's orchestrator instead of running it once).

    Returns:
        ``config_path`` itself when there is nothing to merge, else the merged file.
    """
    overlay = copy.deepcopy(spec.overlay) if spec is not None else {}
    schedules = overlay.pop("schedules", {})
    if pipeline in schedules:
        overlay["schedule"] = schedules[pipeline]
    if pipeline_steps is not None and "steps" in overlay:
        overlay["steps"] = {k: v for k, v in overlay["steps"].items() if k in pipeline_steps}
    if not overlay and not overrides:
        return config_path
    run_config = yaml.safe_load(config_path.read_text()) or {}
    merged = _deep_merge(_deep_merge(run_config, overlay), overrides or {})
    out_dir.mkdir(parents=True, exist_ok=True)
    key = spec.key if spec is not None else "active-stack"
    path = out_dir / f"{config_path.stem}.{key}.yaml"
    overlay_note = f" + the infrastructure overlay of stacks/{key}.yaml" if spec else ""
    path.write_text(
        f"# {config_path.name}{overlay_note}"
        + (" + command-line options" if overrides else "")
        + "\n"
        + yaml.safe_dump(merged, sort_keys=False)
    )
    return path
