"""Training speed at the shipped configuration: ``train_classifier`` of today's code vs
the code before the performance work (issue #18), side by side in one run, as a ratio.

Each measurement is a fresh process that trains the default model (every ``train_model``
setting at its default: ``compact_cnn`` at 160 px, batch 16, augmentation on) with the
project's own ``xray.ml.training.train_classifier`` for ``--epochs`` epochs on the same
``--train`` / ``--val`` images, and times every epoch with a Keras callback. The first
epoch also decodes the images and traces the model, so the training speed is taken from
the later epochs (training images per second, validation pass included, as in a real
run); CPU time per training image comes with it. Ours and the baseline (a temporary git
worktree of ``--baseline-rev``) alternate for ``--rounds`` rounds and the ratio is taken
round by round (median), because this machine's speed drifts.

Whether the metrics are unchanged is a separate, full run: ``benchmarks/full_data.py``
(same seed and data as the recorded run before the change; compare the test figures with
that run's 95 % intervals).

usage: python benchmarks/training_speed.py [DATA_DIR] [--train 1024] [--val 256]
       [--epochs 3] [--rounds 2] [--baseline-rev REV] [--name RESULT]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from batch_inference import BASELINE_REV, baseline_tree
from common import PROJECT_ROOT, SHARED_TRAIN, save


def measure(data: Path, n_train: int, n_val: int, epochs: int) -> dict[str, object]:
    """Trains the shipped configuration in this process and times each epoch."""
    import keras
    import numpy as np

    from xray.io.loading import load_images
    from xray.logic.settings import TrainConfig
    from xray.ml.training import train_classifier

    dataset = load_images(str(data))
    order = np.random.default_rng(0).permutation(len(dataset))
    train = dataset.subset(order[:n_train].tolist())
    val = dataset.subset(order[n_train : n_train + n_val].tolist())
    config = TrainConfig(epochs=epochs, early_stopping_patience=epochs + 1)

    class Clock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epochs: list[tuple[float, float]] = []

        def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
            self._start = (time.perf_counter(), _cpu())

        def on_epoch_end(self, epoch: int, logs: object = None) -> None:
            wall, cpu = self._start
            self.epochs.append((time.perf_counter() - wall, _cpu() - cpu))

    clock = Clock()
    result = train_classifier(train, val, config, callbacks=[clock])
    steady = clock.epochs[1:] or clock.epochs
    wall = sum(w for w, _ in steady) / len(steady)
    cpu = sum(c for _, c in steady) / len(steady)
    return {
        "epoch_s": [round(w, 1) for w, _ in clock.epochs],
        "train_images_per_s": round(n_train / wall, 1),
        "cpu_ms_per_train_image": round(1000 * cpu / n_train, 1),
        "val_auc_last": round(float(result.history["val_auc"][-1]), 4),
        "code": str(Path(sys.modules["xray"].__file__).resolve().parent.parent),
    }


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def run_child(tree: Path, args: argparse.Namespace) -> dict[str, object]:
    """One measurement in a fresh process with the code of ``tree`` (this script is
    taken from ours, so the baseline needs no copy of it)."""
    command = [sys.executable, str(Path(__file__).resolve()), str(args.data), "--measure"]
    command += ["--train", str(args.train), "--val", str(args.val), "--epochs", str(args.epochs)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "XRAY_CODE_TREE": str(tree)}
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"training in {tree} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{tree}: {result}", file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=SHARED_TRAIN)
    parser.add_argument("--train", type=int, default=1024, help="training images")
    parser.add_argument("--val", type=int, default=256, help="validation images")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--name", default="training_speed", help="results/<name>.json")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.data, args.train, args.val, args.epochs)))
        return

    rounds = []
    with baseline_tree(args.baseline_rev) as tree:
        for _ in range(args.rounds):
            rounds.append({"ours": run_child(PROJECT_ROOT, args), "before": run_child(tree, args)})

    def ratio(key: str) -> float:
        return round(statistics.median(r["ours"][key] / r["before"][key] for r in rounds), 2)

    save(
        args.name,
        {
            "data": str(args.data),
            "train_images": args.train,
            "val_images": args.val,
            "epochs": args.epochs,
            "config": "train_model defaults (compact_cnn, 160 px, batch 16, augmentation on)",
            "baseline": f"the project at commit {args.baseline_rev} (before issue #18)",
            "rounds": rounds,
            "speed_ratio": ratio("train_images_per_s"),
            "cpu_per_image_ratio": ratio("cpu_ms_per_train_image"),
        },
    )


if __name__ == "__main__":
    if os.environ.get("XRAY_CODE_TREE"):  # the measured checkout's code comes first
        sys.path.insert(0, os.environ["XRAY_CODE_TREE"])
    main()
