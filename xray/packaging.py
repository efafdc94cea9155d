"""BentoML packaging: the model store entry and the Bento of the prediction service."""

import ast
import json
import shutil
import tempfile
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from xray.constants import GUARD_FILE, MODEL_NAME
from xray.model import KerasModelFile

PROJECT_ROOT = Path(__file__).resolve().parent.parent
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
)
"""What the service imports; pinned to the versions installed here when a Bento is built."""


def _xray_imports(path: Path) -> set[str]:
    """The ``xray`` modules a file imports anywhere in it (function-local imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "xray" and len(parts) > 1:
                found.add(parts[1])
    return {m for m in found if (PROJECT_ROOT / "xray" / f"{m}.py").is_file()}


def service_modules() -> list[str]:
    """The ``xray`` modules the service can import, found by reading the code.

    The closure of every ``xray`` import in ``bentos/service.py`` and in the modules it
    reaches, function-local imports included (a lazily imported module is still needed
    when that function runs in the Bento). Computed, never a hand-kept list: a module
    missing from the Bento fails only when a request reaches the code that imports it.

    Returns:
        Module names (``"model"`` for ``xray/model.py``), ``__init__`` first.
    """
    todo, seen = [BENTO_DIR / "service.py"], {"__init__"}
    while todo:
        for module in _xray_imports(todo.pop()) - seen:
            seen.add(module)
            todo.append(PROJECT_ROOT / "xray" / f"{module}.py")
    return ["__init__", *sorted(seen - {"__init__"})]


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
    model_tag: str, labels: dict[str, str] | None = None, model_card: str | None = None
) -> str:
    """Builds the service's Bento from a clean context holding only what it needs.

    The context gets ``bentos/service.py``, ``bentos/bentofile.yaml``, ``model_tag.txt``
    (so the Bento always serves the model it was built for), the ``xray``
    modules the service imports (:func:`service_modules`) and a ``requirements.txt``
    pinned to this environment; nothing else from the project can end up in the Bento.

    Args:
        model_tag: The BentoML model the Bento serves (pinned into it).
        labels: Extra Bento labels.
        model_card: The model card (Markdown); it goes into the Bento as
            ``MODEL_CARD.md`` and is the Bento's description (shown by ``bentoml get``
            and on the served index page).

    Returns:
        The Bento tag.
    """
    import os
    import sys

    import bentoml

    with tempfile.TemporaryDirectory(prefix="bento-ctx-") as tmp:
        ctx = Path(tmp)
        for name in ("service.py", "bentofile.yaml"):
            shutil.copy2(BENTO_DIR / name, ctx / name)
        if model_card:
            import yaml

            (ctx / "MODEL_CARD.md").write_text(model_card)
            bentofile = yaml.safe_load((ctx / "bentofile.yaml").read_text())
            bentofile["description"] = model_card
            (ctx / "bentofile.yaml").write_text(yaml.safe_dump(bentofile, sort_keys=False))
        (ctx / "xray").mkdir()
        for module in service_modules():
            shutil.copy2(PROJECT_ROOT / "xray" / f"{module}.py", ctx / "xray" / f"{module}.py")
        (ctx / "requirements.txt").write_text("\n".join(pinned_requirements()) + "\n")
        (ctx / "model_tag.txt").write_text(model_tag + "\n")  # the Bento serves this model
        previous = os.environ.get("XRAY_MODEL_TAG")
        os.environ["XRAY_MODEL_TAG"] = model_tag  # the service class resolves its model
        sys.modules.pop("service", None)  # a service imported by an earlier build keeps its tag
        try:
            bento = bentoml.bentos.build_bentofile(
                str(ctx / "bentofile.yaml"),
                build_ctx=str(ctx),
                name=BENTO_NAME,
                labels=labels or {},
            )
        finally:
            if previous is None:
                os.environ.pop("XRAY_MODEL_TAG", None)
            else:
                os.environ["XRAY_MODEL_TAG"] = previous
    return str(bento.tag)


def export_bento(tag: str) -> bytes:
    """The Bento (with its model) as one ``.bento`` archive, to keep in the artifact store.

    ``bentoml import <file>`` (or :func:`lifecycle.production.import_bento_archive`)
    restores it, and its model, on any machine.
    """
    import bentoml

    with tempfile.TemporaryDirectory(prefix="bento-export-") as tmp:
        path = bentoml.bentos.export_bento(tag, str(Path(tmp) / "service.bento"))
        return Path(path).read_bytes()
