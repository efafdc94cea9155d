"""Leaving the command-line process quickly once a command has finished."""

import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn


def exit_code(exc: SystemExit) -> int:
    """The process exit status ``SystemExit`` stands for (a message is printed, status 1),
    as the interpreter itself would turn it into one."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def exit_now(code: int) -> NoReturn:
    """Ends the process with ``code`` without the interpreter's teardown.

    A run imports TensorFlow, ZenML, MLflow and Evidently; Python's own shutdown then
    spends seconds finalizing their thousands of modules and objects (2.8 s after an
    inference run on 2 cores) after every output has been written. This keeps what a
    normal exit does that has an effect: it waits for the threads that are not daemons,
    runs the ``atexit`` handlers (ZenML's, MLflow's, ``logging.shutdown``, the removal of
    temporary folders) and flushes the standard streams; it skips only the teardown.
    """
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed, or a broken pipe
            stream.flush()
    os._exit(code)


def run_and_exit(command: Callable[[], object]) -> NoReturn:
    """Runs a click command in standalone mode (it ends in ``SystemExit``), then
    :func:`exit_now` with its status. Any other exception propagates as usual."""
    try:
        command()
    except SystemExit as exc:
        exit_now(exit_code(exc))
    exit_now(0)
