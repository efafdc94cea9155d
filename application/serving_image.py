"""The serving image: the production version's Bento, containerized (``make serving-image``).

    python -m application.serving_image [--model-name N] [--base-image IMAGE] [--tag TAG]

Resolves the ``production`` version of the ZenML Model (as ``python -m application.serve``
does), builds a Bento for its BentoML model with its model card inside, on the parent
image ``--base-image`` (default: ``XRAY_SERVING_BASE_IMAGE``, else BentoML's public
``python:3.11-slim``; ``make base-images`` builds one from Debian packages), and runs
``bentoml containerize``. The last line printed is the image tag:
``docker run -p 3000:3000 TAG`` serves ``/predict``, ``/readyz`` and ``/livez``.
"""

import argparse
import os
import shutil
import subprocess
import sys

from application.workspace import ensure_zenml_repository
from xray.logic.constants import MODEL_CARD_ARTIFACT, MODEL_NAME

DEFAULT_REPOSITORY = "xray-serving"


class ImageBuildError(RuntimeError):
    """Docker or ``bentoml containerize`` failed; the message says why and what to do."""


def docker_environment() -> dict[str, str]:
    """The environment for ``bentoml containerize``: the classic builder where Docker's
    BuildKit plugin (buildx) is missing, as with Debian's ``docker.io``.

    Raises:
        ImageBuildError: No ``docker`` command, or no engine answers.
    """
    env = dict(os.environ)
    if shutil.which("docker") is None:
        raise ImageBuildError("No docker command: install Docker (apt-get install docker.io).")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        raise ImageBuildError(
            "No Docker engine answers: start it (systemctl start docker, or dockerd) or set "
            "DOCKER_HOST."
        )
    if subprocess.run(["docker", "buildx", "version"], capture_output=True).returncode != 0:
        env.setdefault("DOCKER_BUILDKIT", "0")
    return env


def containerize(bento_tag: str, image_tag: str) -> str:
    """``bentoml containerize BENTO -t IMAGE``; its output streams to stderr.

    Raises:
        ImageBuildError: With the end of the build's output.
    """
    env = docker_environment()
    command = [sys.executable, "-m", "bentoml", "containerize", bento_tag, "-t", image_tag]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    sys.stderr.write(done.stdout[-20000:])
    if done.returncode != 0:
        raise ImageBuildError(
            f"bentoml containerize {bento_tag} failed (exit {done.returncode}): "
            + (done.stderr or done.stdout)[-3000:]
        )
    return image_tag


def build_serving_image(
    model_name: str = MODEL_NAME, base_image: str | None = None, tag: str | None = None
) -> str:
    """Builds the production version's serving image.

    Returns:
        The image tag.

    Raises:
        NoProductionModelError: No production version (the message says how to get one).
        ImageBuildError: Docker or the build failed.
    """
    from lifecycle.production import production_model_tag, require_production
    from xray.integrations.packaging import build_bento

    ensure_zenml_repository()
    version = require_production(model_name)
    model_tag = production_model_tag(model_name)
    try:
        card = str(version.get_artifact(MODEL_CARD_ARTIFACT).load())
    except (AttributeError, KeyError):
        card = None
        print(f"warning: version {version.number} has no model card", file=sys.stderr)
    bento = build_bento(
        model_tag,
        labels={"zenml_model": model_name, "zenml_model_version": str(version.number)},
        model_card=card,
        base_image=base_image,
    )
    image = tag or f"{DEFAULT_REPOSITORY}:{model_name}-v{version.number}-{bento.split(':')[1]}"
    print(f"Containerizing {bento} (production version {version.number})...", file=sys.stderr)
    return containerize(bento, image.lower())


def main(argv: list[str] | None = None) -> int:
    """Builds the image and prints its tag as the last line."""
    from lifecycle.production import NoProductionModelError

    parser = argparse.ArgumentParser(prog="python -m application.serving_image")
    parser.add_argument("--model-name", default=os.environ.get("XRAY_MODEL_NAME") or MODEL_NAME)
    parser.add_argument(
        "--base-image",
        default=os.environ.get("XRAY_SERVING_BASE_IMAGE") or None,
        help="parent image [default: XRAY_SERVING_BASE_IMAGE, else python:3.11-slim]",
    )
    parser.add_argument("--tag", help=f"image tag [default: {DEFAULT_REPOSITORY}:<model>-v<N>-…]")
    args = parser.parse_args(argv)
    try:
        image = build_serving_image(args.model_name, args.base_image, args.tag)
    except (NoProductionModelError, ImageBuildError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print(image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
