"""Batch inference: streaming ``score_images`` vs the seed-style flow_from_directory + predict.

Both score the real Kaggle train split (5,216 JPEGs) with the default-config model
(``compact_cnn`` at 160 px, built by ``xray.ml.model.build_model``, untrained: the speed and
memory of a forward pass do not depend on the weights). Ours also lists the folder,
checks every file, computes the drift statistics and decodes with the shared
preprocessing; the seed-style peer (Keras ``ImageDataGenerator.flow_from_directory``,
``shuffle=False``, then ``model.predict``) only decodes (PIL, nearest-neighbour resize)
and predicts. Ours then scores a 10,000-image flat, unlabelled folder (hard links to the
same files under distinct names) to show that its peak memory does not grow with the
folder. Every measurement is a fresh process; its peak RSS is its own ``ru_maxrss``.

usage: python benchmarks/batch_inference.py [DATA_DIR] [--images 10000]
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import SHARED_TRAIN, save

IMAGE_SIZE = 160
BACKBONE = "compact_cnn"


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _model() -> object:
    from xray.ml.model import build_model

    return build_model(backbone=BACKBONE, image_size=IMAGE_SIZE, weights=None).model


def measure_ours(data: str, batch_size: int, workers: int) -> dict[str, float]:
    from xray.ml.inference import find_inputs, score_images

    model = _model()
    before = _rss_mb()
    start = time.perf_counter()
    files, _, layout = find_inputs(data)
    listed = time.perf_counter()
    result = score_images(model, files, IMAGE_SIZE, 0.5, batch_size=batch_size, workers=workers)
    end = time.perf_counter()
    return {
        "layout": layout,
        "images": len(result.predictions),
        "skipped": len(result.skipped),
        "list_s": round(listed - start, 2),
        "total_s": round(end - start, 1),
        "images_per_s": round(len(result.predictions) / (end - start), 1),
        "rss_before_mb": round(before),
    }


def measure_seed(data: str, batch_size: int) -> dict[str, float]:
    from tensorflow.keras.preprocessing.image import ImageDataGenerator

    model = _model()
    before = _rss_mb()
    start = time.perf_counter()
    # The seed's generator without augmentation or rescaling (our model scales inside).
    flow = ImageDataGenerator().flow_from_directory(
        data,
        target_size=(IMAGE_SIZE, IMAGE_SIZE),
        batch_size=batch_size,
        class_mode="binary",
        shuffle=False,
    )
    probabilities = model.predict(flow, verbose=0)
    end = time.perf_counter()
    return {
        "images": len(probabilities),
        "total_s": round(end - start, 1),
        "images_per_s": round(len(probabilities) / (end - start), 1),
        "rss_before_mb": round(before),
    }


def _child(args: argparse.Namespace) -> None:
    if args.measure == "ours":
        result = measure_ours(args.data, args.batch_size, args.workers)
    else:
        result = measure_seed(args.data, 32)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result))


def run_child(measure: str, data: Path, batch_size: int, workers: int) -> dict[str, float]:
    """One measurement in a fresh process (its own import, model and peak RSS)."""
    command = [sys.executable, __file__, str(data), "--measure", measure]
    command += ["--batch-size", str(batch_size), "--workers", str(workers)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{measure} on {data} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{measure} on {data}: {result}", file=sys.stderr)
    return result


def flat_folder(source: Path, target: Path, count: int) -> str:
    """``count`` images from ``source`` in one flat folder, distinct names; links if possible."""
    images = sorted(p for p in source.rglob("*") if p.suffix.lower() in {".jpeg", ".jpg", ".png"})
    target.mkdir(parents=True)
    how = "hard links"
    for i in range(count):
        src = images[i % len(images)]
        dst = target / f"{i:05d}_{src.name}"
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
            how = "copies"
    return how


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=SHARED_TRAIN)
    parser.add_argument("--images", type=int, default=10_000, help="size of the flat folder")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--measure", choices=["ours", "seed"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        _child(args)
        return

    load_before = os.getloadavg()[0]
    seed = run_child("seed", args.data, args.batch_size, args.workers)
    ours = run_child("ours", args.data, args.batch_size, args.workers)
    with tempfile.TemporaryDirectory(prefix="xray-bench-") as tmp:
        flat = Path(tmp) / "flat"
        how = flat_folder(args.data, flat, args.images)
        large = run_child("ours", flat, args.batch_size, args.workers)
    save(
        "batch_inference",
        {
            "data": str(args.data),
            "model": f"{BACKBONE} at {IMAGE_SIZE} px, untrained (weights do not change speed)",
            "batch_size": args.batch_size,
            "workers": args.workers,
            "seed_flow_from_directory_predict": seed,
            "score_images": ours,
            "score_images_flat_folder": {"files": f"{args.images} ({how})", **large},
            "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "ratio_images_per_s": round(ours["images_per_s"] / seed["images_per_s"], 2),
            "note": (
                "score_images also lists and checks every file (Pillow), computes the drift "
                "statistics and streams in batches; the seed-style peer only decodes and "
                "predicts."
            ),
        },
    )


if __name__ == "__main__":
    main()
