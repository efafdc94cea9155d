"""``python run.py promote --challenger`` and ``python run.py approve``: production changes
on live evidence or on a person's sign-off."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from application.workspace import PROJECT_ROOT, RunError, ensure_zenml_repository
from xray.logic.constants import MODEL_NAME
from xray.logic.settings import MonitoringSettings, PromotionGates, shipped_values


@dataclass
class ChallengerOutcome:
    """The live-evidence decision on a challenger.

    Attributes:
        version: The challenger's version number.
        promoted: Whether it replaced production.
        reasons: Every gate, passed or not, and the evidence.
        evidence: The shadow comparison (both models on the same labelled requests).
    """

    version: str
    promoted: bool
    reasons: list[str]
    evidence: dict[str, Any] = field(default_factory=dict)

    def report(self) -> list[str]:
        head = (
            f"Challenger version {self.version} promoted to production"
            if self.promoted
            else f"Challenger version {self.version} NOT promoted"
        )
        return [head + ":", *[f"  {reason}" for reason in self.reasons]]


def _settings(config: Path, step: str) -> dict[str, Any]:
    return shipped_values(yaml.safe_load(config.read_text()) or {}, step)


def promote_challenger(
    model_name: str = MODEL_NAME,
    version: str | None = None,
    since: str | None = None,
    training_config: Path = PROJECT_ROOT / "configs" / "training.yaml",
    monitoring_config: Path = PROJECT_ROOT / "configs" / "monitoring.yaml",
) -> ChallengerOutcome:
    """Replaces production with the challenger the service scored in shadow, only when its
    live figures on the labelled requests pass the promotion gates (``promote_model`` in
    ``training_config``) and are not worse than production's on the same requests.

    Args:
        model_name: The ZenML Model.
        version: The challenger's version number [default: the newest one in the log].
        since: Only requests since this ISO time count [default: all].
        training_config: Where the promotion gates are.
        monitoring_config: Where ``min_labelled`` is (``assess_live_quality``).

    Raises:
        RunError: No shadow answers, too few labels, or no production version.
    """
    from lifecycle.approval import find_version, log_model_metadata
    from lifecycle.production import NoProductionModelError, require_production
    from xray.io.prediction_log import PredictionStore, log_url
    from xray.logic.monitoring import parse_time, shadow_comparison
    from xray.logic.promotion import Comparison, decide

    ensure_zenml_repository()
    gates = PromotionGates.model_validate(_settings(training_config, "promote_model"))
    min_labelled = MonitoringSettings.model_validate(
        _settings(monitoring_config, "assess_live_quality")
    ).min_labelled
    try:
        production = require_production(model_name)
    except NoProductionModelError as exc:
        raise RunError(str(exc)) from None
    try:
        start = parse_time(since, "--since") if since else None
    except ValueError as exc:
        raise RunError(str(exc)) from None
    predictions, feedback = PredictionStore(log_url()).window(since=start)
    shadow_rows = predictions[predictions["role"] == "challenger"]
    if version is None and not shadow_rows.empty:
        version = str(shadow_rows["model_version"].iloc[-1])
    # Production's answers are those of whichever version answered beside the challenger.
    wanted = predictions[
        (predictions["role"] == "production")
        | ((predictions["role"] == "challenger") & (predictions["model_version"] == version))
    ]
    shadow = shadow_comparison(wanted, feedback)
    if version is None or shadow is None:
        raise RunError(
            "No challenger answers in the prediction log: serve one in shadow first "
            "(python -m application.serve --challenger staging), send labels to /feedback, "
            "then run this again."
        )
    ours, theirs = shadow.production, shadow.challenger
    if theirs.metrics is None or ours.metrics is None or theirs.n_labelled < min_labelled:
        raise RunError(
            f"Challenger {version}: {theirs.n_labelled} labelled request(s) scored by both "
            f"models; at least {min_labelled} are needed "
            "(assess_live_quality.config.min_labelled): send more labels to /feedback."
        )
    headline = ("roc_auc", "sensitivity", "specificity", "accuracy", "threshold")
    comparison = Comparison(
        images=theirs.n_labelled,
        excluded_seen_by_production=0,
        new={k: float(getattr(theirs.metrics, k)) for k in headline},
        production={k: float(getattr(ours.metrics, k)) for k in headline},
        note=f"live evidence: both models on the same {theirs.n_labelled} labelled requests",
    )
    decision = decide(theirs.metrics.model_dump(), gates, comparison, str(production.number))
    challenger = find_version(model_name, version)
    log_model_metadata(challenger, {"challenger_promotion": decision.to_dict()})
    if decision.promoted:  # the previous production version is archived
        challenger.set_stage("production", force=True)
    return ChallengerOutcome(
        version=str(challenger.number),
        promoted=decision.promoted,
        reasons=decision.reasons,
        evidence=shadow.model_dump(mode="json"),
    )


def approve_version(model_name: str, version: str, by: str, note: str) -> list[str]:
    """Signs a version off and promotes it; returns what the CLI prints.

    Raises:
        RunError: The version cannot be signed off (why, and what to do).
    """
    from lifecycle.approval import ApprovalError, approve

    ensure_zenml_repository()
    try:
        found, approval = approve(model_name, version, by, note)
    except ApprovalError as exc:
        raise RunError(str(exc)) from None
    return [
        f"Version {found.number} of '{model_name}' signed off by {approval['by']} at "
        f"{approval['time']} and promoted to production.",
        "The sign-off is in the version's metadata (approval) and its model card.",
    ]
