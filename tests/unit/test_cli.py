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


def test_monitoring_options_belong_to_the_monitoring_pipeline() -> None:
    since = CliRunner().invoke(run.main, ["--since", "2026-12-01"])
    assert since.exit_code == 2 and "--since and --until belong to --pipeline monitoring" in (
        since.output
    )
    data = CliRunner().invoke(run.main, ["--pipeline", "monitoring", "--data", "x"])
    assert data.exit_code == 2 and "reads the service's prediction log" in data.output


def test_promote_and_approve_are_commands_with_their_own_help() -> None:
    promote = CliRunner().invoke(run.main, ["promote", "--help"])
    assert promote.exit_code == 0 and "--challenger" in promote.output
    approve = CliRunner().invoke(run.main, ["approve", "3", "--by", "Dr. A"])
    assert approve.exit_code == 2 and "--note" in approve.output


def test_a_bad_window_time_is_named(monkeypatch, tmp_path: Path) -> None:
    import pytest

    from xray.logic.monitoring import parse_time

    with pytest.raises(ValueError, match="since='yesterday' is not an ISO time"):
        parse_time("yesterday", "since")
    assert parse_time("2026-12-01", "since").tzinfo is not None
