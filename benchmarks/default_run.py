"""The default `python run.py --stack local` on the shipped sample, then its re-run.

Each run is a fresh process in a fresh ZenML store (so the first run is a true first
run); wall time and the peak resident memory of the process tree's largest process are
measured by a wrapper process.

usage: python benchmarks/default_run.py
"""

import os
import tempfile

from common import save, timed_run


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "ZENML_CONFIG_PATH": tmp,
            "ZENML_REPOSITORY_PATH": f"{tmp}/zenml-repo",  # leave the project's .zen alone
            "ZENML_ANALYTICS_OPT_IN": "false",
        }
        first = timed_run(env, "--stack", "local")
        second = timed_run(env, "--stack", "local")
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
