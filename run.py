"""Command line entry point: register a stack from stacks/*.yaml and run a pipeline.

Only options and printing live here; what a run does is in ``application/``.
"""

import sys
from pathlib import Path

import click

from application.monitor import monitor
from application.score import score
from application.train import compile_for, train
from application.workspace import DEFAULT_DATA, PROJECT_ROOT, RunError, prepare_stack, resolve_data
from xray.logic.settings import DRIFT_ACTIONS

PIPELINES = ("training", "inference", "monitoring")
DEFAULT_OUT = {"inference": "outputs/inference", "monitoring": "outputs/monitoring"}
NOT_A_DEVICE = (
    "This model is a demonstration, not a medical device: do not use its predictions for diagnosis."
)
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
  python run.py --pipeline monitoring --since 2026-12-01   # judge the service's answers
  python run.py promote --challenger                # the shadow challenger, on live evidence
  python run.py approve 7 --by "Dr. Ada Lovelace" --note "reviewed the card"
  python run.py --stack sagemaker --dry-run         # preview: no account or credentials
  python run.py --stack sagemaker --rehearse        # the cloud run, in its images, on 127.0.0.1
  python run.py --stack vertex --data gs://bucket/chest_xray   # GPU training on Vertex AI
"""


def _stack_choices() -> list[str]:
    from stacks.registry import available_stacks

    return available_stacks()


@click.group(
    epilog=EXAMPLES,
    context_settings={"help_option_names": ["-h", "--help"]},
    invoke_without_command=True,
)
@click.pass_context
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
    default=None,
    help="Inference: folder for predictions.csv, drift.json and the drift report "
    f"[default: {DEFAULT_OUT['inference']}]. Monitoring: folder for monitoring.json and "
    f"its report [default: {DEFAULT_OUT['monitoring']}].",
)
@click.option(
    "--since",
    default=None,
    help="Monitoring: judge the answers since this ISO time (e.g. 2026-12-01) "
    "[default: load_prediction_window.config.window_days before now].",
)
@click.option("--until", default=None, help="Monitoring: ... and before this ISO time.")
@click.option(
    "--on-drift",
    type=click.Choice(DRIFT_ACTIONS),
    default=None,
    help="Inference: on drift, only warn, fail the run (exit 1), or retrain on the "
    "production model's data plus --data [default: handle_drift.config.on_drift].",
)
@click.option("--no-cache", is_flag=True, help="Run every step even if a cached result exists.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Compile for the stack and write what would be submitted; needs no account.",
)
@click.option(
    "--rehearse",
    is_flag=True,
    help="Run a cloud stack's compiled definition here: each step in its image, with a "
    "ZenML server, a storage emulator and MLflow on 127.0.0.1; needs Docker, no account.",
)
def main(
    ctx: click.Context,
    stack: str,
    pipeline_name: str,
    config: Path | None,
    data: tuple[str, ...],
    external_tests: tuple[str, ...],
    out: Path | None,
    since: str | None,
    until: str | None,
    on_drift: str | None,
    no_cache: bool,
    dry_run: bool,
    rehearse: bool,
) -> None:
    """Train the chest X-ray pneumonia classifier with ZenML on the chosen stack, score
    new images with the production model (--pipeline inference), or judge what the
    service answered (--pipeline monitoring). Commands: promote, approve."""
    if ctx.invoked_subcommand is not None:
        return
    from stacks.registry import StackSpecError
    from xray.io.layout import DataError
    from xray.io.prediction_log import PredictionLogError

    config = config or PROJECT_ROOT / "configs" / f"{pipeline_name}.yaml"
    if dry_run and rehearse:
        raise click.UsageError("--dry-run and --rehearse are alternatives; choose one.")
    if dry_run and pipeline_name == "monitoring" and (data or external_tests):
        raise click.UsageError("--dry-run of the monitoring pipeline takes no --data.")
    for flag, given in (("--dry-run", dry_run), ("--rehearse", rehearse)):
        wrong = pipeline_name != "training" and flag != "--dry-run"
        if given and (wrong or len(data) > 1 or external_tests):
            raise click.UsageError(
                f"{flag} runs the training pipeline on one --data"
                + (
                    " (or, --dry-run, the inference pipeline on one --data, or the "
                    "monitoring pipeline)"
                    if flag == "--dry-run"
                    else ""
                )
                + "."
            )
    if (since or until) and pipeline_name != "monitoring":
        raise click.UsageError("--since and --until belong to --pipeline monitoring.")
    if pipeline_name == "monitoring" and data:
        raise click.UsageError(
            "--pipeline monitoring reads the service's prediction log, not --data "
            "(XRAY_PREDICTION_LOG_URL names the database)."
        )
    if external_tests and pipeline_name != "training":
        raise click.UsageError("--external-test belongs to training runs (--pipeline training).")
    if pipeline_name == "inference" and len(data) != 1:
        raise click.UsageError(
            "--pipeline inference needs one --data: a folder of images or one image."
        )
    try:
        if dry_run:
            click.echo("\n" + compile_for(stack, config, data[0] if data else None, pipeline_name))
            return
        if rehearse:
            from application.rehearse import rehearse as rehearse_stack

            outcome = rehearse_stack(stack, config, data[0] if data else None, click.echo)
            click.echo("\n".join(outcome.report()))
            return
        out = out or Path(DEFAULT_OUT.get(pipeline_name, DEFAULT_OUT["inference"]))
        if pipeline_name == "monitoring":
            spec = prepare_stack(stack, [], click.echo)
            watched = monitor(spec, config, since, until, out, no_cache, click.echo)
            click.echo("\n".join(watched.report_lines()))
            return
        data_dirs = [resolve_data(d) for d in data] or [resolve_data(None)]
        external = [resolve_data(d) for d in external_tests]
        spec = prepare_stack(stack, data_dirs + external, click.echo)
        if pipeline_name == "training":
            outcome = train(spec, config, data_dirs, no_cache, None, external)
        else:
            try:
                outcome = score(spec, config, data_dirs[0], out, on_drift, no_cache, click.echo)
            except RunError as exc:
                click.echo("\n".join(exc.outcome.report() if exc.outcome else []))
                raise
        click.echo("\n".join(outcome.report() if outcome else []))
    except (RunError, DataError, StackSpecError, PredictionLogError) as exc:
        raise click.ClickException(str(exc)) from None


MODEL_OPTION = click.option(
    "--model-name",
    default=None,
    help="The ZenML Model [default: XRAY_MODEL_NAME, else pneumonia_classifier].",
)


def _model_name(given: str | None) -> str:
    import os

    from xray.logic.constants import MODEL_NAME

    return given or os.environ.get("XRAY_MODEL_NAME") or MODEL_NAME


@main.command()
@click.option(
    "--challenger",
    "challenger",
    is_flag=True,
    required=True,
    help="Promote the challenger the service scored in shadow (required: the only kind of "
    "promotion by hand that needs evidence).",
)
@click.option("--version", default=None, help="The challenger's version [default: the newest].")
@click.option("--since", default=None, help="Only requests since this ISO time count.")
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=PROJECT_ROOT / "configs" / "training.yaml",
    show_default=True,
    help="The run config whose promote_model gates apply.",
)
@MODEL_OPTION
def promote(
    challenger: bool, version: str | None, since: str | None, config: Path, model_name: str | None
) -> None:
    """Replace production with the shadow challenger when its live figures, on the
    labelled requests both models scored, pass the promotion gates."""
    from application.promote import promote_challenger
    from xray.io.prediction_log import PredictionLogError

    try:
        outcome = promote_challenger(_model_name(model_name), version, since, config)
    except (RunError, PredictionLogError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("\n".join(outcome.report()))
    if not outcome.promoted:
        sys.exit(1)


@main.command()
@click.argument("version")
@click.option("--by", required=True, help="Who signs the version off.")
@click.option("--note", required=True, help="What was reviewed, and why it may serve.")
@MODEL_OPTION
def approve(version: str, by: str, note: str, model_name: str | None) -> None:
    """Sign off VERSION (it must have passed the promotion gates; with require_approval it
    waits in staging) and promote it to production."""
    from application.promote import approve_version

    try:
        lines = approve_version(_model_name(model_name), version, by, note)
    except RunError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("\n".join(lines))


if __name__ == "__main__":
    from application.process import run_and_exit

    run_and_exit(main)  # without the interpreter's slow teardown (see exit_now)
