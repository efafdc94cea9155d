"""Command line entry point: register a stack from stacks/*.yaml and run a pipeline."""

import os
import sys
from pathlib import Path
from typing import Any

import click

from xray.paths import is_uri

PROJECT_ROOT = Path(__file__).resolve().parent
DEFAULT_DATA = "data/sample"
PIPELINES = ("training", "inference")
DEFAULT_OUT = "outputs/inference"
ON_DRIFT = ("warn", "fail", "retrain")
EXAMPLES = """
\b
Examples:
  python run.py --stack local                       # train on the shipped sample
  python run.py --stack local --data ~/chest_xray   # your own Kaggle-layout folder
  python run.py --stack local --data s3://bucket/chest_xray --no-cache
  python run.py --stack local --data kaggle         # download with the Kaggle API
  python run.py --stack local --config configs/training.yaml
  python run.py --stack local --data data/sample --data ~/new_xrays   # train on both
  python run.py --data ~/chest_xray/train --external-test ~/other_site   # + external test
  python run.py --stack local --pipeline inference --data ~/new_xrays --out preds
  python run.py --stack local --pipeline inference --data scan.jpeg
  python run.py --pipeline inference --data ~/new_xrays --on-drift retrain
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
            f"Model {facts['model_name']} version {facts['model_version']}: in-split test AUC "
            f"{m['roc_auc']:.3f}, accuracy {m['accuracy']:.3f}, sensitivity "
            f"{m['sensitivity']:.3f}, specificity {m['specificity']:.3f} at threshold "
            f"{facts['threshold']:.3f} (chosen on validation; pretrained={facts['pretrained']})."
        )
        for name, ext in (facts.get("external") or {}).items():
            e = ext["metrics"]
            click.echo(
                f"External set {name} ({ext['n']} images, never used for any choice): AUC "
                f"{e['roc_auc']:.3f}, accuracy {e['accuracy']:.3f}, sensitivity "
                f"{e['sensitivity']:.3f}, specificity {e['specificity']:.3f}."
            )
        click.echo(
            "This model is a demonstration, not a medical device: do not use its "
            "predictions for diagnosis."
        )
        promotion = _promotion(run)
        if promotion:
            state = "promoted to production" if promotion["promoted"] else "NOT promoted"
            click.echo(
                f"Version {facts['model_version']} {state}: " + "; ".join(promotion["reasons"])
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


def _promotion(run: Any) -> dict[str, Any] | None:
    from xray.constants import PROMOTION_ARTIFACT

    try:
        return run.steps["promote_model"].outputs[PROMOTION_ARTIFACT][0].load()
    except (KeyError, IndexError):
        return None


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

    listing = "not listed (dry run)" if is_uri(data_dir) else ""
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
    multiple=True,
    help=f"Data folder (local, s3:// or gs://), or 'kaggle' [default: {DEFAULT_DATA}]. "
    "Training: repeat to merge folders. Inference: one folder (any layout) or one image.",
)
@click.option(
    "--external-test",
    "external_tests",
    multiple=True,
    help="Training: a labelled folder from another site or collection, scored by the final "
    "model at the final threshold and never used for any choice; repeatable.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_OUT,
    show_default=True,
    help="Inference: folder for predictions.csv, drift.json and the drift report.",
)
@click.option(
    "--on-drift",
    type=click.Choice(ON_DRIFT),
    default=None,
    help="Inference: on drift, only warn, fail the run (exit 1), or retrain on the "
    "production model's data plus --data [default: handle_drift.config.on_drift in the config].",
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
    data: tuple[str, ...],
    external_tests: tuple[str, ...],
    out: Path,
    on_drift: str | None,
    no_cache: bool,
    dry_run: bool,
) -> None:
    """Train the chest X-ray pneumonia classifier with ZenML on the chosen stack, or score
    new images with the production model (--pipeline inference)."""
    from stacks.registry import StackSpecError
    from xray.loading import DataError

    config = config or PROJECT_ROOT / "configs" / f"{pipeline_name}.yaml"
    if dry_run:
        if pipeline_name != "training" or len(data) > 1:
            raise click.UsageError("--dry-run compiles the training pipeline on one --data.")
        _dry_run(stack, config, data[0] if data else None)
        return
    if external_tests and pipeline_name != "training":
        raise click.UsageError("--external-test belongs to training runs (--pipeline training).")
    if pipeline_name == "inference" and len(data) != 1:
        raise click.UsageError(
            "--pipeline inference needs one --data: a folder of images or one image."
        )
    try:
        data_dirs = [resolve_data(d) for d in data] or [resolve_data(None)]
        external = [resolve_data(d) for d in external_tests]
        spec = _prepare_stack(stack, data_dirs + external)  # a cloud step must reach all
        if pipeline_name == "training":
            _train(spec, config, data_dirs, no_cache, external_test_dirs=external)
        else:
            _infer(spec, config, data_dirs[0], out, on_drift, no_cache)
    except (DataError, StackSpecError) as exc:
        raise click.ClickException(str(exc)) from None


def _prepare_stack(stack: str, data_dirs: list[str]) -> Any:
    """Loads, checks (remote stacks: preflight) and registers the stack."""
    from stacks.registry import load_stack_spec, register_stack

    spec = load_stack_spec(stack, placeholders=stack != "local")
    ensure_zenml_repository()
    if spec.is_remote:
        for data_dir in data_dirs:
            _preflight(spec, data_dir)
    register_stack(spec)
    return spec


def _run_pipeline(pipeline: Any, **kwargs: Any) -> Any:
    """Runs a pipeline; a failed run becomes a ClickException naming the failed steps."""
    from xray.loading import DataError

    try:
        return pipeline(**kwargs)
    except DataError as exc:
        raise click.ClickException(str(exc)) from None
    except RuntimeError as exc:
        if "Pipeline run has failed" not in str(exc):
            raise
        raise click.ClickException(_failure_summary()) from None


def _train(
    spec: Any,
    config: Path,
    data_dirs: list[str],
    no_cache: bool,
    overrides: dict[str, Any] | None = None,
    external_test_dirs: list[str] | None = None,
) -> Any:
    """The training run, for a manual run and for a retrain after drift alike."""
    from pipelines.training import training_pipeline
    from stacks.registry import merge_run_config

    config = merge_run_config(config, spec, PROJECT_ROOT / "outputs" / "configs", overrides)
    pipeline = training_pipeline.with_options(config_path=str(config), enable_cache=not no_cache)
    run = _run_pipeline(
        pipeline,
        data_dir=data_dirs[0],
        extra_data_dirs=data_dirs[1:],
        external_test_dirs=external_test_dirs or None,
    )
    if run is not None:
        _print_summary(run)
    return run


def _infer(
    spec: Any, config: Path, data_dir: str, out: Path, on_drift: str | None, no_cache: bool
) -> None:
    """The batch inference run, its files in ``out``, and the drift action."""
    import yaml

    from lifecycle.production import NoProductionModelError, require_production
    from pipelines.inference import inference_pipeline
    from stacks.registry import merge_run_config
    from xray.constants import MODEL_NAME
    from xray.settings import DriftActionSettings, shipped_values

    settings = yaml.safe_load(config.read_text()) or {}
    try:
        production = require_production(settings.get("model", {}).get("name", MODEL_NAME))
    except NoProductionModelError as exc:
        raise click.ClickException(str(exc)) from None
    configured = DriftActionSettings.model_validate(shipped_values(settings, "handle_drift"))
    action = on_drift or configured.on_drift
    config = merge_run_config(
        config,
        spec,
        PROJECT_ROOT / "outputs" / "configs",
        overrides={"steps": {"handle_drift": {"parameters": {"config": {"on_drift": action}}}}},
        pipeline_steps=("batch_predict", "check_inference_drift", "handle_drift"),
    )
    click.echo(f"Scoring {data_dir} with model version {production.number} (production).")
    pipeline = inference_pipeline.with_options(config_path=str(config), enable_cache=not no_cache)
    failure = None
    try:
        run = _run_pipeline(pipeline, data_dir=data_dir)
    except click.ClickException as exc:
        failure, run = exc, _latest_run("inference")
    drift = _write_outputs(run, out) if run is not None else None
    if failure is not None:
        raise failure
    if drift and drift["drift_detected"] and action == "retrain":
        sources = list(production.run_metadata.get("data_sources") or [])
        if not sources:
            raise click.ClickException(
                f"Cannot retrain: production version {production.number} does not record "
                "its data folders; train on both by hand: python run.py --data OLD --data NEW"
            )
        training_config = PROJECT_ROOT / configured.training_config
        click.echo(f"Drift detected: retraining on {' + '.join([*sources, data_dir])}.")
        # The merged data is split three ways, so the new images reach the test split too
        # and promotion compares both models on them.
        split = {"split_dataset": {"parameters": {"config": {"use_official_test": False}}}}
        _train(spec, training_config, [*sources, data_dir], no_cache, {"steps": split})


def _latest_run(pipeline_name: str) -> Any:
    from zenml.client import Client

    runs = Client().list_pipeline_runs(pipeline_name=pipeline_name, sort_by="desc:created", size=1)
    return runs.items[0] if runs.items else None


def _write_outputs(run: Any, out: Path) -> dict[str, Any] | None:
    """Writes the run's predictions and drift files to ``out`` and prints their paths."""
    from lifecycle.outputs import write_inference_outputs
    from xray.constants import (
        INFERENCE_DRIFT_ARTIFACT,
        INFERENCE_DRIFT_REPORT_ARTIFACT,
        INFERENCE_METRICS_ARTIFACT,
        PREDICTIONS_ARTIFACT,
    )

    try:
        predict = run.steps["batch_predict"].outputs
        check = run.steps["check_inference_drift"].outputs
        predictions = predict[PREDICTIONS_ARTIFACT][0].load()
        summary = predict[INFERENCE_METRICS_ARTIFACT][0].load()
        drift = check[INFERENCE_DRIFT_ARTIFACT][0].load()
        report = str(check[INFERENCE_DRIFT_REPORT_ARTIFACT][0].load())
    except (KeyError, IndexError):
        return None  # the run failed before predicting: the failure says why
    paths = write_inference_outputs(out, predictions, drift, report, summary)
    click.echo("")
    click.echo(
        f"Scored {summary['images']} image(s) with threshold {summary['threshold']:.3f}: "
        + ", ".join(f"{n} {label}" for label, n in sorted(summary["predicted"].items()))
        + (f"; {len(summary['skipped'])} file(s) skipped" if summary["skipped"] else "")
        + (
            f"; {summary['refused']} refused by the input guard (not chest X-rays this "
            f"model can judge: see {paths['predictions'].name}, column guard_reason)"
            if summary.get("refused")
            else ""
        )
        + "."
    )
    if summary.get("metrics"):
        m = summary["metrics"]
        click.echo(
            f"Against the class folders ({m['labelled']} labelled): accuracy "
            f"{m['accuracy']:.3f}, sensitivity {m['sensitivity']:.3f}, specificity "
            f"{m['specificity']:.3f}, AUC {m['roc_auc']:.3f}."
        )
    state = "DRIFT detected" if drift["drift_detected"] else "no drift"
    if not drift.get("tested", True):
        state = drift.get("note", "drift not tested")
    click.echo(
        f"Drift: {state} (share of drifted statistics {drift['share_drifted']:.2f}"
        + (f": {', '.join(drift['drifted_features'])}" if drift["drifted_features"] else "")
        + ")."
    )
    click.echo(f"Predictions: {paths['predictions']}")
    click.echo(f"Drift:       {paths['drift']}  (report: {paths['report']})")
    click.echo(
        "Predictions are from a research demonstration, not a medical device: they are "
        "not diagnoses."
    )
    return drift


if __name__ == "__main__":
    sys.exit(main())
