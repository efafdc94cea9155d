"""Patient-level, class-stratified, seeded train/val/test splits.

No patient may sit in two splits: the Kermany data has several images per patient and a
split by image leaks. The same goes for byte-identical images (the Kaggle train split
holds a few dozen, some under two patient ids): patients that share an identical image
are kept together as one group. Groups are sorted by class (a group's images share a
class in this data set; a mixed group goes by its majority class) and each class's groups
are shuffled and dealt out until every split holds its share of that class's images.
"""

import hashlib
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import pandas as pd

from xray.logic.constants import CLASS_NAMES
from xray.logic.dataset import ImageDataset


class LeakageError(AssertionError):
    """A patient appears in more than one split."""


def group_keys(dataset: ImageDataset) -> list[str]:
    """Per image, the key of its group: its patient, merged with every patient that
    shares a byte-identical image with it (union-find over content hashes)."""
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    first_owner: dict[str, str] = {}
    for patient, image in zip(dataset.patients, dataset.images, strict=True):
        digest = hashlib.sha256(image).hexdigest()
        owner = first_owner.setdefault(digest, patient)
        a, b = find(owner), find(patient)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return [find(patient) for patient in dataset.patients]


def _groups_by_class(dataset: ImageDataset, keys: list[str]) -> dict[int, list[tuple[str, int]]]:
    """Maps class -> [(group, n_images)], each group under its majority class."""
    labels_of: dict[str, Counter[int]] = defaultdict(Counter)
    for key, label in zip(keys, dataset.labels.tolist(), strict=True):
        labels_of[key][label] += 1
    grouped: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for key in sorted(labels_of):
        counts = labels_of[key]
        majority = max(sorted(counts), key=lambda label: counts[label])
        grouped[majority].append((key, sum(counts.values())))
    return grouped


def assign_groups(
    dataset: ImageDataset, fractions: dict[str, float], seed: int
) -> tuple[list[str], dict[str, set[str]]]:
    """Deals patient groups into named splits so each split gets ``fraction`` of each class.

    Args:
        dataset: The images to split.
        fractions: Split name -> fraction of images; the last split takes the remainder.
        seed: Seed of the shuffle; the same seed and data give the same split.

    Returns:
        The group key of every image (see :func:`group_keys`) and, per split name, the
        set of group keys dealt to it.
    """
    keys = group_keys(dataset)
    rng = np.random.default_rng(seed)
    names = list(fractions)
    assigned: dict[str, set[str]] = {name: set() for name in names}
    for _label, groups in sorted(_groups_by_class(dataset, keys).items()):
        order = rng.permutation(len(groups))
        total = sum(n for _, n in groups)
        targets = [fractions[name] * total for name in names[:-1]]
        split_index, filled = 0, 0.0
        for i in order:
            key, n = groups[i]
            while split_index < len(targets) and filled >= targets[split_index]:
                split_index, filled = split_index + 1, 0.0
            assigned[names[split_index]].add(key)
            filled += n
    return keys, assigned


def _take(dataset: ImageDataset, keys: list[str], wanted: set[str]) -> ImageDataset:
    return dataset.subset(i for i, key in enumerate(keys) if key in wanted)


def assert_no_patient_leakage(splits: dict[str, ImageDataset]) -> None:
    """Raises :class:`LeakageError` naming every patient found in two or more splits."""
    seen: dict[str, set[str]] = defaultdict(set)
    for name, part in splits.items():
        for patient in set(part.patients):
            seen[patient].add(name)
    leaked = {p: sorted(s) for p, s in seen.items() if len(s) > 1}
    if leaked:
        shown = ", ".join(f"{p} in {'+'.join(s)}" for p, s in sorted(leaked.items())[:20])
        raise LeakageError(f"{len(leaked)} patient(s) appear in more than one split: {shown}")


def patient_id_counts(dataset: ImageDataset) -> dict[str, int]:
    """How the patients were found: ids parsed from file names (and their images), and
    images that fell back to one patient per file (ids ``file:<path>``, see
    :mod:`xray.logic.patients`)."""
    fallback = sum(patient.startswith("file:") for patient in dataset.patients)
    parsed = {patient for patient in dataset.patients if not patient.startswith("file:")}
    return {
        "patient_ids_parsed": len(parsed),
        "images_with_parsed_patient": len(dataset) - fallback,
        "images_one_patient_per_file": fallback,
    }


def overlaps_with_test(
    dataset: ImageDataset, pool_idx: list[int], test_idx: list[int]
) -> list[dict[str, str]]:
    """The pool images that must leave the pool because the test split has them.

    An image is dropped when its bytes are identical to a test image (a copy under
    another name), or when its patient has images in the test split.

    Returns:
        One entry per dropped image: ``file`` (its path), ``test_file`` (the test image
        it matches: the identical one, else the patient's first) and ``reason``.
    """
    test_by_hash: dict[bytes, str] = {}
    test_by_patient: dict[str, str] = {}
    for i in test_idx:
        test_by_hash.setdefault(hashlib.sha256(dataset.images[i]).digest(), dataset.paths[i])
        test_by_patient.setdefault(dataset.patients[i], dataset.paths[i])
    dropped = []
    for i in pool_idx:
        same_bytes = test_by_hash.get(hashlib.sha256(dataset.images[i]).digest())
        if same_bytes is not None:
            reason = "identical bytes to a test image"
            dropped.append({"file": dataset.paths[i], "test_file": same_bytes, "reason": reason})
        elif dataset.patients[i] in test_by_patient:
            dropped.append(
                {
                    "file": dataset.paths[i],
                    "test_file": test_by_patient[dataset.patients[i]],
                    "reason": f"patient {dataset.patients[i]} is in the test split",
                }
            )
    return dropped


def split_by_patient(
    dataset: ImageDataset,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 42,
    use_official_test: bool = True,
) -> tuple[dict[str, ImageDataset], dict[str, int]]:
    """Splits a data set into train/val/test with no patient in two splits.

    When the data came in the Kaggle layout and ``use_official_test`` is set, its
    ``test/`` folder is the test split as published; the ``train/`` and ``val/`` folders
    are pooled (the official val split has only 16 images) and split into train and
    validation by patient. Pool images of patients who also appear in the official test
    folder, and pool images identical to a test image, are dropped from the pool, so the
    test split stays untouched and leak-free.
    Otherwise all images are split three ways.

    Args:
        dataset: The loaded data set.
        val_fraction: Share of images (per class) for validation.
        test_fraction: Share of images (per class) for test when the test split is made
            here.
        seed: Seed of the patient shuffle.
        use_official_test: Keep a Kaggle ``test/`` folder as the test split.

    Returns:
        ``({"train": ..., "val": ..., "test": ...}, info)`` where ``info`` says what the
        split did: whether an official test folder was present and kept, the pool images
        dropped because an identical image or their patient is in it (each named with
        the test file and the reason, ``dropped_files``), and how many patient ids were
        parsed from file names (:func:`patient_id_counts`).

    Raises:
        ValueError: If the fractions are out of range or a split ends up without both
            classes.
        LeakageError: If a patient ends up in two splits (a bug, never expected).
    """
    if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in (0, 1) "
            f"and sum to less than 1 (settings split_dataset.config.val_fraction/test_fraction)."
        )
    origins = set(dataset.origins)
    official_test = use_official_test and "test" in origins
    info: dict[str, Any] = {
        "official_test_kept": official_test,
        "official_test_present": "test" in origins,
        "dropped_for_test_overlap": 0,
        "dropped_files": [],
        **patient_id_counts(dataset),
    }
    if official_test:
        test_idx = [i for i, o in enumerate(dataset.origins) if o == "test"]
        pool_idx = [i for i, o in enumerate(dataset.origins) if o != "test"]
        dropped = overlaps_with_test(dataset, pool_idx, test_idx)
        info["dropped_files"] = dropped
        info["dropped_for_test_overlap"] = len(dropped)
        gone = {d["file"] for d in dropped}
        pool = dataset.subset(i for i in pool_idx if dataset.paths[i] not in gone)
        keys, assigned = assign_groups(pool, {"val": val_fraction, "train": 1.0}, seed)
        splits = {
            "train": _take(pool, keys, assigned["train"]),
            "val": _take(pool, keys, assigned["val"]),
            "test": dataset.subset(test_idx),
        }
    else:
        fractions = {"test": test_fraction, "val": val_fraction, "train": 1.0}
        keys, assigned = assign_groups(dataset, fractions, seed)
        splits = {name: _take(dataset, keys, assigned[name]) for name in ("train", "val", "test")}
    assert_no_patient_leakage(splits)
    for name, part in splits.items():
        missing = [c for c, n in part.class_counts().items() if n == 0]
        if missing:
            raise ValueError(
                f"The {name} split has no {', '.join(missing)} image ({len(part)} images in "
                f"all): the data set is too small for a patient-level split. Add images or "
                f"change split_dataset.config.val_fraction/test_fraction."
            )
    return splits, info


def split_counts(statistics: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Images per class, images and patients per split, from the statistics table."""
    counts: dict[str, dict[str, int]] = {}
    for split, rows in statistics.groupby("split", sort=False):
        entry = {name: int((rows["label"] == name).sum()) for name in CLASS_NAMES}
        entry.update(images=len(rows), patients=int(rows["patient"].nunique()))
        counts[str(split)] = entry
    return counts
