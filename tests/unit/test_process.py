"""The command line's fast exit keeps what a normal exit does that has an effect."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from application.process import exit_code

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, body: str, *args: str) -> subprocess.CompletedProcess:
    script = tmp_path / "child.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import atexit, sys, tempfile, threading, time
            from pathlib import Path
            sys.path.insert(0, {str(PROJECT_ROOT)!r})
            from application.process import run_and_exit
            out = Path({str(tmp_path)!r})
            """
        )
        + textwrap.dedent(body)
    )
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=60
    )


def test_exit_waits_for_threads_runs_handlers_and_flushes(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        """
        atexit.register(lambda: (out / "atexit.txt").write_text("ran"))
        def late():
            time.sleep(0.5)
            (out / "thread.txt").write_text("done")
        threading.Thread(target=late).start()
        kept = tempfile.TemporaryDirectory(dir=out)  # removed by its atexit finalizer
        (out / "tempdir.txt").write_text(kept.name)
        sys.stdout.write("no newline, still buffered")
        def command():
            sys.exit(3)
        run_and_exit(command)
        """,
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout == "no newline, still buffered"
    assert (tmp_path / "atexit.txt").read_text() == "ran"
    assert (tmp_path / "thread.txt").read_text() == "done"
    assert not Path((tmp_path / "tempdir.txt").read_text()).exists()


CLICK_COMMAND = """
import click
@click.command()
@click.option("--n", type=int, required=True)
def command(n):
    if n < 0:
        raise click.ClickException("n must not be negative")
    click.echo(f"n={n}")
run_and_exit(command)
"""


def test_click_statuses_and_messages_are_kept(tmp_path: Path) -> None:
    ok = _run(tmp_path, CLICK_COMMAND, "--n", "4")
    assert ok.returncode == 0 and ok.stdout == "n=4\n"
    failed = _run(tmp_path, CLICK_COMMAND, "--n", "-1")
    assert failed.returncode == 1 and "Error: n must not be negative" in failed.stderr
    usage = _run(tmp_path, CLICK_COMMAND)
    assert usage.returncode == 2 and "Missing option '--n'" in usage.stderr


def test_an_unexpected_exception_is_not_swallowed(tmp_path: Path) -> None:
    result = _run(
        tmp_path, "def command():\n    raise RuntimeError('boom')\nrun_and_exit(command)\n"
    )
    assert result.returncode == 1 and "RuntimeError: boom" in result.stderr


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [(None, 0, ""), (0, 0, ""), (2, 2, ""), ("stopped: reason", 1, "stopped: reason\n")],
)
def test_exit_code_is_the_interpreters(code, status, message, capsys) -> None:
    assert exit_code(SystemExit(code)) == status
    assert capsys.readouterr().err == message


def test_run_py_exits_with_the_commands_status() -> None:
    ok = subprocess.run(
        [sys.executable, "run.py", "--help"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert ok.returncode == 0 and "Usage: run.py" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "run.py", "--stack", "azure"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Invalid value for '--stack'" in bad.stderr
