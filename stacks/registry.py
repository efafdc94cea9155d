"""Reads ``stacks/*.yaml`` and registers the stack with ZenML, idempotently.

A stack file names the stack and its components (type -> name, flavor, configuration).
Configuration values may reference environment variables as ``${NAME}`` (required) or
``${NAME:-default}``; a missing required variable is an error that names it, so that
account-specific values never have to be committed.
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STACKS_DIR = Path(__file__).resolve().parent
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


def available_stacks() -> list[str]:
    """The stack keys that ``--stack`` accepts: the names of ``stacks/*.yaml``."""
    return sorted(p.stem for p in STACKS_DIR.glob("*.yaml"))


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


def load_stack_spec(key: str, env: dict[str, str] | None = None) -> StackSpec:
    """Reads ``stacks/<key>.yaml`` and fills in ``${VARIABLES}`` from the environment.

    Args:
        key: The stack file's name without ``.yaml``.
        env: Environment to read variables from (default: ``os.environ``).

    Returns:
        The stack specification.

    Raises:
        StackSpecError: If the file is missing or malformed, or required environment
            variables are unset (all of them are named).
    """
    path = STACKS_DIR / f"{key}.yaml"
    if not path.is_file():
        raise StackSpecError(
            f"No stack file {path}. Available stacks: {', '.join(available_stacks())}."
        )
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw.get("components"), dict) or not raw.get("name"):
        raise StackSpecError(f"{path} needs a 'name' and a 'components' mapping.")
    missing: set[str] = set()
    components = []
    for ctype, body in raw["components"].items():
        if not isinstance(body, dict) or not body.get("name") or not body.get("flavor"):
            raise StackSpecError(f"{path}: component '{ctype}' needs a 'name' and a 'flavor'.")
        config = _substitute(body.get("configuration") or {}, missing, env or dict(os.environ))
        components.append(ComponentSpec(ctype, body["name"], body["flavor"], config))
    if missing:
        names = ", ".join(sorted(missing))
        raise StackSpecError(
            f"The '{key}' stack needs these environment variables: {names}. Export them "
            f"(e.g. `export {sorted(missing)[0]}=...`) or put them in a .env file you source; "
            f"the README's stack section says what each one is."
        )
    return StackSpec(key, raw["name"], raw.get("description", ""), components)


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
