import copy
from typing import Any

import markupsafe
import numpy as np
import pytest

from xray.logic.metrics import bootstrap_intervals, calibration_summary, classification_metrics
from xray.ml.serving import DISCLAIMER
from xray.reporting.model_card import render_model_card

SECTIONS = (
    "Intended use",
    "Data",
    "Training",
    "Performance on the held-out test split (in-split)",
    "Performance on external test sets",
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
            "quality_failed_checks": [],
            "drift_failed_checks": [],
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
            "validation": {"warnings": [evil], "quality_failed_checks": [evil]},
        }
    )
    assert "<script>" not in page
    assert str(markupsafe.escape(evil)) in page  # the template's autoescape
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


TEMPERATURE = {
    "temperature": 1.8312,
    "applied": True,
    "min_improvement": 0.01,
    "val_nll_before": 0.4121,
    "val_nll_after": 0.3184,
    "val_ece_before": 0.0811,
    "val_ece_after": 0.0322,
}


def _section(markdown: str, title: str) -> str:
    return markdown.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_applied_temperature_is_explained(card: dict[str, Any]) -> None:
    markdown, page = render_model_card({**card, "temperature": TEMPERATURE})
    for text in (_section(markdown, "Calibration"), page):
        assert "T = 1.83, applied (validation NLL 0.412 → 0.318, ECE 0.081 → 0.032)" in text
        assert "The served model includes it" in text
        assert "test metrics and the calibration below are of the served (calibrated)" in text
    assert "fitted on the validation split" in _section(markdown, "Calibration")


def test_temperature_not_applied_or_not_recorded(card: dict[str, Any]) -> None:
    skipped = {**TEMPERATURE, "temperature": 1.02, "applied": False, "val_nll_after": 0.411}
    markdown, page = render_model_card({**card, "temperature": skipped})
    for text in (markdown, page):
        assert "T = 1.02, not applied: it did not improve validation NLL by 1 %" in text
        assert "unchanged" in text and "served (calibrated)" not in text
    for text in render_model_card(card):
        assert "Temperature scaling: not recorded" in text
    # Without test calibration, the fitted temperature still shows.
    markdown, _ = render_model_card(
        {"model_name": "m", "model_version": "1", "temperature": skipped}
    )
    assert "T = 1.02, not applied" in _section(markdown, "Calibration")


def test_calibrate_output_renders(card: dict[str, Any]) -> None:
    from xray.logic.calibration import calibrate

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    p = np.where(y == 1, 0.97, 0.03)
    p[:40] = 1 - p[:40]  # overconfident mistakes
    result = calibrate(y, p)
    markdown, page = render_model_card({**card, "temperature": result})
    assert result["applied"] and f"T = {result['temperature']:.2f}, applied" in markdown
    assert f"T = {result['temperature']:.2f}, applied" in page


def test_subtype_table_in_performance(card: dict[str, Any]) -> None:
    from xray.reporting.error_analysis import subtype_results

    paths = ["p1_bacteria_1.jpeg", "p2_bacteria_2.jpeg", "p3_bacteria_3.jpeg"]
    paths += ["p4_virus_4.jpeg", "p5_virus_5.jpeg", "IM-1.jpeg", "IM-2.jpeg", "IM-3.jpeg"]
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0])
    p = np.array([0.9, 0.6, 0.3, 0.5, 0.2, 0.7, 0.1, 0.1])
    subtypes = subtype_results(paths, y, p, 0.5)
    markdown, page = render_model_card({**card, "subtypes": subtypes})
    performance = _section(markdown, "Performance on the held-out test split (in-split)")
    assert "Per PNEUMONIA subtype (from file names)" in performance
    assert "| Subtype | Images | Detected | Sensitivity | Mean P(PNEUMONIA) |" in performance
    assert "| bacteria | 3 | 2 | 0.667 | 0.600 |" in performance
    assert "| virus | 2 | 1 | 0.500 | 0.350 |" in performance
    assert "NORMAL: 3 images, specificity 0.667, mean P(PNEUMONIA) 0.300." in performance
    assert "<tr><td>bacteria</td><td>3</td><td>2</td><td>0.667</td><td>0.600</td></tr>" in page
    assert "NORMAL: 3 images, specificity 0.667" in page


def test_subtypes_absent_or_not_in_file_names(card: dict[str, Any]) -> None:
    for text in render_model_card(card):
        assert "Results per PNEUMONIA subtype: not recorded" in text
    only_normal = {"NORMAL": {"n": 4, "specificity": 0.75, "mean_probability": 0.3}}
    markdown, page = render_model_card({**card, "subtypes": only_normal})
    for text in (markdown, page):
        assert "the test file names name no subtype" in text
        assert "NORMAL: 4 images, specificity 0.750" in text
        assert "Per PNEUMONIA subtype (from file names)" not in text
    markdown, _ = render_model_card({"model_name": "m", "model_version": "1", "subtypes": {}})
    assert "name no subtype" in markdown and "NORMAL:" not in markdown


def test_error_examples_point_to_the_visualizations(card: dict[str, Any]) -> None:
    markdown, page = render_model_card({**card, "error_examples": 12})
    performance = _section(markdown, "Performance on the held-out test split (in-split)")
    assert "The 12 most confident errors on the test split" in performance
    assert "`error_examples`" in performance and "`gradcam_examples`" in performance
    assert "<code>error_examples</code>" in page and "<code>gradcam_examples</code>" in page
    markdown, _ = render_model_card({**card, "error_examples": 0})
    assert "No test image is misclassified" in markdown
    for text in render_model_card(card):
        assert "Error examples: not recorded" in text


def test_full_card_keeps_section_order(card: dict[str, Any]) -> None:
    full = {
        **card,
        "temperature": TEMPERATURE,
        "subtypes": {"virus": {"n": 1, "detected": 1, "sensitivity": 1.0, "mean_probability": 0.9}},
        "error_examples": 3,
    }
    markdown, page = render_model_card(full)
    md_positions = _positions(markdown, tuple(f"\n## {title}\n" for title in SECTIONS))
    html_positions = _positions(page, tuple(f"<h2>{title}</h2>" for title in SECTIONS))
    assert md_positions == sorted(md_positions) and html_positions == sorted(html_positions)
    assert len(page.encode()) < 100_000


def test_external_sets_and_shifted_operating_points_render(card: dict[str, Any]) -> None:
    from xray.logic.external import score_set

    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, 80)
    p = np.clip(0.5 + (y - 0.5) * 0.4 + rng.normal(0, 0.3, 80), 0, 1)
    external = score_set(y, p, [f"p{i // 2}" for i in range(80)], 0.4321, n_resamples=100)
    external.update(source="/data/site_b", dropped_overlaps=[{"file": "x"}], drifted_columns=[])
    points = {
        "none": {"sensitivity": 0.91, "specificity": 0.8, "roc_auc": 0.9},
        "blur": {"sensitivity": 0.97, "specificity": 0.55, "roc_auc": 0.85},
        "worst": {"sensitivity": 0.97, "specificity": 0.55, "roc_auc": 0.85},
    }
    threshold = {**card["threshold"], "under_shift": True, "shift_operating_points": points}
    markdown, page = render_model_card(
        {**card, "external": {"site_b": external}, "threshold": threshold}
    )
    section = _section(markdown, "Performance on external test sets")
    assert "never used for any" in section and "/data/site" in section
    assert f"{external['metrics']['specificity']:.3f}" in section
    assert "1 image(s) dropped" in section and "40 patients" in section
    op = _section(markdown, "Operating threshold")
    assert "pooled with their copies under every" in op and "0.550" in op
    assert "Performance on external test sets" in page and "0.550" in page
    none = _section(render_model_card(card)[0], "Performance on external test sets")
    assert "The figures above are in-split only" in none
