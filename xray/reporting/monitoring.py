"""The monitoring report as a page (``monitoring.html``, the dashboard's visualization)."""

from xray.logic.monitoring import LIVE_KEYS
from xray.logic.records import LiveQuality, MonitoringReport
from xray.ml.serving import DISCLAIMER
from xray.reporting.document import Bullets, Notice, Paragraph, Section, Table, render


def _value(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


def _interval(bounds: list[float] | None) -> str:
    if not bounds or any(b != b for b in bounds):
        return "n/a"
    return f"{bounds[0]:.3f}-{bounds[1]:.3f}"


def _quality_rows(quality: LiveQuality) -> list[tuple[str, str, str]]:
    metrics = quality.metrics
    return [
        (
            key,
            _value(None if metrics is None else getattr(metrics, name)),
            _interval(quality.intervals.get(name)),
        )
        for key, name in LIVE_KEYS.items()
    ]


def monitoring_html(report: MonitoringReport) -> str:
    """The report as a standalone HTML page (no script, nothing loaded)."""
    live_rows = tuple(
        (
            key,
            _value(report.live.get(key)),
            _interval(report.live_intervals.get(name)),
            _value(report.reference.get(key)),
        )
        for key, name in LIVE_KEYS.items()
    )
    judged = (
        "Judged against the test figures."
        if report.quality_judged
        else "Too few labelled predictions to judge (assess_live_quality.config.min_labelled)."
    )
    histogram = report.probability_histogram
    edges, counts = histogram["edges"], histogram["counts"]
    sections = [
        Section(
            "Alerts",
            (Bullets(tuple((alert,) for alert in report.alerts)),)
            if report.alerts
            else (Paragraph(("No alert.",)),),
        ),
        Section(
            "Live quality",
            (
                Paragraph(
                    (
                        f"{report.n_predictions} prediction(s), {report.n_labelled} with a "
                        f"true label. {judged}",
                    )
                ),
                Table(("figure", "live", "95 % interval", "test split"), live_rows),
            ),
        ),
        Section(
            "What the service answered",
            (
                Paragraph(
                    (
                        f"Answered PNEUMONIA: {_value(report.positive_rate)} (test split: "
                        f"{_value(report.reference_positive_rate)}). Not accepted by the input "
                        f"guard: {_value(report.refusal_share)}.",
                    )
                ),
                Table(
                    ("P(PNEUMONIA)", "answers"),
                    tuple(
                        (f"{edges[i]:.1f}-{edges[i + 1]:.1f}", str(int(counts[i])))
                        for i in range(len(counts))
                    ),
                ),
            ),
        ),
        Section(
            "Drift of the served images",
            (
                Paragraph(
                    (
                        (
                            f"Drift detected: share of drifted statistics "
                            f"{report.share_drifted:.2f} ({', '.join(report.drifted_features)})."
                        )
                        if report.drift_detected
                        else (
                            f"No drift (share of drifted statistics {report.share_drifted:.2f})."
                            if report.drift_tested
                            else "Not tested: too few served images in the window."
                        ),
                    )
                ),
            ),
        ),
    ]
    if report.shadow is not None:
        shadow = report.shadow
        rows = tuple(
            (key, prod, chal)
            for (key, prod, _), (_, chal, _) in zip(
                _quality_rows(shadow.production), _quality_rows(shadow.challenger), strict=True
            )
        )
        sections.append(
            Section(
                f"Challenger {shadow.challenger_version} in shadow",
                (
                    Paragraph(
                        (
                            f"Scored {shadow.n_compared} request(s) beside production; same "
                            f"label on {_value(shadow.agreement)} of them. On the "
                            f"{shadow.challenger.n_labelled} labelled ones:",
                        )
                    ),
                    Table(("figure", f"production {report.model_version}", "challenger"), rows),
                ),
            )
        )
    title = f"Monitoring: model version {report.model_version or 'n/a'}"
    sections.insert(0, Section("Not a medical device", (Notice(DISCLAIMER),)))
    return render("document.html.j2", title=title, sections=sections)
