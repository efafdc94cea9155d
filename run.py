"""Command line entry point: register a stack from stacks/*.yaml and run a pipeline."""

import os
import sys
from pathlib import Path
from typing import Any

import click

PROJECT_ROOT = Path(__file__).resolve().parent
DEFAULT_DATA = "data/sample"
PIPELINES = ("training",)
EXAMPLES = """
\b
Examples:
  python run.py --stack local                       # train on the shipped sample
  python run.py --stack local --data ~/chest_xray   # your own Kaggle-layout folder
  python run.py --stack local --data s3://bucket/chest_xray --no-cache
  python run.py --stack local --data kaggle         # download with the Kaggle API
  python run.py --stack local --config configs/training.yaml
  python run.py --stack sagemaker --dry-run         # preview: no account or credentials
  python run.py --stack vertex --data gs://bucket/chest_xray   # GPU training on Vertex AI
"""


def _stack_choices() -> list[str]:
    from stacks.registry import available_stacks

    return available_stacks()


def resolve_data(data: str | None) -> str:
    """Turns the ``--data`` value into what the load step reads.

    No value means the sample shipped in the project (``data/sample``, relative to the
    project root, so it resolves inside a cloud stack's image too); ``kaggle`` downloads
    the data set (or fails at once without credentials); a local path inside the project
    becomes relative to it, any other local path absolute; URIs (``s3://``, ``gs://``)
    pass through.
    """
    from xray.kaggle import download_kaggle_dataset

    if data is None:
        return DEFAULT_DATA
    if data == "kaggle":
        cache = Path(os.environ.get("XRAY_DATA_CACHE", Path.home() / ".cache" / "xray-zenml"))
        return str(download_kaggle_dataset(cache / "kaggle"))
    if "://" in data:
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


def _failure_summary() -> str:
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


def _print_summary(run: Any) -> None:
    from zenml.client import Client

    client = Client()
    click.echo("")
    click.echo(f"Run '{run.name}' finished with status {run.status.value}.")
    try:
        facts = run.steps["register_model"].outputs["model_version_facts"][0].load()
    except (KeyError, IndexError):
        facts = None
    if facts:
        m = facts["metrics"]
        click.echo(
            f"Model {facts['model_name']} version {facts['model_version']}: test AUC "
            f"{m['roc_auc']:.3f}, accuracy {m['accuracy']:.3f}, sensitivity "
            f"{m['sensitivity']:.3f}, specificity {m['specificity']:.3f} at threshold "
            f"{facts['threshold']:.3f} (chosen on validation; pretrained={facts['pretrained']})."
        )
        click.echo(
            "This model is a demonstration, not a medical device: do not use its "
            "predictions for diagnosis."
        )
        if facts.get("bento_tag"):
            click.echo(
                f"Serve it:   cd bentos && bentoml serve --host 127.0.0.1   "
                f"(Bento {facts['bento_tag']})"
            )
    tracker = client.active_stack.experiment_tracker
    if tracker is not None and hasattr(tracker, "get_tracking_uri"):
        click.echo(f"MLflow UI:  mlflow ui --backend-store-uri '{tracker.get_tracking_uri()}'")
    store = client.zen_store
    if store.type.value == "rest":
        from zenml.utils.dashboard_utils import get_run_url

        click.echo(f"Dashboard:  {get_run_url(run) or store.url}")
    else:
        click.echo("Dashboard:  zenml login --local   (then open http://127.0.0.1:8237)")


def _preflight(spec: Any, data_dir: str) -> None:
    """Runs the remote-stack checks; raises with every failed check and its fix."""
    import time

    from stacks.preflight import preflight, report

    start = time.perf_counter()
    checks = preflight(spec, data_dir)
    if not all(check.ok for check in checks):
        raise click.ClickException(report(spec, checks))
    click.echo(f"Preflight passed ({len(checks)} checks, {time.perf_counter() - start:.1f} s).")


def _dry_run(stack: str, config: Path, data: str | None) -> None:
    """``--dry-run``: compile against a throw-away ZenML store and print the summary."""
    import tempfile

    from stacks.registry import StackSpecError, load_stack_spec, merge_run_config

    out_dir = PROJECT_ROOT / "dry-run" / stack
    isolate_zenml(Path(tempfile.mkdtemp(prefix="xray-dry-run-")))
    try:
        spec = load_stack_spec(stack, placeholders=True)
        data_dir = resolve_data(data)
        config = merge_run_config(config, spec, out_dir)
        ensure_zenml_repository()
    except StackSpecError as exc:
        raise click.ClickException(str(exc)) from None

    from stacks.dry_run import dry_run

    listing = "not listed (dry run)" if "://" in data_dir else ""
    result = dry_run(spec, config, data_dir, listing, out_dir)
    click.echo("")
    click.echo(result.summary())


@click.command(epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--stack",
    type=click.Choice(_stack_choices()),
    default="local",
    show_default=True,
    help="Stack to register (from stacks/<name>.yaml), activate and run on.",
)
@click.option(
    "--pipeline",
    "pipeline_name",
    type=click.Choice(PIPELINES),
    default="training",
    show_default=True,
    help="Pipeline to run.",
)
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Run config YAML [default: configs/<pipeline>.yaml].",
)
@click.option(
    "--data",
    default=None,
    help=f"Data folder (local, s3:// or gs://), or 'kaggle' [default: {DEFAULT_DATA}].",
)
@click.option("--no-cache", is_flag=True, help="Run every step even if a cached result exists.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Compile for the stack and write what would be submitted; needs no account.",
)
def main(
    stack: str,
    pipeline_name: str,
    config: Path | None,
    data: str | None,
    no_cache: bool,
    dry_run: bool,
) -> None:
    """Train the chest X-ray pneumonia classifier with ZenML on the chosen stack."""
    from stacks.registry import StackSpecError, load_stack_spec, merge_run_config, register_stack
    from xray.loading import DataError

    config = config or PROJECT_ROOT / "configs" / f"{pipeline_name}.yaml"
    if dry_run:
        _dry_run(stack, config, data)
        return
    try:
        data_dir = resolve_data(data)
        spec = load_stack_spec(stack, placeholders=stack != "local")
        if spec.is_remote:
            ensure_zenml_repository()
            _preflight(spec, data_dir)
        config = merge_run_config(config, spec, PROJECT_ROOT / "outputs" / "configs")
        ensure_zenml_repository()
        register_stack(spec)
    except (DataError, StackSpecError) as exc:
        raise click.ClickException(str(exc)) from None

    from pipelines.training import training_pipeline

    pipeline = training_pipeline.with_options(config_path=str(config), enable_cache=not no_cache)
    try:
        run = pipeline(data_dir=data_dir)
    except DataError as exc:
        raise click.ClickException(str(exc)) from None
    except RuntimeError as exc:
        if "Pipeline run has failed" not in str(exc):
            raise
        raise click.ClickException(_failure_summary()) from None
    if run is not None:
        _print_summary(run)


if __name__ == "__main__":
    sys.exit(main())
