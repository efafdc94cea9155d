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
