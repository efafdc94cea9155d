"""The shift suite: models side by side on their in-split test images under controlled
acquisition changes (exposure, contrast, gamma, blur, sharpening, noise, JPEG quality,
crop/zoom, borders, rotation, resolution; see ``xray/logic/shifts.py``).

Each model is a folder written by ``benchmarks/full_data.py --export DIR`` (its
``model.keras`` and its ``model.json``: decision threshold and split settings). The data
folder is split by patient exactly as the training run split it (same seed and
fractions), and every model is scored on the same shifted test images in this one run:
AUC, sensitivity and specificity at the model's own threshold, per shift, plus summary
rows (mean and worst over the shifts). All figures are in-split: the test images come
from the same collection as the training images.

For the last model, the suite also compares threshold rules: each rule picks a threshold
on the validation split (a class-balanced sample of 600 images, alone or pooled with its
copies under every shift), and the
test split's sensitivity and specificity at that threshold are reported, in-split and
under each shift: the measurement the default rule is chosen from.

usage: python benchmarks/shift_suite.py --model before=DIR --model after=DIR [DATA_DIR]
                                        [--name RESULT] [--limit N]
"""

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import SHARED_TRAIN, save


def _load_splits(data: Path, split: dict[str, Any]) -> Any:
    from xray.io.loading import load_images
    from xray.logic.split import split_by_patient

    dataset = load_images(str(data))
    splits, _info = split_by_patient(
        dataset,
        val_fraction=split.get("val_fraction", 0.2),
        test_fraction=split.get("test_fraction", 0.2),
        seed=split.get("seed", 42),
    )
    return splits["val"], splits["test"]


RULES = {
    "target_sensitivity_0.95 (validation)": ("target_sensitivity", 0.95, False),
    "target_sensitivity_0.95 (validation + shifts)": ("target_sensitivity", 0.95, True),
    "target_sensitivity_0.90 (validation)": ("target_sensitivity", 0.90, False),
    "youden (validation)": ("youden", 0.95, False),
    "youden (validation + shifts)": ("youden", 0.95, True),
}


def _threshold_rules(
    model: dict[str, Any], val: Any, test_shifted: dict[str, np.ndarray], labels: Any
) -> dict:
    """Each rule's threshold on validation, and the test split at it, in-split and under
    every shift (mean and worst over the shifts)."""
    from xray.logic.metrics import choose_threshold
    from xray.logic.shifts import balanced_sample, operating_points, shifted_predictions
    from xray.ml.model import model_image_size
    from xray.ml.training import predict_probabilities

    size = model_image_size(model["model"])

    def predict(batch: list[bytes]) -> np.ndarray:
        return predict_probabilities(model["model"], batch, size)

    val = val.subset(balanced_sample(val.labels, 600))  # 16 passes: keep it affordable
    val_shifted = shifted_predictions(list(val.images), predict)
    pooled_y = np.tile(val.labels, len(val_shifted))
    pooled_p = np.concatenate(list(val_shifted.values()))
    out = {}
    for name, (rule, target, under_shift) in RULES.items():
        y, p = (pooled_y, pooled_p) if under_shift else (val.labels, val_shifted["none"])
        threshold = choose_threshold(y, p, rule, target).value
        points = operating_points(labels, test_shifted, threshold)
        out[name] = {
            "threshold": round(threshold, 4),
            **{
                f"{row}_{k}": round(points[row][k], 4)
                for row in ("none", "mean", "worst")
                for k in ("sensitivity", "specificity")
            },
        }
        print(f"{name:48s} {out[name]}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=SHARED_TRAIN)
    parser.add_argument(
        "--model", action="append", required=True, metavar="NAME=DIR", help="repeatable"
    )
    parser.add_argument("--name", default="shift_suite", help="results/<name>.json")
    parser.add_argument(
        "--limit", type=int, default=0, help="score a class-balanced sample of N test images"
    )
    args = parser.parse_args()

    from xray.logic.metrics import bootstrap_intervals, classification_metrics
    from xray.logic.shifts import SHIFTS, balanced_sample, shift_images
    from xray.ml.model import load_model, model_image_size
    from xray.ml.training import predict_probabilities

    models = {}
    for item in args.model:
        name, _, folder = item.partition("=")
        info = json.loads((Path(folder) / "model.json").read_text())
        models[name] = {"dir": folder, "info": info, "model": load_model(f"{folder}/model.keras")}
    splits = {json.dumps(m["info"]["split"], sort_keys=True) for m in models.values()}
    if len(splits) != 1:
        raise SystemExit(f"The models were split differently ({splits}); compare like with like.")
    val, test = _load_splits(args.data, next(iter(models.values()))["info"]["split"])
    if args.limit:  # a class-balanced, seeded sample of the test split
        test = test.subset(balanced_sample(test.labels, args.limit))
    images, labels, patients = list(test.images), test.labels, list(test.patients)

    table: dict[str, dict[str, dict[str, float]]] = {name: {} for name in models}
    intervals: dict[str, dict[str, list[float]]] = {}
    predictions: dict[str, dict[str, np.ndarray]] = {name: {} for name in models}
    start = time.perf_counter()
    for shift in SHIFTS:
        shifted = shift_images(images, shift)
        for name, m in models.items():
            p = predict_probabilities(m["model"], shifted, model_image_size(m["model"]))
            predictions[name][shift.name] = p
            metrics = classification_metrics(labels, p, m["info"]["threshold"])
            table[name][shift.name] = {
                k: round(float(metrics[k]), 4)
                for k in ("roc_auc", "sensitivity", "specificity", "accuracy")
            }
            if shift.name == "none":  # the in-split figures, with intervals by patient
                intervals[name] = {
                    k: [round(v, 4) for v in bounds]
                    for k, bounds in bootstrap_intervals(
                        labels, p, m["info"]["threshold"], groups=patients
                    ).items()
                }
            print(f"{shift.name:15s} {name:8s} {table[name][shift.name]}", flush=True)
    for rows in table.values():
        shifted_rows = [v for k, v in rows.items() if k != "none"]
        for metric in ("roc_auc", "sensitivity", "specificity", "accuracy"):
            values = np.array([r[metric] for r in shifted_rows])
            rows.setdefault("mean_over_shifts", {})[metric] = round(float(values.mean()), 4)
            rows.setdefault("worst_over_shifts", {})[metric] = round(float(values.min()), 4)
    last = list(models)[-1]
    rules = _threshold_rules(models[last], val, predictions[last], labels)
    names = list(models)
    ahead = {}
    if len(names) == 2:
        a, b = names
        ahead = {
            metric: sum(
                table[b][s.name][metric] > table[a][s.name][metric]
                for s in SHIFTS
                if s.name != "none"
            )
            for metric in ("roc_auc", "specificity", "sensitivity")
        }
    save(
        args.name,
        {
            "data": str(args.data),
            "in_split": True,
            "test_images": len(images),
            "test_classes": {"NORMAL": int((labels == 0).sum()), "PNEUMONIA": int(labels.sum())},
            "shifts": {s.name: s.description for s in SHIFTS},
            "models": {
                n: {"dir": m["dir"], "threshold": m["info"]["threshold"]} for n, m in models.items()
            },
            "results": table,
            "in_split_ci95_by_patient": intervals,
            f"threshold_rules_{names[-1]}": rules,
            f"shifts_where_{names[-1]}_is_ahead": ahead,
            "wall_s": round(time.perf_counter() - start, 1),
        },
    )


if __name__ == "__main__":
    main()
