"""A pipeline that fails in a step ends with a short error naming the step and why."""

from pathlib import Path

import pytest
from click.testing import CliRunner

import run
from synthetic import make_single_folder

pytestmark = pytest.mark.integration


def test_too_few_images_fail_the_run_with_the_reason(tmp_path: Path) -> None:
    data = make_single_folder(tmp_path / "few", per_class=3, size=40)
    (data / "NORMAL" / "bad.jpeg").write_bytes(b"not a jpeg")
    result = CliRunner().invoke(run.main, ["--stack", "local", "--data", str(data)])
    assert result.exit_code == 1, result.output
    assert "step load_dataset: Only 6 usable images" in result.output
    assert (
        "load_dataset.config.min_images" in result.output
        and "1 file(s) were skipped" in result.output
    )
