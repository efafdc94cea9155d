"""Batch inference runs: score a folder with the production model, write the files, act
on drift."""

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from application.workspace import (
    PROJECT_ROOT,
    RunError,
    latest_run,
    merged_config,
    output,
    run_pipeline,
)
from xray.logic.constants import (
    DRIFT_RESPONSE_ARTIFACT,
    INFERENCE_DRIFT_ARTIFACT,
    INFERENCE_DRIFT_REPORT_ARTIFACT,
    INFERENCE_METRICS_ARTIFACT,
    MERGE_STEP,
    MODEL_NAME,
    PREDICTIONS_ARTIFACT,
    SCORING_STEP,
    shard_step,
)
from xray.logic.records import DriftResult, InferenceSummary, RetrainResult
from xray.logic.settings import PIPELINE_STEPS, DriftActionSettings, shipped_values


@dataclass
class ScoreOutcome:
    """What a batch inference run produced.

    Attributes:
        model_version: The version that scored (production, unless the config named one).
        summary: Counts, labels, refused and skipped files, metrics when the truth is known.
        drift: The drift test against the model's training images.
        files: Name -> path of every file written (``predictions``, ``drift``...).
        retrained: The training run the pipeline started on drift (``on_drift: retrain``).
    """

    model_version: str
    summary: InferenceSummary | None = None
    drift: DriftResult | None = None
    files: dict[str, Path] = field(default_factory=dict)
    retrained: RetrainResult | None = None

    def report(self) -> list[str]:
        """What the CLI prints: counts, metrics, drift and the files."""
        summary, drift, files = self.summary, self.drift, self.files
        if summary is None or drift is None or not files:
            return []  # the run failed before predicting: the failure says why
        refused = (
            f"; {summary.refused} refused by the input guard (not chest X-rays this model "
            f"can judge: see {files['predictions'].name}, column guard_reason)"
            if summary.refused
            else ""
        )
        lines = [
            "",
            f"Scored {summary.images} image(s) with threshold {summary.threshold:.3f}: "
            + ", ".join(f"{n} {label}" for label, n in sorted(summary.predicted.items()))
            + (f"; {len(summary.skipped)} file(s) skipped" if summary.skipped else "")
            + refused
            + ".",
        ]
        if summary.metrics:
            m = summary.metrics
            lines.append(
                f"Against the class folders ({m['labelled']} labelled): accuracy "
                f"{m['accuracy']:.3f}, sensitivity {m['sensitivity']:.3f}, specificity "
                f"{m['specificity']:.3f}, AUC {m['roc_auc']:.3f}."
            )
        state = "DRIFT detected" if drift.drift_detected else "no drift"
        if not drift.tested:
            state = drift.note or "drift not tested"
        features = f": {', '.join(drift.drifted_features)}" if drift.drifted_features else ""
        lines += [
            f"Drift: {state} (share of drifted statistics {drift.share_drifted:.2f}{features}).",
            f"Predictions: {files['predictions']}",
            f"Drift:       {files['drift']}  (report: {files['report']})",
            "Predictions are from a research demonstration, not a medical device: they are "
            "not diagnoses.",
        ]
        return lines + (self.retrained.report() if self.retrained else [])


def _scoring_version(run_config: dict[str, Any]) -> Any:
    """The model version the inference run will use (raises when there is none)."""
    from lifecycle.production import NoProductionModelError, require_production

    model = run_config.get("model") or {}
    try:
        return require_production(model.get("name", MODEL_NAME))
    except NoProductionModelError as exc:
        raise RunError(str(exc)) from None


def shard_plan(
    merged: Path, parallel: bool, out_dir: Path | None = None
) -> tuple[Path, dict[str, Any]]:
    """How the run config's ``batch_predict.config.shards`` is carried out, and the run
    config to run with.

    On a stack whose steps run remotely (``parallel``), N > 1 shards become N parallel
    ``batch_predict`` steps: each gets the run config's ``batch_predict`` settings (a run
    config addresses steps by name), written to a copy under ``outputs/configs/``.
    Elsewhere, one step scores with N worker processes.

    Args:
        merged: The run config with the stack's overlay merged in.
        parallel: Whether the stack's orchestrator runs steps in parallel (remote).
        out_dir: Where to write the copy (default ``outputs/configs/``).

    Returns:
        The run config to use and the pipeline's ``shards``/``parallel_steps`` arguments.
    """
    from xray.logic.settings import BatchPredictSettings

    run_config = yaml.safe_load(merged.read_text()) or {}
    settings = BatchPredictSettings.model_validate(shipped_values(run_config, SCORING_STEP))
    arguments = {"shards": settings.shards, "parallel_steps": parallel and settings.shards > 1}
    if not arguments["parallel_steps"]:
        return merged, arguments
    steps = run_config.setdefault("steps", {})
    for i in range(settings.shards):
        steps[shard_step(i)] = copy.deepcopy(steps.get(SCORING_STEP, {}))
    steps.pop(SCORING_STEP, None)
    folder = out_dir or PROJECT_ROOT / "outputs" / "configs"
    out = folder / f"{merged.stem}.shards-{settings.shards}.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    out.write_text(
        f"# {merged.name}, batch_predict's settings given to each of its "
        f"{settings.shards} parallel shard steps\n" + yaml.safe_dump(run_config, sort_keys=False)
    )
    return out, arguments


def scoring_step(run: Any) -> str:
    """The step whose outputs are the run's predictions and summary."""
    return MERGE_STEP if MERGE_STEP in run.steps else SCORING_STEP


def score(
    spec: Any,
    config: Path,
    data_dir: str,
    out: Path,
    on_drift: str | None = None,
    no_cache: bool = False,
    announce: Callable[[str], None] = print,
) -> ScoreOutcome:
    """Runs the inference pipeline on ``data_dir`` and writes its files to ``out``.

    The files are written even when the run fails afterwards (``on_drift: fail``). A
    retrain on drift (``on_drift: retrain``) is the pipeline's own (its ``handle_drift``
    step), so it happens the same when a schedule or the dashboard starts the run; its
    outcome is in :attr:`ScoreOutcome.retrained`.

    Raises:
        RunError: No production model, or a failed run (after its files are written; a
            failed retrain fails the run).
    """
    from lifecycle.outputs import write_inference_outputs
    from pipelines.inference import inference_pipeline

    run_config = yaml.safe_load(config.read_text()) or {}
    production = _scoring_version(run_config)
    action = DriftActionSettings.model_validate(shipped_values(run_config, "handle_drift"))
    if on_drift:
        action = action.model_copy(update={"on_drift": on_drift})
    merged = merged_config(
        config,
        spec,
        overrides={
            "steps": {"handle_drift": {"parameters": {"config": {"on_drift": action.on_drift}}}}
        },
        pipeline_steps=PIPELINE_STEPS["inference"],
    )
    merged, sharding = shard_plan(merged, parallel=spec is not None and spec.parallel_steps)
    announce(f"Scoring {data_dir} with model version {production.number} (production).")
    pipeline = inference_pipeline.with_options(config_path=str(merged), enable_cache=not no_cache)
    outcome = ScoreOutcome(model_version=str(production.number))
    failure = None
    try:
        run = run_pipeline(pipeline, data_dir=data_dir, **sharding)
    except RunError as exc:
        failure, run = exc, latest_run("inference")
    if run is not None:
        predictions = output(run, scoring_step(run), PREDICTIONS_ARTIFACT)
        outcome.summary = output(run, scoring_step(run), INFERENCE_METRICS_ARTIFACT)
        outcome.drift = output(run, "check_inference_drift", INFERENCE_DRIFT_ARTIFACT)
        report = output(run, "check_inference_drift", INFERENCE_DRIFT_REPORT_ARTIFACT)
        if predictions is not None and outcome.summary and outcome.drift and report is not None:
            outcome.files = write_inference_outputs(
                out, predictions, outcome.drift, str(report), outcome.summary
            )
        response = output(run, "handle_drift", DRIFT_RESPONSE_ARTIFACT)
        outcome.retrained = response.retrain if response else None
    if failure is not None:
        raise RunError(str(failure), outcome=outcome)
    return outcome
