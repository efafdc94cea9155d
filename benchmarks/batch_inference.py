"""Batch inference: streaming ``score_images`` vs the seed-style flow_from_directory + predict,
and vs the project's own code before the performance work (issue #18), in one run.

Both score the real Kaggle train split (5,216 JPEGs) with the default-config model
(``compact_cnn`` at 160 px, built by ``xray.ml.model.build_model``, untrained: the speed and
memory of a forward pass do not depend on the weights). Ours also lists the folder,
checks every file, computes the drift statistics and decodes with the shared
preprocessing; the seed-style peer (Keras ``ImageDataGenerator.flow_from_directory``,
``shuffle=False``, then ``model.predict``) only decodes (PIL, nearest-neighbour resize)
and predicts. Ours then scores a 10,000-image flat, unlabelled folder (hard links to the
same files under distinct names) to show that its peak memory does not grow with the
folder. Every measurement is a fresh process; its peak RSS is its own ``ru_maxrss``.

The machine is shared and noisy, so the three are measured in turn, ``--rounds`` times,
and each ratio is taken round by round (the median is reported). ``baseline`` is
``score_images`` of the commit ``--baseline-rev`` (a temporary git worktree). The
``profile`` section times each stage of one image, single-threaded, the old way (full
decode, a second decode for the statistics, TensorFlow resize) and the new way (one
decode at a reduced JPEG scale shared by the statistics, Pillow resize), plus the
forward pass per image, the model as saved (old) and with its batch norms folded (new,
``xray.ml.model.inference_model``, what ``score_images`` runs): where the time goes.

``scaling_worker_processes`` is the throughput of ``score_in_processes`` (the local
stack's ``batch_predict.config.shards``) against the number of worker processes.

``full_size_jpegs`` repeats peer / baseline / ours on ``--full-size`` of the JPEGs
upscaled to the originals' size (the Kaggle originals are 400-2,900 px a side; the
shared copies were shrunk to 224 px), where decoding, not the forward pass, dominates.

usage: python benchmarks/batch_inference.py [DATA_DIR] [--images 10000] [--rounds 2]
       [--shards 1,2,4] [--full-size 800] [--name batch_inference]
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from common import PROJECT_ROOT, RESULTS, SHARED_TRAIN, save

IMAGE_SIZE = int(os.environ.get("XRAY_BENCH_IMAGE_SIZE", "160"))
BACKBONE = os.environ.get("XRAY_BENCH_BACKBONE", "compact_cnn")  # gpu.sh: vgg16 at 224
BASELINE_REV = "4a23d85"
"""The last commit before the performance work of issue #18 (today's code)."""
PROFILE_IMAGES = 400


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


def measure_processes(data: str, batch_size: int, processes: int) -> dict[str, float]:
    """``score_in_processes``: the folder in ``processes`` worker processes (shards)."""
    from xray.ml.inference import find_inputs, score_in_processes
    from xray.ml.model import KerasModelFile

    model_file = KerasModelFile.from_model(_model()).data
    start = time.perf_counter()
    files, _, _ = find_inputs(data)
    result = score_in_processes(model_file, files, IMAGE_SIZE, 0.5, processes, batch_size)
    end = time.perf_counter()
    return {
        "processes": processes,
        "images": len(result.predictions),
        "total_s": round(end - start, 1),
        "images_per_s": round(len(result.predictions) / (end - start), 1),
    }


def measure_seed(data: str, batch_size: int) -> dict[str, float]:
    """The seed-style peer. ``model.predict`` sometimes returns only many seconds after
    its last batch, the process idle meanwhile (tf.data's iterator teardown waiting for
    its autotuning thread, the stall ``xray.ml.preprocessing`` avoids):
    ``idle_after_last_batch_s``. ``images_per_s`` is the peer as it runs, that wait
    included; ``images_per_s_working`` stops the clock at its last batch."""
    import keras
    from tensorflow.keras.preprocessing.image import ImageDataGenerator

    model = _model()
    before = _rss_mb()
    batches: list[float] = []

    class LastBatch(keras.callbacks.Callback):
        def on_predict_batch_end(self, batch: int, logs: object = None) -> None:
            batches.append(time.perf_counter())

    start = time.perf_counter()
    # The seed's generator without augmentation or rescaling (our model scales inside).
    flow = ImageDataGenerator().flow_from_directory(
        data,
        target_size=(IMAGE_SIZE, IMAGE_SIZE),
        batch_size=batch_size,
        class_mode="binary",
        shuffle=False,
    )
    probabilities = model.predict(flow, verbose=0, callbacks=[LastBatch()])
    end = time.perf_counter()
    working = batches[-1] - start
    return {
        "images": len(probabilities),
        "total_s": round(end - start, 1),
        "images_per_s": round(len(probabilities) / (end - start), 1),
        "idle_after_last_batch_s": round(end - batches[-1], 1),
        "images_per_s_working": round(len(probabilities) / working, 1),
        "rss_before_mb": round(before),
    }


def _timed(function: object, items: list, repeat: int = 1) -> float:
    """Milliseconds per item of ``function(item)``, single-threaded."""
    start = time.perf_counter()
    for _ in range(repeat):
        for item in items:
            function(item)  # type: ignore[operator]
    return round((time.perf_counter() - start) / (len(items) * repeat) * 1000, 3)


def measure_profile(data: str) -> dict[str, object]:
    """Per-image cost of each stage, old way and new way, on the first images of ``data``."""
    import numpy as np
    import tensorflow as tf

    from xray.io.image_stats import decoded_statistics, image_statistics
    from xray.io.images import decode_image
    from xray.ml.model import inference_model
    from xray.ml.preprocessing import decode_for_model, resize_pixels

    files = sorted(p for p in Path(data).rglob("*") if p.suffix.lower() in {".jpeg", ".jpg"})
    step = max(1, len(files) // PROFILE_IMAGES)
    raw = [f.read_bytes() for f in files[::step][:PROFILE_IMAGES]]
    tf_resize = tf.function(
        lambda x: tf.cast(
            tf.round(
                tf.clip_by_value(
                    tf.image.resize(x, [IMAGE_SIZE] * 2, method="bilinear", antialias=True),
                    0.0,
                    255.0,
                )
            ),
            tf.uint8,
        ),
        input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)],
    )
    full = [decode_image(d).pixels for d in raw]
    tf_resize(full[0])
    once = [decode_for_model(d, IMAGE_SIZE) for d in raw]
    model = _model()
    forward = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.uint8)],
    )
    fast = inference_model(model)  # what score_images runs: batch norms folded
    folded = tf.function(
        lambda x: fast(x, training=False),
        input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.uint8)],
    )
    batch = np.stack([resize_pixels(d, IMAGE_SIZE) for d in once[:64]])
    forward(batch)
    folded(batch)
    forward_ms = _timed(lambda b: forward(b).numpy(), [batch], repeat=5) / len(batch)
    folded_ms = _timed(lambda b: folded(b).numpy(), [batch], repeat=5) / len(batch)
    old = {
        "read_ms": _timed(lambda f: f.read_bytes(), files[::step][:PROFILE_IMAGES]),
        "decode_full_ms": _timed(decode_image, raw),
        "statistics_with_own_decode_ms": _timed(image_statistics, raw),
        "tensorflow_resize_ms": _timed(lambda p: tf_resize(p).numpy(), full),
        "forward_per_image_ms": round(forward_ms, 3),
    }
    items = list(zip(once, raw, strict=True))
    new = {
        "read_ms": old["read_ms"],
        "decode_once_ms": _timed(lambda d: decode_for_model(d, IMAGE_SIZE), raw),
        "statistics_from_that_decode_ms": _timed(lambda i: decoded_statistics(*i), items),
        "pillow_resize_ms": _timed(lambda d: resize_pixels(d, IMAGE_SIZE), once),
        "forward_batch_norm_folded_per_image_ms": round(folded_ms, 3),
    }
    return {
        "images": len(raw),
        "old_way": {**old, "total_ms": round(sum(old.values()), 2)},
        "new_way": {**new, "total_ms": round(sum(new.values()), 2)},
    }


def _child(args: argparse.Namespace) -> None:
    if args.measure == "ours":
        result = measure_ours(args.data, args.batch_size, args.workers)
    elif args.measure == "profile":
        result = measure_profile(args.data)
    elif args.measure.startswith("processes-"):
        result = measure_processes(args.data, args.batch_size, int(args.measure.split("-")[1]))
    else:
        result = measure_seed(args.data, 32)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result))


@contextmanager
def baseline_tree(rev: str) -> object:
    """A temporary git worktree of the project at ``rev`` (removed afterwards)."""
    path = Path(tempfile.mkdtemp(prefix="xray-baseline-")) / "tree"
    git = ["git", "-C", str(PROJECT_ROOT)]
    subprocess.run([*git, "worktree", "add", "-f", "--detach", str(path), rev], check=True)
    try:
        yield path
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(path)], check=False)
        shutil.rmtree(path.parent, ignore_errors=True)  # the temporary folder around it


def run_child(
    measure: str, data: Path, batch_size: int, workers: int, tree: Path = PROJECT_ROOT
) -> dict[str, float]:
    """One measurement in a fresh process (its own import, model and peak RSS); with
    ``tree``, the code of that checkout (its copy of this script puts it first)."""
    script = tree / "benchmarks" / Path(__file__).name
    command = [sys.executable, str(script), str(data), "--measure", measure]
    command += ["--batch-size", str(batch_size), "--workers", str(workers)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{measure} on {data} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{measure} on {data}: {result}", file=sys.stderr)
    return result


def full_size_folder(source: Path, target: Path, count: int, side: int = 1400) -> None:
    """``count`` of the images as the Kaggle originals are stored (grayscale JPEGs of
    400-2,900 px a side; here ``side`` x ``side * 0.8``, upscaled), in class folders."""
    from PIL import Image

    images = sorted(p for p in source.rglob("*") if p.suffix.lower() in {".jpeg", ".jpg"})
    step = max(1, len(images) // count)
    for src in images[::step][:count]:
        dst = target / src.parent.name / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(src) as image:
            large = image.convert("L").resize((side, int(side * 0.8)), Image.Resampling.BICUBIC)
            large.save(dst, quality=90)


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


def measure_full_size(args: argparse.Namespace) -> dict[str, object]:
    """Peer, baseline and ours on ``args.full_size`` full-size JPEGs, in that order."""
    with tempfile.TemporaryDirectory(prefix="xray-bench-") as tmp:
        originals = Path(tmp) / "full-size"
        full_size_folder(args.data, originals, args.full_size)
        with baseline_tree(args.baseline_rev) as tree:
            result: dict[str, object] = {
                "images": f"{args.full_size} of the JPEGs upscaled to 1400x1120 grayscale",
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "seed": run_child("seed", originals, args.batch_size, args.workers),
                "baseline": run_child("ours", originals, args.batch_size, args.workers, tree),
                "ours": run_child("ours", originals, args.batch_size, args.workers),
            }
    ours_rate = result["ours"]["images_per_s"]  # type: ignore[index]
    for key in ("seed", "baseline"):
        result[f"ratio_ours_vs_{key}"] = round(ours_rate / result[key]["images_per_s"], 2)  # type: ignore[index]
    working = result["seed"]["images_per_s_working"]  # type: ignore[index]
    result["ratio_ours_vs_seed_working"] = round(ours_rate / working, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=SHARED_TRAIN)
    parser.add_argument("--images", type=int, default=10_000, help="size of the flat folder")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--shards", default="1,2,4", help="process counts of the scaling curve")
    parser.add_argument(
        "--full-size", type=int, default=800, help="images of the full-size scenario (0: none)"
    )
    parser.add_argument("--name", default="batch_inference", help="results/<name>.json")
    parser.add_argument("--only-full-size", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        _child(args)
        return
    if args.only_full_size:  # add the full-size scenario to an existing results file
        path = RESULTS / f"{args.name}.json"
        result = json.loads(path.read_text())
        result["full_size_jpegs"] = measure_full_size(args)
        path.write_text(json.dumps(result, indent=2))
        print(json.dumps(result["full_size_jpegs"], indent=2))
        return

    load_before = os.getloadavg()[0]
    rounds: list[dict[str, dict[str, float]]] = []
    with baseline_tree(args.baseline_rev) as tree:
        for _ in range(args.rounds):
            rounds.append(
                {
                    "seed": run_child("seed", args.data, args.batch_size, args.workers),
                    "baseline": run_child("ours", args.data, args.batch_size, args.workers, tree),
                    "ours": run_child("ours", args.data, args.batch_size, args.workers),
                }
            )
    profile = run_child("profile", args.data, args.batch_size, args.workers)
    scaling = [
        run_child(f"processes-{n}", args.data, args.batch_size, args.workers)
        for n in map(int, args.shards.split(","))
    ]
    with tempfile.TemporaryDirectory(prefix="xray-bench-") as tmp:
        flat = Path(tmp) / "flat"
        how = flat_folder(args.data, flat, args.images)
        large = run_child("ours", flat, args.batch_size, args.workers)
    full_size = measure_full_size(args) if args.full_size else {}

    def ratio(a: str, b: str, b_rate: str = "images_per_s") -> float:
        values = [r[a]["images_per_s"] / r[b][b_rate] for r in rounds]
        return round(statistics.median(values), 2)

    save(
        args.name,
        {
            "data": str(args.data),
            "model": f"{BACKBONE} at {IMAGE_SIZE} px, untrained (weights do not change speed)",
            "batch_size": args.batch_size,
            "workers": args.workers,
            "baseline": f"score_images at commit {args.baseline_rev} (before issue #18)",
            "rounds": rounds,
            "profile_ms_per_image": profile,
            "scaling_worker_processes": scaling,
            "score_images_flat_folder": {"files": f"{args.images} ({how})", **large},
            "full_size_jpegs": full_size,
            "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "ratio_ours_vs_seed": ratio("ours", "seed"),
            "ratio_ours_vs_seed_working": ratio("ours", "seed", "images_per_s_working"),
            "ratio_ours_vs_baseline": ratio("ours", "baseline"),
            "ratio_baseline_vs_seed": ratio("baseline", "seed"),
            "peak_rss_mb_5216_vs_flat_folder": [
                rounds[-1]["ours"]["peak_rss_mb"],
                large["peak_rss_mb"],
            ],
            "note": (
                "score_images also lists and checks every file, computes the drift "
                "statistics and streams in batches; the seed-style peer only decodes and "
                "predicts. Ratios are medians of the per-round ratios; _working: against the "
                "peer's clock stopped at its last batch (without its idle wait in predict)."
            ),
        },
    )


if __name__ == "__main__":
    main()
