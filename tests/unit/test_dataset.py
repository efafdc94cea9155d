import io
from pathlib import Path

import pytest

from xray.io.loading import load_images
from xray.logic.dataset import ImageDataset, concatenate


def test_roundtrip_keeps_everything(kaggle_tree: Path) -> None:
    ds = load_images(str(kaggle_tree), min_images=10)
    index, blob = io.StringIO(), io.BytesIO()
    ds.write(index, blob)
    index.seek(0)
    blob.seek(0)
    back = ImageDataset.read(index, blob)
    assert back.images == ds.images
    assert back.labels.tolist() == ds.labels.tolist()
    assert back.patients == ds.patients and back.paths == ds.paths
    assert back.origins == ds.origins and back.modes == ds.modes
    assert back.fingerprint() == ds.fingerprint()


def test_truncated_blob_is_an_error(kaggle_tree: Path) -> None:
    ds = load_images(str(kaggle_tree), min_images=10)
    index, blob = io.StringIO(), io.BytesIO()
    ds.write(index, blob)
    index.seek(0)
    with pytest.raises(ValueError, match="truncated"):
        ImageDataset.read(index, io.BytesIO(blob.getvalue()[:-10]))


def test_subset_and_concatenate(kaggle_tree: Path) -> None:
    ds = load_images(str(kaggle_tree), min_images=10)
    a, b = ds.subset(range(10)), ds.subset(range(10, len(ds)))
    joined = concatenate([a, b])
    assert joined.fingerprint() == ds.fingerprint()
    assert len(ds.subset([])) == 0


def test_mismatched_fields_rejected() -> None:
    with pytest.raises(ValueError, match="disagree"):
        ImageDataset([b"x"], [0, 1], ["p"], ["a"], [""], [1], [1], ["L"])
