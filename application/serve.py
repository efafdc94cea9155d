"""Serve the production model version: the launcher in front of ``bentoml serve``.

The service (``bentos/service.py``) never asks ZenML which model to serve: it serves the
tag in ``XRAY_MODEL_TAG``, or the one a built Bento was built for. This launcher resolves
the ``production`` version of the ZenML Model first (importing its Bento from the
artifact store when this machine does not have it), then starts ``bentoml serve`` in
``bentos/`` with ``XRAY_MODEL_TAG`` set::

    python -m application.serve --host 127.0.0.1              # serve production
    python -m application.serve --model-name my_model --port 3001
    python -m application.serve --print-tag                   # only print the tag
    python -m application.serve --challenger staging          # + the staging version in shadow

Every other option goes to ``bentoml serve`` unchanged.
"""

import argparse
import os
import sys
import time
from collections.abc import Callable

from application.workspace import PROJECT_ROOT, ensure_zenml_repository
from xray.logic.constants import MODEL_NAME

BENTO_DIR = PROJECT_ROOT / "bentos"


def wait_until_ready(url: str, timeout: float, alive: Callable[[], bool] = lambda: True) -> bool:
    """Polls ``<url>/readyz`` until it answers 200 (True), ``timeout`` seconds pass or
    ``alive()`` turns false (False): how to wait for ``bentoml serve`` or its container.
    """
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def production_tag(model_name: str) -> str:
    """The BentoML model tag of ``model_name``'s production version, in the local store.

    Raises:
        NoProductionModelError: No production version (the message names the latest
            versions, why they were not promoted, and the commands that fix it).
    """
    from lifecycle.production import production_model_tag

    ensure_zenml_repository()
    return production_model_tag(model_name)


def main(argv: list[str] | None = None) -> int:
    """Resolves the tag, then replaces this process with ``bentoml serve``."""
    parser = argparse.ArgumentParser(
        prog="python -m application.serve",
        description="Serve the production version of a ZenML Model with bentoml serve "
        "(other options are passed to bentoml serve).",
    )
    parser.add_argument(
        "--model-name",
        default=os.environ.get("XRAY_MODEL_NAME") or MODEL_NAME,
        help=f"the ZenML Model [default: XRAY_MODEL_NAME, else {MODEL_NAME}]",
    )
    parser.add_argument(
        "--challenger",
        default=None,
        metavar="VERSION",
        help="also load this version (a number, or 'staging': the newest staging version) "
        "and score every request with it in shadow, after answering; its answers are logged "
        "for the monitoring pipeline, never returned",
    )
    parser.add_argument("--print-tag", action="store_true", help="print the tag and exit")
    args, serve_args = parser.parse_known_args(argv)
    from lifecycle.production import NoProductionModelError, version_model_tag

    env = dict(os.environ)
    try:
        tag = production_tag(args.model_name)
        if args.challenger:
            challenger, challenger_tag = version_model_tag(args.model_name, args.challenger)
            env["XRAY_CHALLENGER_TAG"] = challenger_tag
    except NoProductionModelError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    if args.print_tag:
        print(tag)
        return 0
    print(f"Serving {tag} (production version of {args.model_name}).", flush=True)
    if args.challenger:
        print(f"Shadow: {challenger_tag} (version {challenger.number}).", flush=True)
    env["XRAY_MODEL_TAG"] = tag
    os.chdir(BENTO_DIR)
    command = [sys.executable, "-m", "bentoml", "serve", *serve_args]
    os.execve(sys.executable, command, env)
    return 0  # not reached: execve replaces the process


if __name__ == "__main__":
    sys.exit(main())
