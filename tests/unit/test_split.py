from pathlib import Path

import numpy as np
import pytest

from synthetic import make_single_folder
from xray.io.loading import load_images
from xray.logic.dataset import ImageDataset
from xray.logic.split import LeakageError, assert_no_patient_leakage, split_by_patient


@pytest.fixture
def larger(tmp_path: Path) -> ImageDataset:
    return load_images(str(make_single_folder(tmp_path / "d", per_class=60, size=40)))


def test_no_patient_in_two_splits_and_stratified(larger: ImageDataset) -> None:
    splits, _ = split_by_patient(larger, 0.2, 0.2, seed=1)
    patients = [set(s.patients) for s in splits.values()]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    assert sum(len(s) for s in splits.values()) == len(larger)
    for name in ("val", "test"):
        counts = splits[name].class_counts()
        assert 10 <= counts["NORMAL"] <= 14 and 10 <= counts["PNEUMONIA"] <= 14, counts


def test_seeded_and_seed_matters(larger: ImageDataset) -> None:
    a, _ = split_by_patient(larger, 0.2, 0.2, seed=3)
    b, _ = split_by_patient(larger, 0.2, 0.2, seed=3)
    c, _ = split_by_patient(larger, 0.2, 0.2, seed=4)
    assert a["test"].paths == b["test"].paths
    assert a["test"].paths != c["test"].paths


def test_official_test_kept_and_overlap_dropped(kaggle_tree: Path) -> None:
    ds = load_images(str(kaggle_tree), min_images=10)
    # Put one test patient's id on a training image: it must leave the pool.
    i_train = ds.origins.index("train")
    i_test = ds.origins.index("test")
    ds.patients[i_train] = ds.patients[i_test]
    splits, info = split_by_patient(ds, 0.25, 0.2, seed=0)
    assert splits["test"].paths == [
        p for p, o in zip(ds.paths, ds.origins, strict=True) if o == "test"
    ]
    assert info["dropped_for_test_overlap"] == 1
    assert ds.paths[i_train] not in splits["train"].paths + splits["val"].paths
    assert info["dropped_files"] == [
        {
            "file": ds.paths[i_train],
            "test_file": ds.paths[i_test],
            "reason": f"patient {ds.patients[i_test]} is in the test split",
        }
    ]
    assert info["official_test_kept"] and info["official_test_present"]


def test_leakage_is_asserted() -> None:
    def one(patient: str) -> ImageDataset:
        return ImageDataset([b"x"], np.array([0]), [patient], [patient], [""], [1], [1], ["L"])

    with pytest.raises(LeakageError, match="p1 in test\\+train"):
        assert_no_patient_leakage({"train": one("p1"), "test": one("p1"), "val": one("p2")})


def test_bad_fractions_and_too_small(larger: ImageDataset, single_folder: Path) -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_patient(larger, 0.6, 0.5)
    tiny = load_images(str(single_folder)).subset(range(0, 24, 6))
    with pytest.raises(ValueError, match="too small for a patient-level split"):
        split_by_patient(tiny, 0.2, 0.2)


def test_identical_images_stay_in_one_split(larger: ImageDataset) -> None:
    # Copy a NORMAL image onto another patient's file: both patients become one group.
    donor, receiver = 0, 2
    assert larger.patients[donor] != larger.patients[receiver]
    larger.images[receiver] = larger.images[donor]
    for seed in range(5):
        splits, _ = split_by_patient(larger, 0.2, 0.2, seed=seed)
        home = [name for name, part in splits.items() if larger.images[donor] in part.images]
        assert len(home) == 1, (seed, home)


def test_official_test_duplicates_leave_the_pool(kaggle_tree: Path) -> None:
    ds = load_images(str(kaggle_tree), min_images=10)
    i_train, i_test = ds.origins.index("train"), ds.origins.index("test")
    ds.images[i_train] = ds.images[i_test]
    splits, info = split_by_patient(ds, 0.25, 0.2, seed=0)
    assert info["dropped_for_test_overlap"] == 1
    assert ds.paths[i_train] not in splits["train"].paths + splits["val"].paths
    # Both files and the real reason are named: a copy under a new name, not a patient.
    (dropped,) = info["dropped_files"]
    assert dropped == {
        "file": ds.paths[i_train],
        "test_file": ds.paths[i_test],
        "reason": "identical bytes to a test image",
    }


def test_split_reports_what_it_did(kaggle_tree: Path) -> None:
    ds = load_images(str(kaggle_tree), min_images=10)
    ds.patients[0] = f"file:{ds.paths[0]}"  # a name no pattern parses
    _, kept = split_by_patient(ds, 0.25, 0.2, seed=0)
    assert kept["images_one_patient_per_file"] == 1
    assert kept["images_with_parsed_patient"] == len(ds) - 1
    assert kept["patient_ids_parsed"] == len(set(ds.patients)) - 1
    _, pooled = split_by_patient(ds, 0.25, 0.2, seed=0, use_official_test=False)
    assert pooled["official_test_present"] and not pooled["official_test_kept"]
    assert pooled["dropped_files"] == []
