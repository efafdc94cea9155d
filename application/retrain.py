"""A retrain after drift: the training pipeline on old plus new data, on the active stack.

The inference pipeline's ``handle_drift`` step starts it in its own process
(``python -m application.retrain --config C --data OLD --data NEW --result FILE``) when
``on_drift`` is ``retrain``, so a retrain happens whatever started the inference run: the
CLI, a schedule or the dashboard. It is the code path of a manual
``python run.py --data OLD --data NEW``, with one difference: the merged data is split
three ways, so the new images reach the test split and promotion compares both models on
them.
"""

import argparse
import sys
from pathlib import Path

from application.train import train
from application.workspace import (
    PROJECT_ROOT,
    RunError,
    ensure_zenml_repository,
    latest_run,
)
from xray.logic.records import RetrainResult

RETRAIN_SPLIT = {
    "steps": {"split_dataset": {"parameters": {"config": {"use_official_test": False}}}}
}
"""The retrain's split rule: old and new images split together (by patient)."""


def retrain(config: Path, data_dirs: list[str], no_cache: bool = False) -> RetrainResult:
    """Trains on ``data_dirs`` on the active stack, with that stack's run-config overlay
    (from the stack file that registers it, when there is one).

    Returns:
        The run, the version it registered and the promotion decision; or the error.
    """
    from zenml.client import Client

    from stacks.registry import spec_for_stack

    spec = spec_for_stack(Client().active_stack_model.name)
    result = RetrainResult(data_dirs=data_dirs)
    try:
        outcome = train(spec, config, data_dirs, no_cache, RETRAIN_SPLIT)
    except RunError as exc:
        run = latest_run("training")
        return result.model_copy(
            update={"run_name": run.name if run else "", "status": "failed", "error": str(exc)}
        )
    if outcome is None:  # an asynchronous orchestrator: the run goes on remotely
        run = latest_run("training")
        return result.model_copy(
            update={"run_name": run.name if run else "", "status": "submitted"}
        )
    release, promotion = outcome.release, outcome.promotion
    return result.model_copy(
        update={
            "run_name": outcome.run_name,
            "status": outcome.status,
            "model_version": release.model_version if release else "",
            "promoted": promotion.promoted if promotion else None,
            "reasons": list(promotion.reasons) if promotion else [],
        }
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m application.retrain``: retrains and writes the result as JSON."""
    parser = argparse.ArgumentParser(prog="python -m application.retrain", description=__doc__)
    parser.add_argument("--config", required=True, help="training run config YAML")
    parser.add_argument("--data", action="append", required=True, help="data folder (repeat)")
    parser.add_argument("--result", type=Path, help="write the RetrainResult JSON here")
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args(argv)
    config = Path(args.config)
    config = config if config.is_absolute() else PROJECT_ROOT / config
    ensure_zenml_repository()
    result = retrain(config, args.data, args.no_cache)
    print("\n".join(result.report()))
    if args.result:
        tmp = args.result.with_suffix(".tmp")
        tmp.write_text(result.model_dump_json(indent=2))
        tmp.replace(args.result)
    return 1 if result.error else 0


if __name__ == "__main__":
    sys.exit(main())
