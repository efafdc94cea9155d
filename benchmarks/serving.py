"""Serving: our BentoML service vs the same service before the performance work (issue
#18) and vs the seed-style FastAPI app, same model, same images, in one run.

All servers load the same ``model.keras`` (from the BentoML model store) and get the
same images from ``../shared/bench/load.py`` at concurrency 1 and 16, one server at a
time; ours and the baseline (``bentos/`` of the commit ``--baseline-rev``, in a temporary
git worktree) are measured ``--rounds`` times in turn and the ratios taken round by
round (median). Also measured: time from ``bentoml serve`` to ``/readyz`` and worker
RSS, and the CPU time per request of the server (all its processes) and of the load
generator, which shares the machine. With ``py-spy`` on the PATH, a profile of each of
our worker processes under load at concurrency 16 is added: the functions where the
samples were (self) and the project's functions they were under (inclusive).

usage: python benchmarks/serving.py [--model pneumonia_classifier:latest] [--images data/sample]
       [--rounds 2] [--name RESULT]
"""

import argparse
import collections
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from batch_inference import BASELINE_REV, baseline_tree
from common import PROJECT_ROOT, SHARED, save

from stacks.emulators import stop_group

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


RUNS = ((1, 1), (16, 3))
"""(concurrency, repeats of the image folder) per load run."""


PROFILE_SECONDS = 20


def _spy(pid: int, seconds: int, out: Path) -> None:
    subprocess.run(
        ["py-spy", "record", "-p", str(pid), "-d", str(seconds), "-f", "raw", "-o", str(out)],
        capture_output=True,
        check=False,
    )


def summarize_profile(raw: str, top: int = 12) -> dict[str, object]:
    """Self and inclusive shares of samples from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            if "/xray/" in frame or "service.py" in frame:
                inclusive[frame] += n

    def share(counter: collections.Counter[str]) -> dict[str, float]:
        return {k: round(v / total, 3) for k, v in counter.most_common(top)}

    return {"samples": total, "self": share(own), "project_inclusive": share(inclusive)}


def profile_under_load(pid: int, url: str, images: Path, field: str) -> dict[str, object]:
    """py-spy on every worker process of the server while it answers at concurrency 16."""
    import psutil

    workers = [p for p in psutil.Process(pid).children(recursive=True) if "python" in p.name()]
    with tempfile.TemporaryDirectory(prefix="xray-spy-") as tmp:
        outs = {p.pid: Path(tmp) / f"{p.pid}.txt" for p in workers}
        spies = [
            threading.Thread(target=_spy, args=(p.pid, PROFILE_SECONDS, outs[p.pid]))
            for p in workers
        ]
        for spy in spies:
            spy.start()
        load(url, images, field, 16, 3)
        for spy in spies:
            spy.join()
        result = {}
        for p in workers:
            name = "model" if "PneumoniaModel" in " ".join(p.cmdline()) else "api"
            if outs[p.pid].is_file():
                result[f"{name}_{p.pid}"] = summarize_profile(outs[p.pid].read_text())
        return result


IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
"""What ``load.py`` sends (one request per file, per repeat)."""


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) so far of the server's process tree, and of this
    process's finished children (the load generator runs as one)."""
    import psutil

    tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    server = sum(t.user + t.system for t in (p.cpu_times() for p in tree))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return server, children.ru_utime + children.ru_stime


def measure(
    command: list[str],
    cwd: Path,
    env: dict[str, str],
    base: str,
    ready_path: str,
    field: str,
    images: Path,
    profile: bool = False,
) -> dict:
    """Starts one server, waits for it, loads it at each concurrency (then, with
    ``profile``, under py-spy), stops it."""
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
        result: dict = {}
        files = sum(1 for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        for concurrency, repeat in RUNS:
            before = _cpu_seconds(server.pid)
            result[f"c{concurrency}"] = load(url, images, field, concurrency, repeat)
            server_s, client_s = (
                b - a for a, b in zip(before, _cpu_seconds(server.pid), strict=True)
            )
            requests = repeat * files
            result[f"c{concurrency}"]["cpu_ms_per_request"] = {
                "server": round(1000 * server_s / requests, 1),
                "load_generator": round(1000 * client_s / requests, 1),
            }
        result["ready_s"] = round(ready_s, 1)
        result["rss_mb"] = tree_rss_mb(server.pid)
        if profile and shutil.which("py-spy"):
            result["profile_c16"] = profile_under_load(server.pid, url, images, field)
        return result
    finally:
        stop_group(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pneumonia_classifier:latest")
    parser.add_argument("--images", type=Path, default=PROJECT_ROOT / "data" / "sample")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--name", default="serving", help="results/<name>.json")
    args = parser.parse_args()

    import bentoml

    ref = bentoml.models.get(args.model)
    size = int(ref.info.metadata["image_size"])

    def bento(tree: Path, profile: bool = False) -> dict:
        port = free_port()
        env = {**os.environ, "XRAY_MODEL_TAG": str(ref.tag), "PYTHONPATH": str(tree)}
        with tempfile.TemporaryDirectory(prefix="xray-bench-log-") as log_dir:
            env["XRAY_PREDICTION_LOG_DIR"] = log_dir  # the log is on, as in production
            return measure(
                [sys.executable, "-m", "bentoml", "serve", "--host", "127.0.0.1"]
                + ["--port", str(port)],
                tree / "bentos",
                env,
                f"http://127.0.0.1:{port}",
                "/readyz",
                "image",
                args.images,
                profile,
            )

    rounds = []
    with baseline_tree(args.baseline_rev) as tree:
        for i in range(args.rounds):
            last = i == args.rounds - 1
            rounds.append({"bentoml": bento(PROJECT_ROOT, profile=last), "baseline": bento(tree)})
    port = free_port()
    baseline_cmd = [sys.executable, "-c", BASELINE_LAUNCHER, str(BASELINE)]
    seed = measure(
        [*baseline_cmd, ref.path_of("model.keras"), "--port", str(port), "--size", str(size)],
        PROJECT_ROOT,
        dict(os.environ),
        f"http://127.0.0.1:{port}",
        "/docs",
        "file",
        args.images,
    )

    def median(key: str, a: str, b: str, c: str = "c16") -> float:
        return round(statistics.median(r[a][c][key] / r[b][c][key] for r in rounds), 2)

    ours_c16 = statistics.median(r["bentoml"]["c16"]["rps"] for r in rounds)
    save(
        args.name,
        {
            "model": str(ref.tag),
            "image_size": size,
            "images": str(args.images),
            "baseline": f"bentos/ at commit {args.baseline_rev} (before issue #18)",
            "rounds": rounds,
            "fastapi_seed": seed,
            "throughput_ratio_c16_vs_baseline": median("rps", "bentoml", "baseline"),
            "p99_ratio_c16_vs_baseline": median("p99_ms", "bentoml", "baseline"),
            "throughput_ratio_c1_vs_baseline": median("rps", "bentoml", "baseline", "c1"),
            "throughput_ratio_c16_vs_fastapi": round(ours_c16 / seed["c16"]["rps"], 2),
            "p99_ratio_c16_vs_fastapi": round(
                statistics.median(r["bentoml"]["c16"]["p99_ms"] for r in rounds)
                / seed["c16"]["p99_ms"],
                2,
            ),
            "code": "the prediction log on (SQLite), the input guard in refuse mode",
        },
    )


if __name__ == "__main__":
    main()
