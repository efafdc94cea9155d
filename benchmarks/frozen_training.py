"""Frozen-backbone training: cached features vs recomputing the backbone every epoch.

VGG16 with a frozen backbone (random weights, as offline; the cost is the same with
ImageNet weights) on real 224 px images. With cached features the images pass through
the backbone once and the head trains on the stored feature vectors; without, every
epoch runs the backbone again. The seed recipe's frozen-VGG16 training speed on the same
images is measured in the same run for reference.

usage: python benchmarks/frozen_training.py [DATA_DIR] [--images 256] [--epochs 5]
"""

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from common import SEED_TRAIN, SHARED_TRAIN, save


def seed_train_images_per_s(data: Path) -> float:
    out = subprocess.run(
        [sys.executable, str(SEED_TRAIN), str(data), "--size", "224", "--batches", "4", "--train"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(re.search(r"train_images_per_s ([\d.]+)", out).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=SHARED_TRAIN)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    from xray.io.loading import load_images
    from xray.logic.split import assign_groups
    from xray.ml.training import TrainConfig, train_classifier

    full = load_images(str(args.data))
    step = max(1, len(full) // (args.images * 2))
    sample = full.subset(range(0, len(full), step))
    keys, assigned = assign_groups(sample, {"val": 0.5, "train": 1.0}, seed=0)
    splits = {
        name: sample.subset(i for i, key in enumerate(keys) if key in wanted)
        for name, wanted in assigned.items()
    }
    results = {}
    for cached in (True, False):
        config = TrainConfig(
            backbone="vgg16",
            image_size=224,
            weights=None,
            freeze_base=True,
            augment=False,
            epochs=args.epochs,
            batch_size=32,
            early_stopping_patience=args.epochs,
            cache_frozen_features=cached,
        )
        start = time.perf_counter()
        result = train_classifier(splits["train"], splits["val"], config)
        seconds = time.perf_counter() - start
        results["cached" if cached else "recomputed"] = {
            "seconds": round(seconds, 1),
            "backbone_passes": result.backbone_passes,
            "epochs": len(result.history["loss"]),
            "train_images_per_s": round(len(splits["train"]) * args.epochs / seconds, 1),
        }
    seed = seed_train_images_per_s(args.data)
    save(
        "frozen_training",
        {
            "train_images": len(splits["train"]),
            "val_images": len(splits["val"]),
            "epochs": args.epochs,
            **results,
            "speedup_cached_vs_recomputed": round(
                results["recomputed"]["seconds"] / results["cached"]["seconds"], 2
            ),
            "seed_frozen_vgg16_train_images_per_s": seed,
            "ratio_cached_vs_seed": round(results["cached"]["train_images_per_s"] / seed, 1),
        },
    )


if __name__ == "__main__":
    main()
