"""Re-creates the small real sample shipped in data/sample/ from the Kaggle train split.

Whole patients only (never part of a patient's images), both classes, seeded, so that
the default run and the tests stay patient-clean and reproducible.

usage: python scripts/make_sample.py SOURCE_DIR [OUT_DIR] [--normal 120] [--pneumonia 180]

SOURCE_DIR holds NORMAL/ and PNEUMONIA/ (e.g. the Kaggle chest_xray/train folder).
"""

import argparse
import random
import shutil
from collections import defaultdict
from pathlib import Path

from xray.logic.constants import CLASS_NAMES
from xray.logic.patients import parse_patient_id


def pick_patients(folder: Path, target: int, rng: random.Random) -> list[Path]:
    """Picks whole patients (with a parsable id) until about ``target`` images."""
    by_patient: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(folder.iterdir()):
        patient = parse_patient_id(path.name)
        if patient is not None:
            by_patient[patient].append(path)
    patients = sorted(by_patient)
    rng.shuffle(patients)
    chosen: list[Path] = []
    for patient in patients:
        if len(chosen) >= target:
            break
        chosen.extend(by_patient[patient])
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path, nargs="?", default=Path("data/sample"))
    parser.add_argument("--normal", type=int, default=120)
    parser.add_argument("--pneumonia", type=int, default=180)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    for class_name, target in zip(CLASS_NAMES, (args.normal, args.pneumonia), strict=True):
        out_dir = args.out / class_name
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        files = pick_patients(args.source / class_name, target, rng)
        for path in files:
            shutil.copy2(path, out_dir / path.name)
        print(f"{class_name}: {len(files)} images")


if __name__ == "__main__":
    main()
