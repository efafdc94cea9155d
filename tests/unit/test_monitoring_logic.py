"""Judging a window of served answers: live figures, degradation, shifts, refusals, the
shadow challenger; the webhook; approval in the promotion rules and the card."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pandas as pd
import pytest

from xray.integrations.alerts import post_webhook
from xray.logic.metrics import classification_metrics
from xray.logic.monitoring import assess, served_statistics_table
from xray.logic.promotion import decide
from xray.logic.records import DriftResult, Metrics
from xray.logic.settings import DRIFT_COLUMNS, MonitoringSettings, PromotionGates
from xray.reporting.model_card import render_model_card
from xray.reporting.monitoring import monitoring_html

NO_DRIFT = DriftResult(
    drift_detected=False,
    share_drifted=0.0,
    drifted_features=[],
    images=100,
    reference_images=100,
    max_drift_share=0.5,
    tested=True,
)


def _reference(specificity: float = 0.9) -> Metrics:
    return Metrics(
        accuracy=0.9, sensitivity=0.9, specificity=specificity, precision=0.9, f1=0.9,
        roc_auc=0.95, pr_auc=0.95, tn=45, fp=5, fn=5, tp=45, n=100, threshold=0.5,
    )  # fmt: skip


def _window(n: int, seed: int = 0, flip: float = 0.0, challenger: bool = False) -> tuple:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    p = np.clip(truth * 0.6 + rng.normal(0.2, 0.15, n), 0, 1)
    noisy = np.where(rng.random(n) < flip, 1 - truth, truth)  # wrong labels: quality falls
    ids = [f"id{i}" for i in range(n)]
    rows = pd.DataFrame(
        {
            "inference_id": ids,
            "role": "production",
            "model_version": "3",
            "probability": p,
            "threshold": 0.5,
            "label": np.where(p >= 0.5, "PNEUMONIA", "NORMAL"),
            "accepted": True,
        }
    )
    if challenger:
        q = np.clip(p + rng.normal(0, 0.2, n), 0, 1)
        rows = pd.concat(
            [
                rows,
                rows.assign(
                    role="challenger",
                    model_version="4",
                    probability=q,
                    threshold=0.4,
                    label=np.where(q >= 0.4, "PNEUMONIA", "NORMAL"),
                ),
            ]
        )
    feedback = pd.DataFrame(
        {
            "inference_id": ids,
            "label": np.where(noisy == 1, "PNEUMONIA", "NORMAL"),
            "source": "t",
            "time": None,
        }
    )
    return rows, feedback, noisy, p


def test_live_figures_are_those_of_the_answers_and_labels() -> None:
    rows, feedback, truth, p = _window(200)
    report = assess(rows, feedback, _reference(), NO_DRIFT, MonitoringSettings())
    expected = classification_metrics(truth, p, 0.5)
    assert report.n_predictions == report.n_labelled == 200
    assert report.live["accuracy"] == pytest.approx(expected["accuracy"])
    assert report.live["auc"] == pytest.approx(expected["roc_auc"])
    low, high = report.live_intervals["specificity"]
    assert low <= report.live["specificity"] <= high
    assert report.quality_judged and not report.performance_degraded and not report.alerts
    assert sum(report.probability_histogram["counts"]) == 200


def test_falling_quality_is_an_alert_with_every_reason() -> None:
    rows, feedback, *_ = _window(200, flip=0.3)
    report = assess(rows, feedback, _reference(), NO_DRIFT, MonitoringSettings())
    assert report.performance_degraded
    assert {r.split()[1] for r in report.degradation_reasons} >= {"accuracy", "specificity"}
    assert all("95 % CI" in r for r in report.degradation_reasons)
    assert report.alerts[: len(report.degradation_reasons)] == report.degradation_reasons


def test_a_handful_of_labels_is_reported_not_judged() -> None:
    rows, feedback, *_ = _window(200, flip=0.5)
    report = assess(rows, feedback.head(10), _reference(), NO_DRIFT, MonitoringSettings())
    assert report.n_labelled == 10 and not report.quality_judged
    assert not report.performance_degraded and report.live["accuracy"] is not None


def test_withheld_answers_are_not_labelled_and_refusals_alert() -> None:
    rows, feedback, *_ = _window(100)
    rows.loc[rows.index[:30], ["accepted", "label"]] = [False, None]
    report = assess(rows, feedback, _reference(), NO_DRIFT, MonitoringSettings())
    assert report.n_labelled == 70 and report.refusal_share == pytest.approx(0.3)
    assert any(a.startswith("input guard: 30.0%") for a in report.alerts)


def test_answer_shift_and_drift_alert() -> None:
    rows, feedback, *_ = _window(100)
    rows["probability"] = 0.99
    drift = NO_DRIFT.model_copy(
        update={"drift_detected": True, "share_drifted": 0.8, "drifted_features": ["mean"]}
    )
    report = assess(rows, feedback, _reference(), drift, MonitoringSettings())
    kinds = [a.split(":")[0] for a in report.alerts]
    assert "prediction shift" in kinds and "data drift" in kinds
    assert report.positive_rate == 1.0 and report.reference_positive_rate == 0.5


def test_the_shadow_challenger_on_the_same_requests() -> None:
    rows, feedback, truth, _ = _window(120, challenger=True)
    report = assess(rows, feedback, _reference(), NO_DRIFT, MonitoringSettings())
    shadow = report.shadow
    assert shadow is not None and shadow.challenger_version == "4" and shadow.n_compared == 120
    mine = rows[rows["role"] == "production"]["label"].to_numpy()
    theirs = rows[rows["role"] == "challenger"]["label"].to_numpy()
    assert shadow.agreement == pytest.approx(np.mean(mine == theirs))
    q = rows[rows["role"] == "challenger"]["probability"].to_numpy()
    expected = classification_metrics(truth, q, 0.4)
    assert shadow.challenger.metrics.roc_auc == pytest.approx(expected["roc_auc"])
    html = monitoring_html(report)
    assert "Challenger 4 in shadow" in html and "not a medical device" in html.lower()
    assert report.n_predictions == 120  # the challenger's rows are not production answers


def test_an_empty_window_is_a_report_without_alerts() -> None:
    rows, feedback, *_ = _window(0)
    report = assess(rows, feedback, _reference(), NO_DRIFT, MonitoringSettings())
    assert report.n_predictions == 0 and report.live["accuracy"] is None and not report.alerts
    assert "No alert." in report.report()


def test_served_statistics_table_keeps_production_rows_with_statistics() -> None:
    rows = pd.DataFrame(
        {
            "role": ["production", "challenger", "production"],
            **{c: [1.0, 2.0, None] for c in DRIFT_COLUMNS},
        }
    )
    table = served_statistics_table(rows, list(DRIFT_COLUMNS))
    assert len(table) == 1 and set(table["split"]) == {"new"}


class _Receiver(BaseHTTPRequestHandler):
    status = 200
    posts: list = []

    def do_POST(self) -> None:  # noqa: N802
        type(self).posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_webhook_delivery_failure_and_unreachable_receiver() -> None:
    from stacks.emulators import free_port

    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hook?token=s3cret"
    try:
        assert post_webhook(url, "drift", {"n": 1}) == "webhook: delivered (HTTP 200)"
        assert _Receiver.posts[-1] == {"text": "drift", "details": {"n": 1}}
        _Receiver.status = 500
        assert post_webhook(url, "drift", {}) == "webhook: not delivered (HTTP 500)"
    finally:
        server.shutdown()
    unreachable = post_webhook(f"http://127.0.0.1:{free_port()}/?token=s3cret", "x", {}, 2)
    assert "cannot be reached" in unreachable and "s3cret" not in unreachable


def test_require_approval_keeps_a_passing_version_in_staging() -> None:
    metrics = {"roc_auc": 0.95, "sensitivity": 0.95}
    waiting = decide(metrics, PromotionGates(require_approval=True))
    assert not waiting.promoted and waiting.stage == "staging" and waiting.awaiting_approval
    assert "awaits sign-off" in waiting.message()
    failing = decide({"roc_auc": 0.5, "sensitivity": 0.95}, PromotionGates(require_approval=True))
    assert not failing.awaiting_approval and not failing.promoted


def test_the_card_shows_the_sign_off() -> None:
    card = {"model_name": "m", "model_version": "3"}
    markdown, _ = render_model_card(card)
    assert "Sign-off" not in markdown
    approval = {"by": "Dr. Ada", "note": "read the card", "time": "2026-12-03T08:00:00+00:00"}
    markdown, html = render_model_card({**card, "approval": approval})
    assert "Signed off by: Dr. Ada" in markdown and "read the card" in html


def test_the_grafana_dashboard_reads_metrics_the_service_exports() -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    dashboard = json.loads((root / "dashboards" / "grafana-xray.json").read_text())
    service = (root / "bentos" / "service.py").read_text()
    exported = set(re.findall(r'name="(xray_\w+)"', service))
    used = {
        re.sub(r"_(bucket|count|sum)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(xray_\w+)", target["expr"])
    }
    assert used and used <= exported, used - exported
    assert {"xray_predictions_total", "xray_shadow_comparisons_total"} <= used


def test_alerts_go_to_the_stacks_alerter_and_say_where_they_went(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import steps.monitoring.handle_monitoring as handle

    posted: list[str] = []

    class Alerter:
        name = "xray-slack"

        def post(self, text: str) -> bool:
            posted.append(text)
            return True

    class Stack:
        alerter = Alerter()

    class FakeClient:
        active_stack = Stack()

        def get_secret(self, name: str) -> None:
            raise KeyError(name)

    monkeypatch.setattr(handle, "Client", FakeClient)
    monkeypatch.delenv("XRAY_ALERT_WEBHOOK_URL", raising=False)
    rows, feedback, *_ = _window(100)
    rows["probability"] = 0.99
    report = assess(rows, feedback, _reference(), NO_DRIFT, MonitoringSettings())
    assert handle.send_alerts(report) == ["alerter xray-slack: delivered"]
    assert "prediction shift" in posted[0] and "version 3" in posted[0]
    Stack.alerter = None
    assert "no alert channel" in handle.send_alerts(report)[0]
