"""The data gates inside the training pipeline: fail mode stops it, warn mode records."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from zenml.client import Client
from zenml.enums import ExecutionStatus

from stacks.registry import load_stack_spec, register_stack
from synthetic import encode, make_kaggle_tree, small_run_config
from xray.logic.constants import MODEL_NAME

pytestmark = pytest.mark.integration
BLANK = "train/NORMAL/IM-0999-0001.png"


def _config(tmp: Path, quality_mode: str) -> Path:
    return small_run_config(tmp / f"training-{quality_mode}.yaml", 40, 2, quality_mode)


@pytest.fixture(scope="module")
def data_with_blank_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_kaggle_tree(
        tmp_path_factory.mktemp("gate") / "chest_xray",
        per_class={"train": 16, "val": 2, "test": 8},
        size=48,
    )
    (root / BLANK).write_bytes(encode(np.full((48, 48), 128, np.uint8), "PNG"))
    return root


def _run(config: Path, data: Path) -> Any:
    from pipelines.training import training_pipeline

    register_stack(load_stack_spec("local"))
    return training_pipeline.with_options(config_path=str(config))(data_dir=str(data))


def test_fail_mode_stops_before_training_and_names_the_file(
    data_with_blank_image: Path, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match="validation_gate"):
        _run(_config(tmp_path, "fail"), data_with_blank_image)
    run = Client().list_pipeline_runs(sort_by="desc:created", size=1).items[0]
    assert run.status == ExecutionStatus.FAILED
    gate_step = run.steps["validation_gate"]
    assert gate_step.status == ExecutionStatus.FAILED
    assert "near-constant images" in gate_step.exception_info.message
    assert BLANK in gate_step.exception_info.message
    assert (
        "train_model" not in run.steps
        or run.steps["train_model"].status != ExecutionStatus.COMPLETED
    )
    quality = run.steps["check_data_quality"]
    assert quality.run_metadata["passed"] is False
    assert quality.run_metadata["failed_checks"] == ["near-constant images"]
    report = quality.outputs["data_quality_report"][0]
    assert report.visualizations, "the HTML report must be a dashboard visualization"
    verdict = run.steps["check_data_quality"].outputs["data_quality_verdict"][0].load()
    assert verdict.passed is False and verdict.mode == "fail"


def test_warn_mode_continues_and_records_the_warning(
    data_with_blank_image: Path, tmp_path: Path
) -> None:
    run = _run(_config(tmp_path, "warn"), data_with_blank_image)
    assert run.status == ExecutionStatus.COMPLETED
    summary = run.steps["validation_gate"].outputs["validation_summary"][0].load()
    assert summary.passed is False
    assert any("near-constant images" in w and BLANK in w for w in summary.warnings)
    version = Client().get_model_version(MODEL_NAME, run.model_version.number)
    recorded = version.run_metadata["data_validation"]
    assert recorded["passed"] is False and recorded["warnings"]
    drift = run.steps["check_data_drift"]
    assert drift.run_metadata["passed"] is True
    assert drift.outputs["data_drift_report"][0].visualizations
