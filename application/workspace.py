"""Where runs happen: the data locations, the ZenML repository, the stack, and a
pipeline run whose failure names the failed steps."""

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xray.io.paths import is_uri

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = "data/sample"


class RunError(RuntimeError):
    """A run could not start or failed; the message says why and what to do.

    Attributes:
        outcome: What the run produced before it failed (a scoring run's files), if any.
    """

    def __init__(self, message: str, outcome: Any = None) -> None:
        super().__init__(message)
        self.outcome = outcome


def resolve_data(data: str | None) -> str:
    """Turns a ``--data`` value into what the load step reads.

    No value means the sample shipped in the project (``data/sample``, relative to the
    project root, so it resolves inside a cloud stack's image too); ``kaggle`` downloads
    the data set (or fails at once without credentials); a local path inside the project
    becomes relative to it, any other local path absolute; URIs (``s3://``, ``gs://``)
    pass through.
    """
    from xray.io.kaggle import download_kaggle_dataset

    if data is None:
        return DEFAULT_DATA
    if data == "kaggle":
        cache = Path(os.environ.get("XRAY_DATA_CACHE", Path.home() / ".cache" / "xray-zenml"))
        return str(download_kaggle_dataset(cache / "kaggle"))
    if is_uri(data):
        return data
    path = Path(data).expanduser().resolve()
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def isolate_zenml(root: Path) -> None:
    """Points ZenML at a throw-away store and repository under ``root`` (dry runs).

    Must run before ZenML is first imported. The source root stays the project, so the
    Docker build context is what a real run would build.
    """
    for name in ("ZENML_STORE_URL", "ZENML_STORE_API_KEY", "ZENML_STORE_API_TOKEN"):
        os.environ.pop(name, None)
    os.environ["ZENML_CONFIG_PATH"] = str(root / "zenml-config")
    os.environ["ZENML_REPOSITORY_PATH"] = str(root / "zenml-repo")
    os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")


def ensure_zenml_repository() -> None:
    """Makes the project root ZenML's source root (what `zenml init` does), once.

    Loading this project's artifacts from a notebook or `python -c` then finds the
    materializers; container builds for remote stacks use the same root. Skipped when
    ZENML_REPOSITORY_PATH points elsewhere (the tests use an isolated one).
    """
    from zenml.client import Client
    from zenml.utils.source_utils import set_custom_source_root

    if os.environ.get("ZENML_REPOSITORY_PATH"):
        set_custom_source_root(str(PROJECT_ROOT))
    elif not Client.find_repository(PROJECT_ROOT):
        Client.initialize(root=PROJECT_ROOT)


def prepare_stack(stack: str, data_dirs: list[str], echo: Callable[[str], None]) -> Any:
    """Loads the stack file, checks a remote stack (preflight, for every data folder a
    cloud step must reach) and registers and activates it.

    Raises:
        RunError: With every failed preflight check and its fix.
    """
    from stacks.preflight import preflight, report
    from stacks.registry import load_stack_spec, register_stack

    spec = load_stack_spec(stack, placeholders=stack != "local")
    ensure_zenml_repository()
    if spec.is_remote:
        for data_dir in data_dirs:
            start = time.perf_counter()
            checks = preflight(spec, data_dir)
            if not all(check.ok for check in checks):
                raise RunError(report(spec, checks))
            echo(f"Preflight passed ({len(checks)} checks, {time.perf_counter() - start:.1f} s).")
    from stacks.upstream import apply_upstream_fixes

    apply_upstream_fixes(spec)
    register_stack(spec)
    return spec


def merged_config(
    config: Path, spec: Any, overrides: dict[str, Any] | None = None, **kw: Any
) -> Path:
    """The run config with the stack's infrastructure overlay (and ``overrides``) merged."""
    from stacks.registry import merge_run_config

    return merge_run_config(config, spec, PROJECT_ROOT / "outputs" / "configs", overrides, **kw)


def failure_summary() -> str:
    """One line per failed step of the latest run, with the step's error message."""
    from zenml.client import Client
    from zenml.enums import ExecutionStatus

    run = Client().list_pipeline_runs(sort_by="desc:created", size=1).items[0]
    lines = [f"Run '{run.name}' failed (the full traceback is above)."]
    for name, step_run in run.steps.items():
        if step_run.status == ExecutionStatus.FAILED:
            info = step_run.exception_info
            lines.append(f"  step {name}: {info.message if info else 'see the log above'}")
    return "\n".join(lines)


def run_pipeline(pipeline: Any, **kwargs: Any) -> Any:
    """Runs a pipeline; a failed run raises :class:`RunError` naming the failed steps."""
    from xray.io.layout import DataError

    try:
        return pipeline(**kwargs)
    except DataError as exc:
        raise RunError(str(exc)) from None
    except RuntimeError as exc:
        if "Pipeline run has failed" not in str(exc):
            raise
        raise RunError(failure_summary()) from None


def latest_run(pipeline_name: str) -> Any:
    """The newest run of a pipeline, or None."""
    from zenml.client import Client

    runs = Client().list_pipeline_runs(pipeline_name=pipeline_name, sort_by="desc:created", size=1)
    return runs.items[0] if runs.items else None


def output(run: Any, step: str, name: str) -> Any:
    """A step's output artifact of a run, loaded; None when the step did not produce it."""
    try:
        return run.steps[step].outputs[name][0].load()
    except (KeyError, IndexError):
        return None


def where_to_look(run: Any) -> list[str]:
    """How to open the MLflow UI and the dashboard for ``run``."""
    from zenml.client import Client

    client = Client()
    lines = []
    tracker = client.active_stack.experiment_tracker
    if tracker is not None and hasattr(tracker, "get_tracking_uri"):
        lines.append(f"MLflow UI:  mlflow ui --backend-store-uri '{tracker.get_tracking_uri()}'")
    store = client.zen_store
    if store.type.value == "rest":
        from zenml.utils.dashboard_utils import get_run_url

        lines.append(f"Dashboard:  {get_run_url(run) or store.url}")
    else:
        lines.append("Dashboard:  zenml login --local   (then open http://127.0.0.1:8237)")
    return lines
