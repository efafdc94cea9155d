"""requirements.txt (the pip route) pins exactly what uv.lock pins."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_requirements_match_the_lock() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked: dict[str, set[str]] = {}
    for package in lock["package"]:
        locked.setdefault(_norm(package["name"]), set()).add(package.get("version", ""))
    pins = dict(
        re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", (ROOT / "requirements.txt").read_text(), re.M)
    )
    assert pins, "requirements.txt has no pins"
    stale = {n: v for n, v in pins.items() if v not in locked.get(_norm(n), set())}
    assert not stale, f"requirements.txt differs from uv.lock (make requirements.txt): {stale}"
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
