"""The whole batch inference run, `run.py --pipeline inference`, on real data.

In a fresh ZenML store and BentoML home: trains the default model on the shipped sample
with the code of ``--baseline-rev`` (so that both versions can load it; it becomes the
production version), then scores the full Kaggle train split (5,216
JPEGs, labelled) and a 10,000-image flat, unlabelled folder (hard links to the same
files under distinct names). Each command runs in its own process; its wall time and
peak RSS are measured by a wrapper process. The seed-style peer
(`ImageDataGenerator.flow_from_directory` + `model.predict`, from
`benchmarks/batch_inference.py`) runs in the same session on the same 5,216 images,
twice: before our runs and after them (this machine's speed drifts within minutes; the
ratios use the mean of the two; ``_working`` ratios use the peer's clock stopped at its
last batch, see ``batch_inference.measure_seed``). So does the project's own pipeline
before the performance work of issue #18 (the commit ``--baseline-rev``, in a temporary
git worktree, on the same store and model).

usage: python benchmarks/inference_pipeline.py [DATA_DIR] [--images 10000]
"""

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from batch_inference import BASELINE_REV, baseline_tree, flat_folder, run_child
from common import PROJECT_ROOT, SHARED_TRAIN, save, timed_run


def infer(
    env: dict[str, str], data: Path, out: Path, tree: Path = PROJECT_ROOT
) -> dict[str, object]:
    args = ("--pipeline", "inference", "--data", str(data), "--out", str(out))
    result = timed_run(env, *args, cwd=tree)
    summary = json.loads((out / "summary.json").read_text())
    drift = json.loads((out / "drift.json").read_text())
    return {
        **result,
        "images": summary["images"],
        "scoring_images_per_s": summary["images_per_second"],
        "end_to_end_images_per_s": round(summary["images"] / result["wall_s"], 1),
        "metrics": summary.get("metrics"),
        "drift_detected": drift["drift_detected"],
        "share_drifted": drift["share_drifted"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=SHARED_TRAIN.parent)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    args = parser.parse_args()
    seeds = [run_child("seed", args.data / "train", 256, 4)]
    with tempfile.TemporaryDirectory(prefix="xray-bench-") as tmp:
        root = Path(tmp)
        env = {
            **os.environ,
            "ZENML_CONFIG_PATH": str(root / "zenml"),
            "ZENML_REPOSITORY_PATH": str(root / "zenml-repo"),  # leave the project's .zen alone
            "BENTOML_HOME": str(root / "bentoml"),
            "ZENML_ANALYTICS_OPT_IN": "false",
        }
        with baseline_tree(args.baseline_rev) as tree:
            # Trained by the baseline's code: its layers load in both versions (a model
            # trained today has layers the code before issue #18 does not know).
            training = timed_run(env, "--stack", "local", cwd=tree)
            baseline = infer(env, args.data, root / "out-baseline", tree)
        full = infer(env, args.data, root / "out-full")
        flat = root / "flat"
        how = flat_folder(args.data, flat, args.images)
        large = infer(env, flat, root / "out-flat")
    seeds.append(run_child("seed", args.data / "train", 256, 4))
    seed_rate, working = (
        round(statistics.mean(s[key] for s in seeds), 1)
        for key in ("images_per_s", "images_per_s_working")
    )
    save(
        "inference_pipeline",
        {
            "data": str(args.data),
            "model": f"default config, trained on data/sample by {args.baseline_rev}",
            "training_run": training,
            "inference_kaggle_train_split": full,
            "inference_flat_folder": {"files": f"{args.images} ({how})", **large},
            "baseline_kaggle_train_split": {"code": f"commit {args.baseline_rev}", **baseline},
            "seed_flow_from_directory_predict": {
                "before_ours": seeds[0],
                "after_ours": seeds[1],
                "mean_images_per_s": seed_rate,
                "mean_images_per_s_working": working,
            },
            "ratio_scoring_images_per_s_vs_seed": round(
                full["scoring_images_per_s"] / seed_rate, 2
            ),
            "ratio_end_to_end_images_per_s_vs_seed": round(
                full["end_to_end_images_per_s"] / seed_rate, 2
            ),
            "ratio_scoring_vs_seed_working": round(full["scoring_images_per_s"] / working, 2),
            "ratio_end_to_end_vs_seed_working": round(full["end_to_end_images_per_s"] / working, 2),
            "ratio_end_to_end_flat_folder_vs_seed": round(
                large["end_to_end_images_per_s"] / seed_rate, 2
            ),
            "ratio_end_to_end_vs_baseline": round(
                full["end_to_end_images_per_s"] / baseline["end_to_end_images_per_s"], 2
            ),
        },
    )


if __name__ == "__main__":
    main()
