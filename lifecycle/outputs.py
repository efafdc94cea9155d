"""Files of a batch inference run: predictions.csv, drift.json, the HTML report."""

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from xray.logic.records import DriftResult, InferenceSummary


def _write_atomic(path: Path, text: str) -> None:
    """Writes ``path`` whole or not at all (a temp file in the same folder, renamed)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_inference_outputs(
    out_dir: Path,
    predictions: pd.DataFrame,
    drift: DriftResult,
    report_html: str,
    summary: InferenceSummary,
) -> dict[str, Path]:
    """Writes the outputs of a batch inference run into ``out_dir``.

    Files: ``predictions.csv`` (file, probability, label, truth), ``drift.json``
    (``drift_detected``, ``share_drifted``, ``drifted_features``, ``report`` and more),
    ``drift_report.html``, ``summary.json`` (counts, metrics when the truth is known) and
    ``skipped.csv`` (files that could not be scored, with the reason). Each file is
    replaced atomically; earlier files of the same names are overwritten.

    Returns:
        Name -> path of every file written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "predictions": out_dir / "predictions.csv",
        "drift": out_dir / "drift.json",
        "report": out_dir / "drift_report.html",
        "summary": out_dir / "summary.json",
        "skipped": out_dir / "skipped.csv",
    }
    _write_atomic(paths["predictions"], predictions.to_csv(index=False))
    _write_atomic(paths["report"], report_html)
    drift_json = {
        **drift.model_dump(mode="json", exclude_none=True),
        "report": str(paths["report"].resolve()),
        "refused_images": summary.refused,
    }
    _write_atomic(paths["drift"], json.dumps(drift_json, indent=2, default=str))
    _write_atomic(paths["summary"], json.dumps(summary.model_dump(mode="json"), indent=2))
    skipped = pd.DataFrame(summary.skipped, columns=["file", "reason"])
    _write_atomic(paths["skipped"], skipped.to_csv(index=False))
    return paths


def write_monitoring_outputs(
    out_dir: Path, report: Any, report_html: str, drift_html: str | None = None
) -> dict[str, Path]:
    """Writes ``monitoring.json`` (the report, NaN as null), ``monitoring.html`` and,
    when there is one, ``drift_report.html`` into ``out_dir``, each atomically.

    Returns:
        Name -> path of every file written.
    """
    from xray.logic.monitoring import as_json

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"monitoring": out_dir / "monitoring.json", "report": out_dir / "monitoring.html"}
    _write_atomic(paths["monitoring"], json.dumps(as_json(report), indent=2, default=str))
    _write_atomic(paths["report"], report_html)
    if drift_html is not None:
        paths["drift_report"] = out_dir / "drift_report.html"
        _write_atomic(paths["drift_report"], drift_html)
    return paths
