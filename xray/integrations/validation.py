"""Data quality and drift checks on the image statistics table, with Evidently reports.

Each check produces a :class:`Verdict`: every check with pass/fail, a one-line summary and
the offending files or patients. A gate (the ``validation_gate`` step) then fails the run
or only warns, per the ``mode`` in the run config. Evidently 0.7 results are read by metric
type and column, never by position or metric id (ids are hashes).
"""

import json
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from xray.io.image_stats import DRIFT_COLUMNS
from xray.logic.constants import CLASS_NAMES
from xray.logic.dataset import SkippedFile
from xray.logic.settings import DriftGateConfig, QualityGateConfig
from xray.reporting.document import render

MAX_LISTED = 50
"""Offenders listed per check in messages and reports (all are counted)."""


class DataValidationError(RuntimeError):
    """A data gate in ``fail`` mode found problems; the message lists every failed check."""


@dataclass
class Check:
    """One named check: whether it passed, a summary and the offenders."""

    name: str
    passed: bool
    summary: str
    offenders: list[str] = field(default_factory=list)

    def line(self) -> str:
        """``name: summary`` plus the first offenders."""
        shown = ", ".join(self.offenders[:MAX_LISTED])
        more = (
            f" (+{len(self.offenders) - MAX_LISTED} more)"
            if len(self.offenders) > MAX_LISTED
            else ""
        )
        return f"{self.name}: {self.summary}" + (f" [{shown}{more}]" if shown else "")


@dataclass
class Verdict:
    """The result of a quality or drift report."""

    kind: Literal["quality", "drift"]
    mode: str
    checks: list[Check]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    def message(self) -> str:
        """Every failed check, one per line, with its offenders."""
        if self.passed:
            return f"Data {self.kind} checks passed."
        lines = [f"Data {self.kind} gate: {len(self.failed)} check(s) failed:"]
        lines += [f"  - {check.line()}" for check in self.failed]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (the verdict artifact)."""
        return {
            "kind": self.kind,
            "mode": self.mode,
            "passed": self.passed,
            "failed_checks": [c.name for c in self.failed],
            "checks": [asdict(c) for c in self.checks],
            "details": self.details,
        }


# --- quality --------------------------------------------------------------------------


def _duplicates(table: pd.DataFrame, config: QualityGateConfig) -> list[Check]:
    groups = table.groupby("sha256")
    cross, within_count, within = [], 0, []
    for _digest, group in groups:
        if len(group) < 2:
            continue
        names = [f"{p} ({s})" for s, p in zip(group["split"], group["path"], strict=True)]
        if group["split"].nunique() > 1:
            cross.append(" = ".join(names))
        else:
            within_count += len(group) - 1
            within.append(" = ".join(names))
    n = max(len(table), 1)
    return [
        Check(
            "identical images across splits",
            len(cross) <= config.max_cross_split_duplicates,
            f"{len(cross)} image(s) appear in two splits (allowed: "
            f"{config.max_cross_split_duplicates})",
            cross,
        ),
        Check(
            "identical images within a split",
            within_count / n <= config.max_duplicate_fraction,
            f"{within_count} repeated image(s), {within_count / n:.1%} of all (allowed: "
            f"{config.max_duplicate_fraction:.1%})",
            within,
        ),
    ]


def _leakage(table: pd.DataFrame) -> Check:
    splits_of = table.groupby("patient")["split"].unique()
    leaked = [f"{p} in {'+'.join(sorted(s))}" for p, s in splits_of.items() if len(s) > 1]
    return Check(
        "patient leakage across splits",
        not leaked,
        f"{len(leaked)} patient(s) in more than one split",
        leaked,
    )


def _class_balance(table: pd.DataFrame, config: QualityGateConfig) -> Check:
    bad, parts = [], []
    for split, group in table.groupby("split", sort=False):
        shares = group["label"].value_counts(normalize=True)
        minority = min(float(shares.get(name, 0.0)) for name in CLASS_NAMES)
        parts.append(
            f"{split} " + "/".join(f"{int((group['label'] == c).sum())}" for c in CLASS_NAMES)
        )
        if minority < config.min_class_fraction:
            bad.append(f"{split}: minority class {minority:.1%}")
    return Check(
        "class balance per split",
        not bad,
        f"NORMAL/PNEUMONIA per split: {', '.join(parts)}; each class needs "
        f">= {config.min_class_fraction:.0%}",
        bad,
    )


def _size_outliers(table: pd.DataFrame, config: QualityGateConfig) -> Check:
    low, high = config.aspect_ratio_range
    log_area = np.log(table["width"].astype(float) * table["height"].astype(float))
    median = float(np.median(log_area))
    # Robust z-score; the scale never drops below 0.1 (about 10 % in area), so a data set
    # of one size does not make every slightly different image an outlier.
    scale = max(float(np.median(np.abs(log_area - median))) * 1.4826, 0.1)
    z = np.abs(log_area - median) / scale
    aspect = table["aspect_ratio"]
    outlier = (aspect < low) | (aspect > high) | (z > config.size_outlier_z)
    offenders = [
        f"{p} ({s}, {w}x{h})"
        for s, p, w, h in table.loc[outlier, ["split", "path", "width", "height"]].itertuples(
            index=False
        )
    ]
    worst = max(
        (float(outlier[table["split"] == s].mean()) for s in table["split"].unique()),
        default=0.0,
    )
    return Check(
        "image size outliers",
        worst <= config.max_size_outlier_fraction,
        f"{len(offenders)} image(s) with aspect ratio outside {low}-{high} or an unusual "
        f"size; worst split {worst:.1%} (allowed: {config.max_size_outlier_fraction:.1%})",
        offenders,
    )


def _near_constant(table: pd.DataFrame, config: QualityGateConfig) -> Check:
    flat = table[table["std"] < config.min_intensity_std]
    offenders = [
        f"{s}/{p} (std {v:.1f})"
        for s, p, v in flat[["split", "path", "std"]].itertuples(index=False)
    ]
    return Check(
        "near-constant images",
        len(offenders) <= config.max_near_constant,
        f"{len(offenders)} image(s) with pixel std < {config.min_intensity_std} "
        f"(allowed: {config.max_near_constant})",
        offenders,
    )


def _unreadable(skipped: list[SkippedFile], n_loaded: int, config: QualityGateConfig) -> Check:
    found = n_loaded + len(skipped)
    share = len(skipped) / found if found else 0.0
    return Check(
        "unreadable or corrupt files",
        share <= config.max_unreadable_fraction,
        f"{len(skipped)} of {found} file(s) skipped when loading ({share:.1%}; allowed: "
        f"{config.max_unreadable_fraction:.1%})",
        [f"{s.path}: {s.reason}" for s in skipped],
    )


def quality_checks(
    table: pd.DataFrame, skipped: list[SkippedFile], config: QualityGateConfig
) -> list[Check]:
    """The project's own quality checks on the statistics table (all splits together)."""
    return [
        _unreadable(skipped, len(table), config),
        *_duplicates(table, config),
        _leakage(table),
        _class_balance(table, config),
        _size_outliers(table, config),
        _near_constant(table, config),
    ]


def _data_definition(columns: list[str]) -> Any:
    from evidently import DataDefinition

    return DataDefinition(numerical_columns=columns, categorical_columns=["label", "split", "mode"])


def _evidently_tests(snapshot: Any) -> list[Check]:
    checks = []
    for test in snapshot.dict()["tests"]:
        status = str(getattr(test["status"], "value", test["status"]))
        checks.append(Check(f"evidently: {test['name']}", status == "SUCCESS", test["description"]))
    return checks


def quality_report(
    table: pd.DataFrame, skipped: list[SkippedFile], config: QualityGateConfig
) -> tuple[Verdict, str]:
    """Runs the quality checks and Evidently's DataSummaryPreset on the statistics.

    Args:
        table: The statistics table (:func:`xray.io.image_stats.statistics_table`).
        skipped: Files the load step could not use.
        config: Gate thresholds.

    Returns:
        The verdict and a standalone HTML report (verdict summary + Evidently report).
    """
    from evidently import Dataset, Report
    from evidently.presets import DataSummaryPreset
    from evidently.tests import eq

    columns = list(DRIFT_COLUMNS)
    report = Report(
        [
            DataSummaryPreset(
                columns=[*columns, "label", "split", "mode"],
                dataset_missing_value_count_tests=[eq(0)],
                empty_row_count_tests=[eq(0)],
            )
        ],
        include_tests=False,  # only the tests named above, not Evidently's automatic ones
    )
    with warnings.catch_warnings():  # constant columns (all images one size) divide by 0
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = report.run(Dataset.from_pandas(table, data_definition=_data_definition(columns)))
    checks = quality_checks(table, skipped, config) + _evidently_tests(snapshot)
    splits = {s: int(n) for s, n in table["split"].value_counts(sort=False).items()}
    details = {"images_per_split": splits, "skipped": len(skipped)}
    verdict = Verdict("quality", config.mode, checks, details)
    return verdict, _with_summary(snapshot.get_html_str(as_iframe=False), verdict)


# --- drift ----------------------------------------------------------------------------


def _read_drift(snapshot: Any) -> dict[str, Any]:
    """Share and per-column drift from a DataDriftPreset snapshot, by metric type."""
    result = snapshot.dict()
    share, count, per_column = None, None, {}
    values = {m["id"]: m for m in result["metrics"]}
    for metric in result["metrics"]:
        config = metric["config"]
        if config["type"].endswith("DriftedColumnsCount"):
            share, count = float(metric["value"]["share"]), int(metric["value"]["count"])
        elif config["type"].endswith("ValueDrift"):
            per_column[config["column"]] = {
                "score": float(metric["value"]),
                "method": config["method"],
                "threshold": float(config["threshold"]),
                "drifted": False,
            }
    for test in result["tests"]:
        params = test["metric_config"]["params"]
        if params.get("type", "").endswith("ValueDrift") and params.get("column") in per_column:
            status = str(getattr(test["status"], "value", test["status"]))
            per_column[params["column"]]["drifted"] = status != "SUCCESS"
    if share is None:
        raise ValueError(f"No DriftedColumnsCount metric in the drift report: {list(values)}")
    drifted = sorted(c for c, r in per_column.items() if r["drifted"])
    return {"share": share, "count": count, "drifted_columns": drifted, "columns": per_column}


def drift_report(
    table: pd.DataFrame,
    config: DriftGateConfig,
    reference: str | pd.DataFrame = "train",
    current: tuple[str, ...] = ("val", "test"),
) -> tuple[Verdict, str]:
    """Compares the statistics of each current split with the reference (Evidently).

    Args:
        table: Statistics table with a ``split`` column.
        config: Columns, method and gate threshold.
        reference: The reference split's name in ``table``, or a reference table (e.g.
            the training statistics of a registered model, for new data).
        current: Split names in ``table`` to compare with the reference.

    Returns:
        The verdict (one check per compared split; details: share, drifted columns and
        per-column scores) and a standalone HTML report with every comparison.
    """
    from evidently import Dataset, Report
    from evidently.presets import DataDriftPreset

    ref = table[table["split"] == reference] if isinstance(reference, str) else reference
    ref_name = reference if isinstance(reference, str) else "reference"
    unknown = [c for c in config.columns if c not in table.columns]
    if unknown:
        raise ValueError(f"check_data_drift.config.columns has unknown statistics: {unknown}")
    definition = _data_definition(config.columns)
    checks, details, snapshots = [], {}, []
    for name in current:
        cur = table[table["split"] == name]
        if cur.empty:
            continue
        report = Report(
            [
                DataDriftPreset(
                    columns=config.columns,
                    drift_share=config.max_drift_share,
                    method=config.method,
                    threshold=config.threshold,
                )
            ],
            include_tests=True,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            snapshot = report.run(
                Dataset.from_pandas(cur, data_definition=definition),
                Dataset.from_pandas(ref, data_definition=definition),
            )
        snapshots.append((f"{ref_name} vs {name}", snapshot))
        drift = _read_drift(snapshot)
        details[name] = drift
        named = ", ".join(
            f"{c} ({drift['columns'][c]['method']} {drift['columns'][c]['score']:.3g})"
            for c in drift["drifted_columns"]
        )
        checks.append(
            Check(
                f"drift {ref_name} -> {name}",
                drift["share"] <= config.max_drift_share,
                f"{drift['count']} of {len(config.columns)} statistics drifted "
                f"(share {drift['share']:.2f}, allowed {config.max_drift_share:.2f})"
                + (f": {named}" if named else ""),
                drift["drifted_columns"],
            )
        )
    verdict = Verdict(
        "drift",
        config.mode,
        checks,
        {
            "reference": ref_name,
            "max_drift_share": config.max_drift_share,
            "splits": details,
            "drift_share": max((d["share"] for d in details.values()), default=0.0),
            "drifted_columns": sorted({c for d in details.values() for c in d["drifted_columns"]}),
        },
    )
    return verdict, _with_summary(_combined_html(snapshots), verdict)


def gate(verdicts: list[dict[str, Any]]) -> list[str]:
    """Applies the gates to verdict dicts (:meth:`Verdict.to_dict`).

    Returns:
        Warning lines from verdicts in ``warn`` mode that did not pass.

    Raises:
        DataValidationError: Listing every failed check of every verdict in ``fail`` mode.
    """
    failures, warned = [], []
    for verdict in verdicts:
        failed = [c for c in verdict["checks"] if not c["passed"]]
        lines = [f"[{verdict['kind']}] " + Check(**c).line() for c in failed]
        (failures if verdict["mode"] == "fail" else warned).extend(lines)
    if failures:
        raise DataValidationError(
            f"Data validation failed ({len(failures)} check(s)); fix the data or change the "
            "gate settings (check_data_quality.config / check_data_drift.config; mode: warn "
            "to only warn):\n  - " + "\n  - ".join(failures)
        )
    return warned


# --- HTML -----------------------------------------------------------------------------


def _combined_html(snapshots: list[tuple[str, Any]]) -> str:
    """One standalone HTML page for several Evidently snapshots, with one copy of the
    Evidently JavaScript (each report alone inlines ~3.5 MB of it)."""
    if not snapshots:
        return render("note.html.j2", note="Nothing to compare.")
    try:
        from evidently.core.metric_types import render_widgets
        from evidently.legacy.renderers.html_widgets import group_widget

        widgets = []
        for title, snapshot in snapshots:
            widgets.append(group_widget(title=title, widgets=list(snapshot._widgets)))
            widgets.extend(snapshot._tests_widgets)
        return render_widgets(widgets, as_iframe=False)
    except (ImportError, AttributeError):  # another Evidently version: one page each
        return "".join(snapshot.get_html_str(as_iframe=False) for _, snapshot in snapshots)


def summary_html(verdict: Verdict) -> str:
    """A compact HTML table of the verdict: each check, pass/fail, summary, offenders
    (template ``gate_summary.html.j2``)."""
    return render(
        "gate_summary.html.j2",
        verdict=verdict,
        max_listed=MAX_LISTED,
        verdict_json=json.dumps(verdict.to_dict(), indent=1)[:20000],
    )


def _with_summary(report_html: str, verdict: Verdict) -> str:
    """Puts the verdict summary at the top of an Evidently HTML page."""
    summary = summary_html(verdict)
    marker = "<body>"
    index = report_html.find(marker)
    if index < 0:
        return summary + report_html
    return report_html[: index + len(marker)] + summary + report_html[index + len(marker) :]
