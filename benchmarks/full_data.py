"""The full-data benchmark: train on the whole Kaggle train split (5,216 images at 224 px).

`python run.py --stack local --data ../shared/data/chest_xray_224/train` with the shipped
config, in a fresh ZenML store and BentoML home; the data set is split here by patient
(20 % validation, 20 % test: the official test split is not in ../shared). Records wall
time, peak RSS, the test metrics with their 95 % bootstrap intervals, the threshold, the
temperature, calibration and per-subtype results, read back from the model version.

usage: python benchmarks/full_data.py [DATA_DIR] [--config FILE] [--train KEY=VALUE]...
                                      [--name RESULT] [--export DIR]

``--export DIR`` keeps the served (calibrated) model as ``DIR/model.keras`` with
``DIR/model.json`` (threshold, split settings, metrics), for the shift suite
(``benchmarks/shift_suite.py``) to compare models trained by different code.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from common import PROJECT_ROOT, SHARED_TRAIN, save, timed_run

READ_BACK = """
import json
from zenml.client import Client
version = Client().get_model_version("pneumonia_classifier")
run = Client().list_pipeline_runs(pipeline_name="training", sort_by="desc:created", size=1).items[0]
meta = version.run_metadata
evaluate = run.steps["evaluate_model"].run_metadata
print(json.dumps({
    "model_version": version.number,
    "metrics": meta["metrics"],
    "threshold": meta["threshold"],
    "ci95": evaluate.get("test_ci95"),
    "ece": evaluate.get("ece"),
    "brier": evaluate.get("brier"),
    "temperature": dict(run.steps["calibrate_model"].run_metadata),
    "subtypes": run.steps["analyze_errors"].run_metadata.get("subtypes"),
    "split_counts": run.steps["split_dataset"].run_metadata["split_counts"],
    "promotion": meta.get("promotion", {}).get("reasons"),
    "backbone": meta["backbone"],
    "pretrained": meta["pretrained"],
}, default=str))
"""

EXPORT = """
import json, sys
from pathlib import Path
from zenml.client import Client
from zenml.utils import source_utils
source_utils.set_custom_source_root(sys.argv[2])  # the materializers are the project's
version = Client().get_model_version("pneumonia_classifier")
out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
run = Client().list_pipeline_runs(pipeline_name="training", sort_by="desc:created", size=1).items[0]
(out / "model.keras").write_bytes(version.get_artifact("keras_model").load().data)
from xray.logic.settings import SplitSettings
parameters = run.steps["split_dataset"].config.parameters
split = SplitSettings.model_validate(parameters.get("config") or {})
(out / "model.json").write_text(json.dumps({
    "threshold": float(version.get_artifact("decision_threshold").load()),
    "split": split.model_dump(include={"val_fraction", "test_fraction", "seed"}),
    "metrics": version.run_metadata["metrics"],
}, indent=2, default=str))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=SHARED_TRAIN)
    parser.add_argument("--config", type=Path, default=PROJECT_ROOT / "configs" / "training.yaml")
    parser.add_argument(
        "--train",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override train_model.config.KEY (YAML value), e.g. --train backbone=vgg16",
    )
    parser.add_argument("--name", default="full_data", help="results/<name>.json")
    parser.add_argument("--export", type=Path, help="keep the model in DIR (model.keras)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xray-full-") as tmp:
        env = {
            **os.environ,
            "ZENML_CONFIG_PATH": str(Path(tmp) / "zenml"),
            "ZENML_REPOSITORY_PATH": str(
                Path(tmp) / "zenml-repo"
            ),  # leave the project's .zen alone
            "BENTOML_HOME": str(Path(tmp) / "bentoml"),
            "ZENML_ANALYTICS_OPT_IN": "false",
        }
        config = args.config
        if args.train:
            settings = yaml.safe_load(config.read_text()) or {}
            steps = settings.get("steps") or {}
            settings["steps"] = steps
            body = steps.setdefault("train_model", {}).setdefault("parameters", {})
            train = body.setdefault("config", {})
            for item in args.train:
                key, _, value = item.partition("=")
                train[key] = yaml.safe_load(value)
            config = Path(tmp) / "training.yaml"
            config.write_text(yaml.safe_dump(settings, sort_keys=False))
        command = ["--stack", "local", "--data", str(args.data), "--config", str(config)]
        timing = timed_run(env, *command)
        result = subprocess.run(
            [sys.executable, "-c", READ_BACK],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        facts = json.loads(result.stdout.strip().splitlines()[-1])
        if args.export:
            subprocess.run(
                [sys.executable, "-c", EXPORT, str(args.export.resolve()), str(PROJECT_ROOT)],
                cwd=PROJECT_ROOT,
                env=env,
                check=True,
            )
    save(
        args.name,
        {
            "data": str(args.data),
            "config": str(args.config.relative_to(PROJECT_ROOT)),
            "train_overrides": args.train,
            "command": "python run.py " + " ".join(command),
            "run": timing,
            **facts,
        },
    )


if __name__ == "__main__":
    main()
