"""External test sets: names, overlap removal, scores with patient intervals, gates."""

from pathlib import Path

import numpy as np
import pytest

from synthetic import make_single_folder
from xray.io.loading import load_images
from xray.logic.external import combine, drop_overlaps, gate_checks, score_set, set_names
from xray.logic.promotion import PromotionGates, decide


def test_set_names_are_short_and_unique() -> None:
    assert set_names(["/data/site_a/", "s3://b/chest_xray/test", "/x/test"]) == [
        "site_a",
        "test",
        "test-2",
    ]


def test_overlapping_images_are_dropped_and_named(tmp_path: Path) -> None:
    train = load_images(str(make_single_folder(tmp_path / "train", per_class=6)), min_images=4)
    other = make_single_folder(tmp_path / "site", per_class=6, seed=5)
    for path in (other / "NORMAL").iterdir():  # other names: no patient in common
        path.rename(path.with_name("ext-" + path.name))
    for path in (other / "PNEUMONIA").iterdir():
        path.rename(path.with_name("ext-" + path.name))
    (other / "NORMAL" / "copy.jpeg").write_bytes(train.images[0])  # a copy, renamed
    site = load_images(str(other), min_images=4)
    site.patients[1] = train.patients[3]  # a patient the run already has
    combined = combine([("site", site)])
    assert set(combined.origins) == {"site"} and combined.paths[0].startswith("site/")
    kept, dropped = drop_overlaps(combined, [train])
    assert len(kept) == len(site) - 2
    by_reason = {d["reason"]: d for d in dropped}
    copy = by_reason["identical bytes"]
    assert copy["file"] == "site/NORMAL/copy.jpeg" and copy["internal_file"] == train.paths[0]
    shared = by_reason[f"patient {train.patients[3]} is in this run's own splits"]
    assert shared["internal_file"] == train.paths[train.patients.index(train.patients[3])]


def test_score_set_reports_metrics_and_patient_intervals() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(rng.integers(0, 2, 40), 3)
    p = np.clip(0.5 + (y - 0.5) * 0.5 + rng.normal(0, 0.2, len(y)), 0, 1)
    patients = [f"p{i // 3}" for i in range(len(y))]
    result = score_set(y, p, patients, 0.5, n_resamples=200)
    assert result["n"] == 120 and result["patients"] == 40
    assert result["class_counts"]["NORMAL"] + result["class_counts"]["PNEUMONIA"] == 120
    for key in ("roc_auc", "sensitivity", "specificity"):
        low, high = result["intervals"][key]
        assert low <= result["metrics"][key] <= high


def _scores(auc: float, sensitivity: float, specificity: float) -> dict:
    return {"metrics": {"roc_auc": auc, "sensitivity": sensitivity, "specificity": specificity}}


def test_external_gates_are_off_by_default_and_check_every_set() -> None:
    external = {"a": _scores(0.95, 0.96, 0.70), "b": _scores(0.97, 0.94, 0.90)}
    assert gate_checks(external, {"auc": None, "sensitivity": None, "specificity": None}) == []
    metrics = {"roc_auc": 0.99, "sensitivity": 0.95}
    assert decide(metrics, PromotionGates(), external=external).promoted
    gates = PromotionGates(min_external_auc=0.9, min_external_specificity=0.85)
    decision = decide(metrics, gates, external=external)
    assert not decision.promoted
    assert decision.checks == {
        "min_auc": True,
        "min_sensitivity": True,
        "external a auc": True,
        "external a specificity": False,
        "external b auc": True,
        "external b specificity": True,
    }
    assert "FAILED external a specificity 0.700 vs minimum 0.850" in decision.reasons


def test_external_gate_without_external_sets_fails_and_says_why() -> None:
    gates = PromotionGates(min_external_auc=0.9)
    decision = decide({"roc_auc": 0.99, "sensitivity": 0.95}, gates, external=None)
    assert not decision.promoted
    assert any("has no --external-test" in reason for reason in decision.reasons)


def test_promotion_gates_reject_out_of_range_minimum() -> None:
    with pytest.raises(ValueError):
        PromotionGates(min_external_auc=1.5)
