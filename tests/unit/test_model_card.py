import copy
import html
from typing import Any

import numpy as np
import pytest

from xray.metrics import bootstrap_intervals, calibration_summary, classification_metrics
from xray.model_card import render_model_card
from xray.serving import DISCLAIMER

SECTIONS = (
    "Intended use",
    "Data",
    "Training",
    "Performance on the held-out test split",
    "Operating threshold",
    "Calibration",
    "Data validation",
    "Known limitations",
)


@pytest.fixture(scope="module")
def card() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(0, 0.25, 300), 0, 1)
    return {
        "model_name": "pneumonia_classifier",
        "model_version": "7",
        "created": "2025-06-01",
        "data": {
            "source": "data/chest_xray",
            "fingerprint": "9f2c41d0be7a",
            "splits": {
                "train": {"NORMAL": 1071, "PNEUMONIA": 3105, "images": 4176, "patients": 2311},
                "val": {"NORMAL": 270, "PNEUMONIA": 778, "images": 1048, "patients": 578},
                "test": {"NORMAL": 234, "PNEUMONIA": 390, "images": 624, "patients": 401},
            },
            "split_rule": "patient-level, seed 42, official test folder kept",
            "skipped": 3,
        },
        "training": {
            "config": {"backbone": "vgg16", "image_size": 224, "learning_rate": 0.0001},
            "pretrained": True,
            "epochs_run": 9,
            "best_val_auc": 0.9612,
        },
        "metrics": classification_metrics(y, p, 0.4321),
        "intervals": bootstrap_intervals(y, p, 0.4321, n_resamples=200),
        "threshold": {
            "value": 0.4321,
            "rule": "target_sensitivity",
            "target_sensitivity": 0.95,
            "val_sensitivity": 0.9513,
            "val_specificity": 0.6877,
        },
        "calibration": calibration_summary(y, p),
        "validation": {
            "passed": True,
            "warnings": ["[drift] mean_intensity drifted between train and test"],
            "drift_share": 0.125,
            "quality_failed": [],
            "drift_failed": [],
        },
    }


def _positions(text: str, needles: tuple[str, ...]) -> list[int]:
    return [text.index(needle) for needle in needles]


def test_every_section_present_in_order_in_both_formats(card: dict[str, Any]) -> None:
    markdown, page = render_model_card(card)
    md_positions = _positions(markdown, tuple(f"\n## {title}\n" for title in SECTIONS))
    html_positions = _positions(page, tuple(f"<h2>{title}</h2>" for title in SECTIONS))
    assert md_positions == sorted(md_positions)
    assert html_positions == sorted(html_positions)
    assert markdown.startswith("# Model card: pneumonia\\_classifier 7")
    assert "<h1>Model card: pneumonia_classifier 7</h1>" in page
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<link" not in page and "<script" not in page and "src=" not in page
    assert len(page.encode()) < 100_000


def test_numbers_appear_in_both_formats(card: dict[str, Any]) -> None:
    markdown, page = render_model_card(card)
    metrics = card["metrics"]
    expected = [f"{metrics[k]:.3f}" for k in ("roc_auc", "pr_auc", "accuracy", "f1")]
    expected += [str(metrics[k]) for k in ("tn", "fp", "fn", "tp", "n")]
    expected += [f"{bound:.3f}" for bounds in card["intervals"].values() for bound in bounds]
    expected += ["0.432", "0.951", "0.688", "0.950", "9f2c41d0be7a", "0.961"]
    for split in card["data"]["splits"].values():
        expected += [str(v) for v in split.values()]
    expected += [f"{card['calibration']['ece']:.3f}", f"{card['calibration']['brier']:.3f}"]
    for text in expected:
        assert text in markdown, text
        assert text in page, text


def test_disclaimer_attribution_and_limitations(card: dict[str, Any]) -> None:
    markdown, page = render_model_card(card)
    for text in (markdown, page):
        assert DISCLAIMER in text
        assert "CC BY 4.0" in text and "doi:10.17632/rscbjbr9sj.2" in text
        assert "Guangzhou Women and Children" in text
        assert "not validated prospectively" in text.lower()
        assert "validation split only" in text
    assert 'class="notice"' in page


def test_missing_optional_parts_render_not_recorded() -> None:
    markdown, page = render_model_card({"model_name": "m", "model_version": "1"})
    for text in (markdown, page):
        for title in SECTIONS:
            assert title in text
        assert text.count("not recorded") >= 8
        assert DISCLAIMER in text


def test_missing_intervals_and_nan_metrics(card: dict[str, Any]) -> None:
    partial = copy.deepcopy(card)
    del partial["intervals"], partial["calibration"]
    partial["metrics"]["roc_auc"] = float("nan")
    markdown, page = render_model_card(partial)
    assert "| ROC AUC | n/a | not recorded |" in markdown
    assert "<td>ROC AUC</td><td>n/a</td><td>not recorded</td>" in page


def test_name_and_version_are_required() -> None:
    with pytest.raises(ValueError, match="model_version"):
        render_model_card({"model_name": "m"})


def test_values_are_escaped() -> None:
    evil = "<script>alert('x')</script> | **bold**"
    markdown, page = render_model_card(
        {
            "model_name": "m",
            "model_version": "1",
            "data": {"source": evil, "split_rule": evil},
            "training": {"config": {"backbone": evil}, "pretrained": False},
            "validation": {"warnings": [evil], "quality_failed": [evil]},
        }
    )
    assert "<script>" not in page
    assert html.escape(evil) in page
    assert "<script>" not in markdown.replace("`<script>", "")  # only inside code spans
    assert "\\<script\\>" in markdown and "\\*\\*bold\\*\\*" in markdown
    assert "No ImageNet weights were used" in markdown


def test_youden_rule_is_explained(card: dict[str, Any]) -> None:
    youden = copy.deepcopy(card)
    youden["threshold"] = {"value": 0.5, "rule": "youden"}
    markdown, page = render_model_card(youden)
    for text in (markdown, page):
        assert "Youden" in text and "sensitivity + specificity" in text
        assert "reaches" not in text


def test_test_sensitivity_below_target_is_pointed_out(card: dict[str, Any]) -> None:
    short, reached = copy.deepcopy(card), copy.deepcopy(card)
    short["metrics"]["sensitivity"] = 0.9
    reached["metrics"]["sensitivity"] = 0.97
    assert "below the validation target" in render_model_card(short)[0]
    assert "below the validation target" not in render_model_card(reached)[0]


def test_validation_gate_summary_keys_are_read(card: dict[str, Any]) -> None:
    summary = {
        "passed": False,
        "warnings": [],
        "quality_failed_checks": ["class_balance"],
        "drift_failed_checks": [],
        "drift_share": 0.0,
    }
    markdown, _ = render_model_card({**card, "validation": summary})
    assert "Data quality: failed: class\\_balance" in markdown
    assert "Data drift: passed" in markdown
