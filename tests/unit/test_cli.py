from pathlib import Path

from click.testing import CliRunner

import run


def test_help_shows_examples_and_stacks() -> None:
    result = CliRunner().invoke(run.main, ["--help"])
    assert result.exit_code == 0
    assert "python run.py --stack local --data" in result.output
    assert "[local" in result.output or "local]" in result.output


def test_missing_data_folder_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(run.main, ["--stack", "local", "--data", str(tmp_path / "missing")])
    assert result.exit_code == 1
    assert "does not exist" in result.output and str(tmp_path / "missing") in result.output


def test_unknown_stack_is_refused() -> None:
    result = CliRunner().invoke(run.main, ["--stack", "azure"])
    assert result.exit_code == 2 and "Invalid value for '--stack': 'azure'" in result.output


def test_resolve_data_paths(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert run.resolve_data("rel") == str(tmp_path / "rel")
    assert run.resolve_data("s3://bucket/x") == "s3://bucket/x"
    assert run.resolve_data(None).endswith("data/sample")
