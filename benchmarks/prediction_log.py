"""Serving with the prediction log on vs off: the same service, model and images, loaded
by ``../shared/bench/load.py`` at concurrency 1 and 16, alternating off/on twice in one
run (a shared 2-core machine drifts). Also checks that every answer of the "on" runs is
in the log's database.

usage: python benchmarks/prediction_log.py [--model TAG] [--images data/sample] [--rounds 2]
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

from common import PROJECT_ROOT, save
from serving import RUNS, free_port, measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pneumonia_classifier:latest")
    parser.add_argument("--images", type=Path, default=PROJECT_ROOT / "data" / "sample")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import bentoml

    from xray.io.prediction_log import PredictionStore

    ref = bentoml.models.get(args.model)
    log_dir = Path(tempfile.mkdtemp(prefix="xray-bench-log-"))
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        for switch in ("off", "on"):
            port = free_port()
            env = {
                **os.environ,
                "XRAY_MODEL_TAG": str(ref.tag),
                "XRAY_PREDICTION_LOG": switch,
                "XRAY_PREDICTION_LOG_DIR": str(log_dir),
            }
            env.pop("XRAY_PREDICTION_LOG_URL", None)
            command = [sys.executable, "-m", "bentoml", "serve", "--host", "127.0.0.1"]
            runs[switch].append(
                measure(
                    [*command, "--port", str(port)],
                    PROJECT_ROOT / "bentos",
                    env,
                    f"http://127.0.0.1:{port}",
                    "/readyz",
                    "image",
                    args.images,
                )
            )
    from xray.logic.constants import IMAGE_EXTENSIONS

    images = len([p for p in args.images.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS])
    # warm-up (concurrency 4, once) + every load run, per "on" server
    expected = args.rounds * images * (1 + sum(repeat for _, repeat in RUNS))
    logged = len(PredictionStore(f"sqlite:///{log_dir / 'predictions.db'}").window()[0])

    def mean(switch: str, concurrency: int, key: str) -> float:
        values = [run[f"c{concurrency}"][key] for run in runs[switch]]
        return sum(values) / len(values)

    summary = {
        f"c{c}": {
            "rps_off": round(mean("off", c, "rps"), 2),
            "rps_on": round(mean("on", c, "rps"), 2),
            "throughput_ratio_on_off": round(mean("on", c, "rps") / mean("off", c, "rps"), 3),
            "p99_ms_off": round(mean("off", c, "p99_ms")),
            "p99_ms_on": round(mean("on", c, "p99_ms")),
        }
        for c, _ in RUNS
    }
    save(
        "prediction_log",
        {
            "model": str(ref.tag),
            "images": str(args.images),
            "rounds": args.rounds,
            "summary": summary,
            "answers_expected_in_log": expected,
            "answers_in_log": logged,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
