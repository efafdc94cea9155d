"""The service's boundary: it imports the core only (never ZenML), and with no model named
it stops with the ways to name one."""

import ast
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = {"application", "lifecycle", "materializers", "pipelines", "stacks", "steps"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def _xray_modules(path: Path) -> set[Path]:
    """The files of the xray modules a file imports anywhere in it (function-local too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            module = PROJECT_ROOT / Path(*name.split(".")).with_suffix(".py")
            if name.startswith("xray.") and module.is_file():
                found.add(module)
    return found


def test_the_service_imports_the_core_and_never_zenml() -> None:
    service = _imported_roots(PROJECT_ROOT / "bentos" / "service.py")
    assert "xray" in service
    assert not service & (PROJECT_PACKAGES | {"zenml"}), service & (PROJECT_PACKAGES | {"zenml"})
    todo, reached = [PROJECT_ROOT / "bentos" / "service.py"], set()
    while todo:  # every core module a request can reach, lazily imported ones too
        for module in _xray_modules(todo.pop()) - reached:
            reached.add(module)
            todo.append(module)
    names = {m.relative_to(PROJECT_ROOT / "xray").as_posix() for m in reached}
    assert {"ml/model.py", "ml/serving.py", "ml/guard.py", "ml/gradcam.py", "io/images.py"} <= names
    for module in reached:
        roots = _imported_roots(module)
        assert not roots & (PROJECT_PACKAGES | {"zenml", "mlflow"}), (module, roots)


def test_with_no_model_named_the_service_says_how_to_name_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("XRAY_MODEL_TAG", raising=False)
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "bentos"))
    monkeypatch.delitem(sys.modules, "service", raising=False)
    assert not (PROJECT_ROOT / "bentos" / "model_tag.txt").exists()  # only in built Bentos
    with pytest.raises(RuntimeError) as raised:
        import service  # noqa: F401
    message = str(raised.value)
    assert "python -m application.serve" in message
    assert "XRAY_MODEL_TAG=" in message and "bentoml serve pneumonia_service:latest" in message
    sys.modules.pop("service", None)
