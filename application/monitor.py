"""Monitoring runs: judge a window of the service's answers, write the files, act on alerts."""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from application.workspace import RunError, latest_run, merged_config, output, run_pipeline
from xray.logic.constants import (
    INFERENCE_DRIFT_REPORT_ARTIFACT,
    MODEL_NAME,
    MONITORING_HTML_ARTIFACT,
    MONITORING_REPORT_ARTIFACT,
    MONITORING_RESPONSE_ARTIFACT,
)
from xray.logic.records import MonitoringReport, MonitoringResponse
from xray.logic.settings import PIPELINE_STEPS


@dataclass
class MonitorOutcome:
    """What a monitoring run produced.

    Attributes:
        report: The monitoring report (``monitoring.json``).
        response: The alerts' deliveries and a retrain, if one ran.
        files: Name -> path of every file written.
        schedule: The stack's schedule, when the run was scheduled instead (cloud stacks).
    """

    report: MonitoringReport | None = None
    response: MonitoringResponse | None = None
    files: dict[str, Path] = field(default_factory=dict)
    schedule: dict[str, Any] | None = None

    def report_lines(self) -> list[str]:
        """What the CLI prints."""
        if self.schedule and self.report is None:
            return [
                f"Scheduled: the monitoring pipeline runs on the stack's orchestrator at "
                f"cron '{self.schedule.get('cron_expression')}' (ZenML schedule; "
                "zenml pipeline schedule list)."
            ]
        if self.report is None:
            return []
        lines = ["", *self.report.report()]
        response = self.response
        if response is not None:
            lines += [f"Alert {line}" for line in response.deliveries]
            if response.note:
                lines.append(response.note)
            if response.retrain is not None:
                lines += response.retrain.report()[1:]
        lines += [f"Report:     {self.files['monitoring']}  ({self.files['report']})"]
        lines.append(
            "Figures are from a research demonstration, not a medical device: they are not "
            "a clinical validation."
        )
        return lines


def monitor(
    spec: Any,
    config: Path,
    since: str | None,
    until: str | None,
    out: Path,
    no_cache: bool = False,
    announce: Callable[[str], None] = print,
) -> MonitorOutcome:
    """Runs the monitoring pipeline on the window and writes its files to ``out``.

    Raises:
        RunError: No production model, or a failed run.
    """
    from lifecycle.outputs import write_monitoring_outputs
    from lifecycle.production import NoProductionModelError, require_production
    from pipelines.monitoring import monitoring_pipeline
    from xray.logic.monitoring import parse_time

    try:
        for name, value in (("--since", since), ("--until", until)):
            if value:
                parse_time(value, name)
    except ValueError as exc:
        raise RunError(str(exc)) from None
    run_config = yaml.safe_load(config.read_text()) or {}
    model = run_config.get("model") or {}
    try:
        production = require_production(model.get("name", MODEL_NAME))
    except NoProductionModelError as exc:
        raise RunError(str(exc)) from None
    merged = merged_config(
        config, spec, pipeline_steps=PIPELINE_STEPS["monitoring"], pipeline="monitoring"
    )
    announce(f"Monitoring the answers of model version {production.number} (production).")
    pipeline = monitoring_pipeline.with_options(config_path=str(merged), enable_cache=not no_cache)
    scheduled = (yaml.safe_load(merged.read_text()) or {}).get("schedule")
    run = run_pipeline(pipeline, since=since, until=until)
    outcome = MonitorOutcome(schedule=scheduled)
    if scheduled and spec.is_remote:
        return outcome  # the orchestrator now runs it on the schedule; nothing ran here
    run = run or latest_run("monitoring")
    if run is None:
        return outcome
    outcome.report = output(run, "assess_live_quality", MONITORING_REPORT_ARTIFACT)
    outcome.response = output(run, "handle_monitoring", MONITORING_RESPONSE_ARTIFACT)
    html = output(run, "assess_live_quality", MONITORING_HTML_ARTIFACT)
    drift_html = output(run, "check_inference_drift", INFERENCE_DRIFT_REPORT_ARTIFACT)
    if outcome.report is not None and html is not None:
        outcome.files = write_monitoring_outputs(
            out, outcome.report, str(html), None if drift_html is None else str(drift_html)
        )
    return outcome
