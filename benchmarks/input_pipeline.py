"""Input pipeline throughput: tf.data (this project) vs the seed's flow_from_directory.

Both read the real Kaggle train split at 224 px, in the same run. The seed recipe reads
and decodes files from disk with PIL and augments in NumPy on every batch. Ours reads the
files once into the data set artifact (the load step, timed separately), then decodes in
parallel inside tf.data and caches decoded uint8 images, so later epochs skip decoding;
augmentation happens inside the model on the accelerator or CPU with the training step.

usage: python benchmarks/input_pipeline.py [DATA_DIR] [--batches 40]
"""

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from common import SEED_TRAIN, SHARED_TRAIN, save


def seed_images_per_s(data: Path, batches: int) -> float:
    out = subprocess.run(
        [sys.executable, str(SEED_TRAIN), str(data), "--size", "224", "--batches", str(batches)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(re.search(r"input_images_per_s ([\d.]+)", out).group(1))


def ours(data: Path) -> dict[str, float]:
    from xray.io.loading import load_images
    from xray.ml.preprocessing import make_dataset

    start = time.perf_counter()
    dataset = load_images(str(data))
    load_s = time.perf_counter() - start
    ds = make_dataset(dataset.images, dataset.labels, 224, 32, shuffle=True)
    timings = []
    for _ in range(2):
        start = time.perf_counter()
        for _batch in ds:
            pass
        timings.append(time.perf_counter() - start)
    n = len(dataset)
    return {
        "images": n,
        "load_step_s": round(load_s, 2),
        "load_step_images_per_s": round(n / load_s, 1),
        "first_epoch_images_per_s": round(n / timings[0], 1),
        "first_epoch_incl_load_images_per_s": round(n / (timings[0] + load_s), 1),
        "cached_epoch_images_per_s": round(n / timings[1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=SHARED_TRAIN)
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()
    seed = seed_images_per_s(args.data, args.batches)
    mine = ours(args.data)
    save(
        "input_pipeline",
        {
            "data": str(args.data),
            "seed_flow_from_directory_images_per_s": seed,
            **mine,
            "ratio_first_epoch": round(mine["first_epoch_images_per_s"] / seed, 1),
            "ratio_first_epoch_incl_load": round(
                mine["first_epoch_incl_load_images_per_s"] / seed, 1
            ),
            "ratio_cached_epoch": round(mine["cached_epoch_images_per_s"] / seed, 1),
        },
    )


if __name__ == "__main__":
    main()
