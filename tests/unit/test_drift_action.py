"""handle_drift's actions and the retrain's hand-over, without running a pipeline (the
retrain itself runs in tests/integration/test_lifecycle.py)."""

import sys
from pathlib import Path

import pytest

import lifecycle.retraining as retraining
import steps.inference.handle_drift as handle
from application.score import ScoreOutcome
from stacks.registry import merge_run_config, spec_for_stack
from xray.logic.records import DriftResponse, DriftResult, InferenceSummary, RetrainResult
from xray.logic.settings import DriftActionSettings


def _drift(detected: bool) -> DriftResult:
    return DriftResult(
        drift_detected=detected,
        share_drifted=0.5 if detected else 0.0,
        drifted_features=["mean", "p50"] if detected else [],
        images=40,
        reference_images=60,
        max_drift_share=0.2,
        tested=True,
    )


def _run(detected: bool, on_drift: str) -> DriftResponse:
    config = DriftActionSettings(on_drift=on_drift)
    return handle.handle_drift.entrypoint(_drift(detected), "new", config)


def test_no_drift_and_warn_take_no_action() -> None:
    assert _run(False, "retrain").action == "none"
    assert _run(True, "warn") == DriftResponse(action="warn")


def test_fail_names_the_drifted_statistics() -> None:
    with pytest.raises(handle.DriftDetectedError, match="mean, p50"):
        _run(True, "fail")


def test_retrain_without_recorded_data_folders_says_how_to_train_by_hand(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handle, "production_sources", lambda: ("3", []))
    with pytest.raises(handle.RetrainError, match="version 3 does not record its data"):
        _run(True, "retrain")


def test_retrain_runs_the_entry_point_in_its_own_process_and_reads_its_result(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A stand-in for `python -m application.retrain`: the same arguments and result file.
    (tmp_path / "fake_retrain.py").write_text(
        "import json, sys\n"
        "args = sys.argv[1:]\n"
        "data = [args[i + 1] for i, a in enumerate(args) if a == '--data']\n"
        "out = args[args.index('--result') + 1]\n"
        "print('training on', data)\n"
        "json.dump({'data_dirs': data, 'run_name': 'training-1', 'status': 'completed',"
        " 'model_version': '4', 'promoted': True, 'reasons': ['better']}, open(out, 'w'))\n"
    )
    monkeypatch.setattr(handle, "production_sources", lambda: ("3", ["old"]))
    monkeypatch.setattr(retraining, "source_root", lambda: tmp_path)
    monkeypatch.setattr(retraining, "RETRAIN_MODULE", "fake_retrain")
    response = _run(True, "retrain")
    assert response.action == "retrain"
    assert response.retrain == RetrainResult(
        data_dirs=["old", "new"],
        run_name="training-1",
        status="completed",
        model_version="4",
        promoted=True,
        reasons=["better"],
    )


def test_a_retrain_that_dies_fails_the_step_with_its_last_output(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "dying.py").write_text("import sys\nprint('no GPU quota')\nsys.exit(3)\n")
    monkeypatch.setattr(handle, "production_sources", lambda: ("3", ["old"]))
    monkeypatch.setattr(retraining, "source_root", lambda: tmp_path)
    monkeypatch.setattr(retraining, "RETRAIN_MODULE", "dying")
    with pytest.raises(handle.RetrainError, match="exited with 3: no GPU quota"):
        _run(True, "retrain")


def test_the_retrain_entry_point_rejects_a_missing_data_folder_argument() -> None:
    import subprocess

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "application.retrain", "--config", "configs/training.yaml"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "--data" in done.stderr


def test_the_cli_reports_the_retrain() -> None:
    summary = InferenceSummary(
        source="new",
        layout="class folders",
        images=2,
        predicted={"NORMAL": 1, "PNEUMONIA": 1},
        guard_mode="refuse",
        refused=0,
        refused_files=[],
        threshold=0.5,
        images_per_second=None,
        skipped=[],
    )
    outcome = ScoreOutcome(
        model_version="3",
        summary=summary,
        drift=_drift(True),
        files={n: Path(f"/o/{n}") for n in ("predictions", "drift", "report")},
        retrained=RetrainResult(
            data_dirs=["old", "new"],
            run_name="r",
            status="completed",
            model_version="4",
            promoted=False,
            reasons=["FAILED AUC"],
        ),
    )
    text = "\n".join(outcome.report())
    assert "Drift detected: retrained on old + new." in text
    assert "version 4 NOT promoted: FAILED AUC" in text
    assert "not diagnoses" in text


def test_a_stack_file_is_found_by_its_registered_name(tmp_path: Path) -> None:
    assert spec_for_stack("xray-local").key == "local"
    assert spec_for_stack("someone-elses-stack") is None
    config = tmp_path / "c.yaml"
    config.write_text("steps: {}\n")
    merged = merge_run_config(config, None, tmp_path / "out", {"enable_cache": False})
    assert "enable_cache: false" in merged.read_text()
    assert merge_run_config(config, None, tmp_path / "out") == config
