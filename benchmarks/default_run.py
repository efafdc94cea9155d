"""The default `python run.py --stack local` on the shipped sample, then its re-run.

Each run is a fresh process in a fresh ZenML store (so the first run is a true first
run); wall time and the peak resident memory of the process tree's largest process are
measured by a wrapper process.

usage: python benchmarks/default_run.py
"""

import json
import os
import subprocess
import sys
import tempfile

from common import PROJECT_ROOT, save

WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.call([sys.executable, "run.py", "--stack", "local"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wall = time.perf_counter() - start
rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"exit_code": code, "wall_s": round(wall, 1), "peak_rss_mb": round(rss_mb)}))
"""


def timed_run(env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", WRAPPER],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if result["exit_code"] != 0:
        raise SystemExit(f"run.py failed: {result}")
    return result


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "ZENML_CONFIG_PATH": tmp,
            "ZENML_REPOSITORY_PATH": f"{tmp}/zenml-repo",  # leave the project's .zen alone
            "ZENML_ANALYTICS_OPT_IN": "false",
        }
        first = timed_run(env)
        second = timed_run(env)
    save(
        "default_run",
        {
            "first_run": first,
            "cached_rerun": second,
            "rerun_fraction_of_first": round(second["wall_s"] / first["wall_s"], 3),
        },
    )


if __name__ == "__main__":
    main()
