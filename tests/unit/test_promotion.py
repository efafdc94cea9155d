"""Promotion rules, merging data folders, and the inference output files."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lifecycle.outputs import write_inference_outputs
from synthetic import make_single_folder
from xray.io.loading import load_images, merge_sources
from xray.logic.promotion import PromotionGates, compare, comparison_indices, decide
from xray.logic.records import DriftResult, InferenceSummary

GATES = PromotionGates(min_auc=0.8, min_sensitivity=0.8, max_auc_drop=0.01)


def _metrics(auc: float, sensitivity: float) -> dict[str, float]:
    return {"roc_auc": auc, "sensitivity": sensitivity}


def test_first_model_needs_only_the_absolute_gates() -> None:
    decision = decide(_metrics(0.95, 0.9), GATES)
    assert decision.promoted and decision.stage == "production"
    assert "no production version yet" in decision.reasons
    failed = decide(_metrics(0.75, 0.9), GATES)
    assert not failed.promoted and failed.stage == "staging"
    assert failed.checks == {"min_auc": False, "min_sensitivity": True}
    assert failed.reasons[0] == "FAILED test AUC 0.750 vs minimum 0.800"


def test_nan_auc_never_passes() -> None:
    assert not decide(_metrics(float("nan"), 1.0), GATES).promoted
    assert decide(_metrics(float("nan"), 1.0), GATES).to_dict()["checks"]["min_auc"] is False


def _scores(rng: np.random.Generator, y: np.ndarray, separation: float) -> np.ndarray:
    return 1 / (1 + np.exp(-(separation * (y - 0.5) * 2 + rng.normal(0, 1, len(y)))))


def test_worse_model_is_refused_against_production_on_the_same_images() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100)
    good, weak = _scores(rng, y, 3.0), _scores(rng, y, 0.8)
    comparison = compare(y, weak, 0.3, good, 0.5, list(range(200)), 0)
    assert comparison.images == 200 and comparison.excluded_seen_by_production == 0
    decision = decide(_metrics(0.85, 0.9), GATES, comparison, "4")
    assert not decision.promoted
    assert decision.checks["not_worse_auc"] is False
    assert any("vs production v4" in r and r.startswith("FAILED") for r in decision.reasons)
    better = decide(_metrics(0.99, 0.95), GATES, compare(y, good, 0.5, weak, 0.3, [*range(200)], 0))
    assert better.promoted, better.reasons


def test_images_production_saw_are_left_out_of_the_comparison() -> None:
    hashes = [f"h{i}" for i in range(60)]
    keep, excluded = comparison_indices(hashes, {"h1", "h2", "h59", "other"})
    assert excluded == 3 and len(keep) == 57 and 1 not in keep and 59 not in keep
    y = np.array([0, 1] * 30)
    p_new = np.where(y == 1, 0.9, 0.1)
    # Production is perfect only on the images it saw; on the rest it guesses.
    p_old = np.full(60, 0.5)
    p_old[[1, 2, 59]] = np.where(y[[1, 2, 59]] == 1, 0.99, 0.01)
    comparison = compare(y, p_new, 0.5, p_old, 0.5, keep, excluded)
    assert comparison.images == 57 and comparison.excluded_seen_by_production == 3
    assert comparison.production["roc_auc"] == pytest.approx(0.5)
    # Too few unseen images: the whole split, with a note saying why.
    fallback = compare(y, p_new, 0.5, p_old, 0.5, keep[:5], 55)
    assert fallback.images == 60 and "optimistic" in fallback.note


def test_merged_folders_keep_paths_unique_and_sources_listed(tmp_path: Path) -> None:
    a = make_single_folder(tmp_path / "a" / "xrays", per_class=6, size=40)
    b = make_single_folder(tmp_path / "b" / "xrays", per_class=4, size=40, seed=1)
    merged = merge_sources(
        [(str(a), load_images(str(a), min_images=4)), (str(b), load_images(str(b), min_images=4))]
    )
    assert len(merged) == 20 and len(set(merged.paths)) == 20
    assert merged.paths[0].startswith("NORMAL/")  # the first folder's paths are unchanged
    assert merged.paths[-1].startswith("xrays/")
    assert merged.source == f"{a} + {b}"


def test_inference_outputs_are_written_whole(tmp_path: Path) -> None:
    predictions = pd.DataFrame(
        {"file": ["a.png"], "probability": [0.7], "label": ["PNEUMONIA"], "truth": [""]}
    )
    drift = DriftResult(
        drift_detected=True,
        share_drifted=0.5,
        drifted_features=["mean"],
        images=40,
        reference_images=100,
        max_drift_share=0.2,
        tested=True,
    )
    summary = InferenceSummary(
        source="new",
        layout="folder",
        images=1,
        predicted={"PNEUMONIA": 1},
        guard_mode="refuse",
        refused=0,
        refused_files=[],
        threshold=0.5,
        images_per_second=10.0,
        skipped=[{"file": "b.png", "reason": "truncated"}],
    )
    out = tmp_path / "out"
    paths = write_inference_outputs(out, predictions, drift, "<html></html>", summary)
    written = json.loads(paths["drift"].read_text())
    assert written["drift_detected"] is True and written["drifted_features"] == ["mean"]
    assert written["images"] == 40 and written["refused_images"] == 0 and "note" not in written
    assert json.loads(paths["summary"].read_text())["predicted"] == {"PNEUMONIA": 1}
    assert Path(written["report"]) == paths["report"].resolve()
    assert pd.read_csv(paths["skipped"]).to_dict("records") == [
        {"file": "b.png", "reason": "truncated"}
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths.values())
    # A failure while writing leaves the earlier file as it was, and no temp file.
    with pytest.raises(TypeError):
        write_inference_outputs(out, predictions, drift, None, summary)  # type: ignore[arg-type]
    assert paths["report"].read_text() == "<html></html>"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_unreachable_production_model_says_what_to_do() -> None:
    from types import SimpleNamespace

    from steps.training.promote_model import _load

    class Gone:
        uri = "s3://old-bucket/keras_model/123"

        def load(self) -> None:
            raise ConnectionError("Could not connect to the endpoint URL")

    production = SimpleNamespace(number=3, model=SimpleNamespace(name="pneumonia_classifier"))
    with pytest.raises(RuntimeError) as error:
        _load(Gone(), production)
    message = str(error.value)
    assert "Cannot load production version 3" in message and Gone.uri in message
    assert "ConnectionError: Could not connect" in message
    assert "zenml model version update pneumonia_classifier 3 --stage archived" in message
