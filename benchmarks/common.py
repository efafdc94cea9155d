"""Shared helpers for the benchmark scripts (machine description, result files)."""

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED = PROJECT_ROOT.parent / "shared"
SHARED_TRAIN = SHARED / "data" / "chest_xray_224" / "train"
SEED_TRAIN = SHARED / "bench" / "seed_train_baseline.py"
RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(PROJECT_ROOT))


def machine() -> dict[str, Any]:
    """CPU, cores, memory and library versions of this machine."""
    import tensorflow as tf

    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gb, 1),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "gpus": len(tf.config.list_physical_devices("GPU")),
    }


def save(name: str, result: dict[str, Any]) -> Path:
    """Writes ``results/<name>.json`` with the machine and a timestamp."""
    RESULTS.mkdir(exist_ok=True)
    result = {
        "benchmark": name,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        **result,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return path


_WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
with open(sys.argv[1], "w") as log:
    code = subprocess.call([sys.executable, "run.py", *sys.argv[2:]], stdout=log, stderr=log)
wall = time.perf_counter() - start
rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"exit_code": code, "wall_s": round(wall, 1), "peak_rss_mb": round(rss_mb)}))
"""


def timed_run(env: dict[str, str], *args: str, cwd: Path = PROJECT_ROOT) -> dict[str, Any]:
    """``python run.py ARGS`` in a fresh process (of the checkout ``cwd``): wall time and
    its peak RSS, measured by a wrapper process; exits with the run's log tail when the
    run fails."""
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile("r", suffix=".log") as log:
        out = subprocess.run(
            [sys.executable, "-c", _WRAPPER, log.name, *args],
            cwd=cwd,
            env={**env, "PYTHONPATH": str(cwd)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        result = json.loads(out.strip().splitlines()[-1])
        if result["exit_code"] != 0:
            raise SystemExit(f"run.py {' '.join(args)} failed: {result}\n{log.read()[-4000:]}")
    return result
