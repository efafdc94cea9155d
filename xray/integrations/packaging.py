"""BentoML packaging: the model store entry and the Bento of the prediction service."""

import json
import shutil
import tempfile
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from xray.logic.constants import GUARD_FILE, MODEL_NAME
from xray.ml.model import KerasModelFile

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BENTO_DIR = PROJECT_ROOT / "bentos"
BENTO_NAME = "pneumonia_service"
SERVICE_REQUIREMENTS = (
    "bentoml",
    "tensorflow",
    "keras",
    "numpy",
    "pillow",
    "matplotlib",
    "pydicom",
    "pylibjpeg",
    "pylibjpeg-openjpeg",
    "pylibjpeg-rle",
    "python-gdcm",
    "sqlalchemy",  # the prediction log
    "pg8000",  # ... in a PostgreSQL database (XRAY_PREDICTION_LOG_URL)
)
"""What the service imports; pinned to the versions installed here when a Bento is built."""


CORE_DISTRIBUTION = "xray_core"
"""The wheel the core ships in: the whole ``xray`` package, nothing chosen by hand."""


def _core_version(files: list[Path]) -> str:
    """The project's version plus a hash of the core's files (a changed file, a new wheel)."""
    import hashlib
    import tomllib

    digest = hashlib.sha256()
    for path in files:
        digest.update(
            path.relative_to(PROJECT_ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0"
        )
    try:
        project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
        version = str(project["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        version = "0"
    return f"{version}+{digest.hexdigest()[:12]}"


def build_core_wheel(out_dir: Path) -> Path:
    """Builds the core (every file of ``xray/``: its modules and templates) as a
    pure-Python wheel.

    A standard wheel (PEP 427: ``METADATA``, ``WHEEL``, ``RECORD`` with hashes), written
    with fixed timestamps so the same code gives the same bytes. It declares no
    dependencies: the Bento's ``requirements.txt`` pins them. Pure Python, so it also
    imports straight from the ``.whl`` file (zipimport).

    Returns:
        The wheel's path in ``out_dir``.
    """
    import base64
    import hashlib
    import zipfile

    core = PROJECT_ROOT / "xray"
    files = sorted(p for p in core.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    version = _core_version(files)
    dist_info = f"{CORE_DISTRIBUTION}-{version}.dist-info"
    entries: list[tuple[str, bytes]] = [
        (f"xray/{p.relative_to(core).as_posix()}", p.read_bytes()) for p in files
    ]
    entries.append(
        (
            f"{dist_info}/METADATA",
            (
                "Metadata-Version: 2.1\n"
                f"Name: {CORE_DISTRIBUTION.replace('_', '-')}\n"
                f"Version: {version}\n"
                "Summary: Chest X-ray classifier core (decode, guard, model); not a "
                "medical device\n"
                "Requires-Python: >=3.11\n"
            ).encode(),
        )
    )
    entries.append(
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: xray.integrations.packaging\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n",
        )
    )

    def record_line(name: str, data: bytes) -> str:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        return f"{name},sha256={digest.decode()},{len(data)}"

    record = "\n".join([*(record_line(n, d) for n, d in entries), f"{dist_info}/RECORD,,"])
    entries.append((f"{dist_info}/RECORD", (record + "\n").encode()))
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{CORE_DISTRIBUTION}-{version}-py3-none-any.whl"
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    tmp.replace(wheel)
    return wheel


def save_to_model_store(
    model: KerasModelFile,
    metadata: dict[str, Any],
    labels: dict[str, str],
    name: str = MODEL_NAME,
    guard: dict[str, Any] | None = None,
) -> str:
    """Saves a model's ``.keras`` file as ``model.keras`` in the BentoML model store.

    Args:
        model: The trained model's file.
        metadata: Threshold, class names, image size, metrics, data fingerprint...
        labels: Short string labels (e.g. the ZenML model version).
        name: The BentoML model name.
        guard: The fitted input guard, saved as ``guard.json`` beside the model.

    Returns:
        The new model's tag (``name:version``).
    """
    import bentoml

    with bentoml.models.create(name, labels=labels, metadata=metadata) as ref:
        Path(ref.path_of("model.keras")).write_bytes(model.data)
        if guard is not None:
            Path(ref.path_of(GUARD_FILE)).write_text(json.dumps(guard))
    return str(ref.tag)


def pinned_requirements() -> list[str]:
    """``name==version`` for every package the service imports, as installed now."""
    return [f"{name}=={importlib_metadata.version(name)}" for name in SERVICE_REQUIREMENTS]


def build_bento(
    model_tag: str,
    labels: dict[str, str] | None = None,
    model_card: str | None = None,
    base_image: str | None = None,
) -> str:
    """Builds the service's Bento from a clean context holding only what it needs.

    The context gets ``bentos/service.py``, ``bentos/bentofile.yaml``, ``model_tag.txt``
    (so the Bento always serves the model it was built for), the core as a wheel
    (:func:`build_core_wheel`; the service imports it from the Bento, and
    ``bentoml containerize`` installs it) and a ``requirements.txt`` pinned to this
    environment; nothing else from the project can end up in the Bento. ``bentoml build``
    runs in its own process, against that wheel: nothing in this process changes.

    Args:
        model_tag: The BentoML model the Bento serves (pinned into it).
        labels: Extra Bento labels.
        model_card: The model card (Markdown); it goes into the Bento as
            ``MODEL_CARD.md`` and is the Bento's description (shown by ``bentoml get``
            and on the served index page).
        base_image: The parent image of ``bentoml containerize`` (it needs Python 3.11
            with ``pip`` and ``useradd``: ``make base-images`` builds one); None keeps
            BentoML's default, the public ``python:3.11-slim``.

    Returns:
        The Bento tag.

    Raises:
        RuntimeError: ``bentoml build`` failed (with the end of its output).
    """
    import os
    import subprocess
    import sys

    import yaml

    with tempfile.TemporaryDirectory(prefix="bento-ctx-") as tmp:
        ctx = Path(tmp)
        shutil.copy2(BENTO_DIR / "service.py", ctx / "service.py")
        bentofile = yaml.safe_load((BENTO_DIR / "bentofile.yaml").read_text())
        wheel = build_core_wheel(ctx / "wheels")
        bentofile["python"]["wheels"] = [f"wheels/{wheel.name}"]
        bentofile["labels"] = {**bentofile.get("labels", {}), **(labels or {})}
        if base_image:
            bentofile["docker"] = {**bentofile.get("docker", {}), "base_image": base_image}
        if model_card:
            (ctx / "MODEL_CARD.md").write_text(model_card)
            bentofile["description"] = model_card
        (ctx / "bentofile.yaml").write_text(yaml.safe_dump(bentofile, sort_keys=False))
        (ctx / "requirements.txt").write_text("\n".join(pinned_requirements()) + "\n")
        (ctx / "model_tag.txt").write_text(model_tag + "\n")  # the Bento serves this model
        env = {k: v for k, v in os.environ.items() if k != "XRAY_MODEL_TAG"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(wheel), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "bentoml", "build", str(ctx)]
        command += ["-f", str(ctx / "bentofile.yaml"), "--name", BENTO_NAME, "-o", "tag"]
        done = subprocess.run(command, cwd=ctx, env=env, capture_output=True, text=True)
        tags = [line for line in done.stdout.splitlines() if line.startswith("__tag__:")]
        if done.returncode != 0 or not tags:
            raise RuntimeError(
                f"bentoml build failed (exit {done.returncode}): "
                + (done.stderr or done.stdout)[-3000:]
            )
    return tags[-1].removeprefix("__tag__:").strip()


def export_model(tag: str) -> bytes:
    """A BentoML model store entry (``model.keras``, ``guard.json``, metadata) as one
    archive, so that a step on another machine can restore it with the same tag."""
    import bentoml

    with tempfile.TemporaryDirectory(prefix="model-export-") as tmp:
        path = bentoml.models.export_model(tag, str(Path(tmp) / "model.bentomodel"))
        return Path(path).read_bytes()


def ensure_model(tag: str, archive: bytes) -> bool:
    """Makes ``tag`` present in this machine's BentoML model store, importing ``archive``
    (from :func:`export_model`) when it is missing: on a cloud stack each step runs in its
    own container, whose store starts empty.

    Returns:
        Whether it had to be imported.

    Raises:
        ValueError: The archive holds another model than ``tag``.
    """
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentoml.models.get(tag)
        return False
    except NotFound:
        pass
    with tempfile.TemporaryDirectory(prefix="model-import-") as tmp:
        path = Path(tmp) / "model.bentomodel"
        path.write_bytes(archive)
        imported = bentoml.models.import_model(str(path))
    if str(imported.tag) != tag:
        bentoml.models.delete(imported.tag)
        raise ValueError(f"The model archive holds {imported.tag}, not {tag}.")
    return True


def export_bento(tag: str) -> bytes:
    """The Bento (with its model) as one ``.bento`` archive, to keep in the artifact store.

    ``bentoml import <file>`` (or :func:`lifecycle.production.import_bento_archive`)
    restores it, and its model, on any machine.
    """
    import bentoml

    with tempfile.TemporaryDirectory(prefix="bento-export-") as tmp:
        path = bentoml.bentos.export_bento(tag, str(Path(tmp) / "service.bento"))
        return Path(path).read_bytes()
