"""requirements.txt (the pip route) and requirements-gpu.txt (the cloud images) pin
exactly what uv.lock pins."""

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-gpu.txt"])
def test_requirements_match_the_lock(name: str) -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked: dict[str, set[str]] = {}
    for package in lock["package"]:
        locked.setdefault(_norm(package["name"]), set()).add(package.get("version", ""))
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", (ROOT / name).read_text(), re.M))
    assert pins, "requirements.txt has no pins"
    stale = {n: v for n, v in pins.items() if v not in locked.get(_norm(n), set())}
    assert not stale, f"{name} differs from uv.lock (make {name}): {stale}"
    core = (
        "zenml",
        "tensorflow",
        "keras",
        "mlflow",
        "bentoml",
        "evidently",
        "sagemaker",
        "google-cloud-aiplatform",
        "kfp",
        "pandas",
        "fsspec",
        "s3fs",
        "gcsfs",
    )
    assert all(name in {_norm(n) for n in pins} for name in core)
    assert "pytest" not in {_norm(n) for n in pins}  # dev tools stay out of the runtime pins
    gpu = {_norm(n) for n in pins if _norm(n).startswith("nvidia-cudnn")}
    assert bool(gpu) == (name == "requirements-gpu.txt"), "cuDNN wheels only in the GPU pins"


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-gpu.txt"])
def test_every_project_dependency_is_pinned(name: str) -> None:
    """A dependency added to pyproject.toml without `make requirements*.txt` is missing
    from the cloud images (found by the rehearsal: pg8000, the prediction log's driver)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_norm(re.split(r"[\[<>=;! ]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    pins = {_norm(n) for n in re.findall(r"^([A-Za-z0-9_.\-]+)==", (ROOT / name).read_text(), re.M)}
    assert not wanted - pins, f"{name} lacks {sorted(wanted - pins)}: make -B {name}"
