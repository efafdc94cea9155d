"""Training runs (a manual run and a retrain after drift alike), and dry runs."""

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from application.workspace import (
    PROJECT_ROOT,
    RunError,
    ensure_zenml_repository,
    isolate_zenml,
    merged_config,
    output,
    resolve_data,
    run_pipeline,
    where_to_look,
)
from xray.io.paths import is_uri
from xray.logic.constants import PROMOTION_ARTIFACT, REGISTERED_RELEASE_ARTIFACT
from xray.logic.records import PromotionDecision, ReleaseRecord
from xray.logic.settings import PIPELINE_STEPS

NOT_A_DEVICE = (
    "This model is a demonstration, not a medical device: do not use its predictions for diagnosis."
)


@dataclass
class TrainOutcome:
    """What a training run produced.

    Attributes:
        run_name: The ZenML run.
        status: Its final status (``completed``...).
        release: The registered version's release record (None when the run stopped
            before registering).
        promotion: Whether the version became production, and why.
        links: How to open the MLflow UI and the dashboard.
    """

    run_name: str
    status: str
    release: ReleaseRecord | None = None
    promotion: PromotionDecision | None = None
    links: list[str] = field(default_factory=list)

    def report(self) -> list[str]:
        """What the CLI prints at the end of the run."""
        lines = ["", f"Run '{self.run_name}' finished with status {self.status}."]
        release = self.release
        if release is not None:
            lines.append(
                f"Model {release.model_name} version {release.model_version}: in-split test "
                f"{release.metrics.headline()} at threshold {release.threshold:.3f} (chosen "
                f"on validation; pretrained={release.training.pretrained})."
            )
            lines += [
                f"External set {name} ({ext.n} images, never used for any choice): "
                f"{ext.metrics.headline()}."
                for name, ext in release.external.sets.items()
            ]
            lines.append(NOT_A_DEVICE)
            if self.promotion is not None:
                state = "promoted to production" if self.promotion.promoted else "NOT promoted"
                lines.append(
                    f"Version {release.model_version} {state}: " + "; ".join(self.promotion.reasons)
                )
            if release.bento_tag:
                lines.append(
                    "Serve it:   python -m application.serve --host 127.0.0.1   "
                    f"(Bento {release.bento_tag})"
                )
        return lines + self.links


def train(
    spec: Any,
    config: Path,
    data_dirs: list[str],
    no_cache: bool = False,
    overrides: dict[str, Any] | None = None,
    external_test_dirs: list[str] | None = None,
) -> TrainOutcome | None:
    """Runs the training pipeline on the registered stack ``spec``.

    Args:
        spec: The stack (registered and active: :func:`application.workspace.prepare_stack`).
        config: The run config YAML.
        data_dirs: Data folders (resolved): the first, then more to merge in.
        no_cache: Run every step even when a cached result exists.
        overrides: Run-config values set last (a retrain's split rule).
        external_test_dirs: Labelled folders scored by the final model, never used for
            any choice.

    Returns:
        The outcome, or None when an asynchronous orchestrator returned before the end.

    Raises:
        RunError: The run failed; the message names each failed step and its error.
    """
    from pipelines.training import training_pipeline

    merged = merged_config(config, spec, overrides)
    pipeline = training_pipeline.with_options(config_path=str(merged), enable_cache=not no_cache)
    run = run_pipeline(
        pipeline,
        data_dir=data_dirs[0],
        extra_data_dirs=data_dirs[1:],
        external_test_dirs=external_test_dirs or None,
    )
    if run is None:
        return None
    return TrainOutcome(
        run_name=run.name,
        status=run.status.value,
        release=output(run, "register_model", REGISTERED_RELEASE_ARTIFACT),
        promotion=output(run, "promote_model", PROMOTION_ARTIFACT),
        links=where_to_look(run),
    )


def compile_for(stack: str, config: Path, data: str | None, pipeline: str = "training") -> str:
    """Compiles a pipeline (``training``, ``inference``, or ``monitoring`` with the stack's
    schedule) for ``stack`` against a throw-away ZenML store and writes what would be
    submitted under ``dry-run/<stack>/`` (``dry-run/<stack>-<pipeline>/``); needs no
    account.

    Returns:
        The summary of what was written.
    """
    from stacks.registry import StackSpecError, load_stack_spec, merge_run_config

    out_dir = (
        PROJECT_ROOT / "dry-run" / (stack if pipeline == "training" else f"{stack}-{pipeline}")
    )
    isolate_zenml(Path(tempfile.mkdtemp(prefix="xray-dry-run-")))
    try:
        spec = load_stack_spec(stack, placeholders=True)
        data_dir = resolve_data(data)
        steps = PIPELINE_STEPS[pipeline] if pipeline != "training" else None
        merged = merge_run_config(config, spec, out_dir, pipeline_steps=steps, pipeline=pipeline)
        arguments: dict[str, Any] = {}
        if pipeline == "inference":
            from application.score import shard_plan

            merged, arguments = shard_plan(merged, spec.parallel_steps, out_dir)
        ensure_zenml_repository()
    except StackSpecError as exc:
        raise RunError(str(exc)) from None

    from stacks.dry_run import dry_run as compile_and_intercept

    listing = "not listed (dry run)" if is_uri(data_dir) else ""
    return compile_and_intercept(
        spec, merged, data_dir, listing, out_dir, pipeline, arguments
    ).summary()
