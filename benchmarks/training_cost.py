"""Training cost of the robustness layers: train-step throughput with and without them,
side by side in one run (the same images, batch size and image size as the shipped
config), as a ratio.

Acquisition augmentation and per-image standardisation run inside the model on every
training batch; this measures what they add to an epoch, apart from everything else a
full-data run does (loading, validation, evaluation), and on a machine whose speed may
differ from one day to the next.

usage: python benchmarks/training_cost.py [DATA_DIR] [--steps N] [--name RESULT]
"""

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import SHARED_TRAIN, save

VARIANTS = {
    "before (geometric augmentation only)": {
        "augment_acquisition": False,
        "standardize_intensity": False,
    },
    "after (+ acquisition augmentation, per-image standardisation)": {
        "augment_acquisition": True,
        "standardize_intensity": True,
    },
}


def _throughput(images: Any, labels: Any, flags: dict[str, bool], steps: int, rounds: int) -> float:
    import keras

    from xray.ml.model import build_model
    from xray.ml.preprocessing import make_dataset

    keras.utils.set_random_seed(42)
    model = build_model(
        backbone="compact_cnn", image_size=160, weights=None, seed=42, **flags
    ).model
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    data = make_dataset(images, labels, 160, 16, shuffle=True, seed=42).repeat()
    model.fit(data, steps_per_epoch=5, epochs=1, verbose=0)  # trace and warm up
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
        best = max(best, steps * 16 / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=SHARED_TRAIN)
    parser.add_argument("--steps", type=int, default=40, help="train steps per timing round")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds (best kept)")
    parser.add_argument("--name", default="training_cost", help="results/<name>.json")
    args = parser.parse_args()

    from xray.io.loading import load_images

    dataset = load_images(str(args.data))
    pick = np.random.default_rng(0).permutation(len(dataset))[:1024]
    images = [dataset.images[i] for i in pick]
    labels = dataset.labels[pick]
    results = {}
    for name, flags in VARIANTS.items():
        results[name] = round(_throughput(images, labels, flags, args.steps, args.rounds), 1)
        print(f"{name}: {results[name]} train images/s", flush=True)
    before, after = results.values()
    save(
        args.name,
        {
            "data": str(args.data),
            "batch_size": 16,
            "image_size": 160,
            "steps_per_round": args.steps,
            "train_images_per_s": results,
            "after_over_before": round(after / before, 3),
        },
    )


if __name__ == "__main__":
    main()
