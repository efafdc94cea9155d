"""Serving: our BentoML service vs the seed-style FastAPI app, same model, same images.

Both servers load the same ``model.keras`` (from the BentoML model store) and get the
same images from ``../shared/bench/load.py`` at concurrency 1 and 16, one server at a
time. Also measured: time from ``bentoml serve`` to ``/readyz`` and worker RSS.

usage: python benchmarks/serving.py [--model pneumonia_classifier:latest] [--images data/sample]
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from common import PROJECT_ROOT, SHARED, save

LOAD = SHARED / "bench" / "load.py"
BASELINE = SHARED / "bench" / "seed_fastapi_baseline.py"
BASELINE_LAUNCHER = (
    "import runpy, sys; from xray.ml.model import register_custom_objects; "
    "register_custom_objects(); sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, limit: float = 180) -> float:
    import httpx

    start = time.monotonic()
    while time.monotonic() - start < limit:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} not ready in {limit} s")


def tree_rss_mb(pid: int) -> dict[str, float]:
    import psutil

    parent = psutil.Process(pid)
    return {
        " ".join(p.cmdline()[-8:])[:60]: round(p.memory_info().rss / 2**20)
        for p in [parent, *parent.children(recursive=True)]
    }


def load(url: str, images: Path, field: str, concurrency: int, repeat: int) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            str(LOAD),
            url,
            str(images),
            "--field",
            field,
            "--concurrency",
            str(concurrency),
            "--repeat",
            str(repeat),
            "--prob-key",
            "PNEUMONIA" if field == "file" else "probability",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"rps ([\d.]+)", out).group(1))
    p50, p90, p99 = map(float, re.search(r"p50 (\d+) p90 (\d+) p99 (\d+)", out).groups())
    status = re.search(r"status (.*)", out).group(1)
    return {"rps": rps, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "status": status}


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


RUNS = ((1, 1), (16, 3))
"""(concurrency, repeats of the image folder) per load run."""


def measure(
    command: list[str],
    cwd: Path,
    env: dict[str, str],
    base: str,
    ready_path: str,
    field: str,
    images: Path,
) -> dict:
    """Starts one server, waits for it, loads it at each concurrency, stops it."""
    server = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready_s = wait_ready(base + ready_path, server)
        url = base + "/predict"
        load(url, images, field, 4, 1)  # warm-up
        result: dict = {f"c{c}": load(url, images, field, c, r) for c, r in RUNS}
        result["ready_s"] = round(ready_s, 1)
        result["rss_mb"] = tree_rss_mb(server.pid)
        return result
    finally:
        stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pneumonia_classifier:latest")
    parser.add_argument("--images", type=Path, default=PROJECT_ROOT / "data" / "sample")
    args = parser.parse_args()

    import bentoml

    ref = bentoml.models.get(args.model)
    size = int(ref.info.metadata["image_size"])
    results: dict[str, dict] = {}

    port = free_port()
    results["bentoml"] = measure(
        [sys.executable, "-m", "bentoml", "serve", "--host", "127.0.0.1", "--port", str(port)],
        PROJECT_ROOT / "bentos",
        {**os.environ, "XRAY_MODEL_TAG": str(ref.tag)},
        f"http://127.0.0.1:{port}",
        "/readyz",
        "image",
        args.images,
    )
    port = free_port()
    baseline_cmd = [sys.executable, "-c", BASELINE_LAUNCHER, str(BASELINE)]
    results["fastapi_seed"] = measure(
        [*baseline_cmd, ref.path_of("model.keras"), "--port", str(port), "--size", str(size)],
        PROJECT_ROOT,
        dict(os.environ),
        f"http://127.0.0.1:{port}",
        "/docs",
        "file",
        args.images,
    )

    ours_c16, base_c16 = results["bentoml"]["c16"], results["fastapi_seed"]["c16"]
    save(
        "serving",
        {
            "model": str(ref.tag),
            "image_size": size,
            "images": str(args.images),
            **results,
            "throughput_ratio_c16": round(ours_c16["rps"] / base_c16["rps"], 2),
            "throughput_ratio_c1": round(
                results["bentoml"]["c1"]["rps"] / results["fastapi_seed"]["c1"]["rps"], 2
            ),
            "p99_ratio_c16": round(ours_c16["p99_ms"] / base_c16["p99_ms"], 2),
        },
    )


if __name__ == "__main__":
    main()
