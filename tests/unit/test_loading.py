import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthetic import encode, synthetic_pixels
from xray.io.loading import DataError, discover_images, listing_version, load_images


def _image_bytes(size: tuple[int, int], mode: str, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if mode == "I;16":
        Image.fromarray(
            (np.arange(size[0] * size[1]).reshape(size[1], size[0]) % 65535).astype(np.uint16)
        ).save(buffer, format=fmt)
    else:
        Image.new(mode, size, 128 if mode == "L" else (100,) * len(mode)).save(buffer, format=fmt)
    return buffer.getvalue()


def test_loads_kaggle_layout(kaggle_tree: Path) -> None:
    ds = load_images(str(kaggle_tree), min_images=10)
    assert len(ds) == 2 * (8 + 2 + 4)
    assert ds.class_counts() == {"NORMAL": 14, "PNEUMONIA": 14}
    assert set(ds.origins) == {"train", "val", "test"}
    assert all(p.split("/")[0] in {"train", "val", "test"} for p in ds.paths)
    assert ds.skipped == []
    assert "person1000" in ds.patients and "IM-0100" in ds.patients


def test_local_files_are_read_without_fsspec(kaggle_tree: Path, monkeypatch) -> None:
    import fsspec

    def no_fsspec(*args, **kwargs):
        raise AssertionError("a local file went through fsspec")

    monkeypatch.setattr(fsspec, "open", no_fsspec)
    ds = load_images(str(kaggle_tree), min_images=10)
    assert len(ds) == 2 * (8 + 2 + 4) and ds.skipped == []


def test_loads_single_folder_and_nested_chest_xray(tmp_path: Path, single_folder: Path) -> None:
    ds = load_images(str(single_folder))
    assert ds.class_counts() == {"NORMAL": 12, "PNEUMONIA": 12}
    assert set(ds.origins) == {""}
    outer = tmp_path / "download"
    shutil.copytree(single_folder.parent / "xrays", outer / "chest_xray")
    assert len(load_images(str(outer))) == 24


def test_class_folders_are_case_insensitive(single_folder: Path) -> None:
    (single_folder / "NORMAL").rename(single_folder / "normal")
    ds = load_images(str(single_folder))
    assert ds.class_counts()["NORMAL"] == 12


def test_unknown_class_folder_is_named(single_folder: Path) -> None:
    (single_folder / "COVID").mkdir()
    with pytest.raises(DataError, match="Unknown class folder 'COVID'"):
        load_images(str(single_folder))


def test_unknown_split_folder_is_named(kaggle_tree: Path) -> None:
    (kaggle_tree / "validation").mkdir()
    with pytest.raises(DataError, match="Unknown split folder 'validation'"):
        load_images(str(kaggle_tree))


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_images(str(tmp_path / "nope"))


def test_missing_class_folder(single_folder: Path) -> None:
    shutil.rmtree(single_folder / "PNEUMONIA")
    with pytest.raises(DataError, match="Missing class folder"):
        load_images(str(single_folder))


def test_empty_class_folder(single_folder: Path) -> None:
    for f in (single_folder / "NORMAL").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"NORMAL holds no \.jpeg"):
        load_images(str(single_folder))


def test_bad_files_are_skipped_with_reasons(single_folder: Path) -> None:
    normal = single_folder / "NORMAL"
    good = (normal / "IM-0100-0001.jpeg").read_bytes()
    (normal / "truncated.jpeg").write_bytes(good[: len(good) // 2])
    (normal / "corrupt.jpeg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 500)
    (normal / "notes.txt").write_text("hello")
    (normal / "fake.png").write_text("I am text, not a PNG")
    (normal / "empty.jpeg").write_bytes(b"")
    (normal / "tiny.png").write_bytes(_image_bytes((16, 16), "L", "PNG"))
    (normal / ".DS_Store").write_bytes(b"junk")
    ds = load_images(str(single_folder))
    reasons = {s.path.split("/")[-1]: s.reason for s in ds.skipped}
    assert set(reasons) == {
        "truncated.jpeg",
        "corrupt.jpeg",
        "notes.txt",
        "fake.png",
        "empty.jpeg",
        "tiny.png",
    }
    assert "truncated" in reasons["truncated.jpeg"]
    assert "not an image file" in reasons["notes.txt"]
    assert "not an image" in reasons["fake.png"]
    assert "empty" in reasons["empty.jpeg"]
    assert "at least 32 px" in reasons["tiny.png"]
    assert len(ds) == 24


@pytest.mark.parametrize(
    ("mode", "fmt", "size"),
    [
        ("L", "PNG", (64, 64)),
        ("RGBA", "PNG", (64, 80)),
        ("I;16", "PNG", (70, 64)),
        ("RGB", "JPEG", (3000, 2500)),
        ("L", "JPEG", (64, 64)),
    ],
)
def test_accepts_image_variants(
    single_folder: Path, mode: str, fmt: str, size: tuple[int, int]
) -> None:
    name = f"IM-9999-0001.{fmt.lower()}"
    (single_folder / "NORMAL" / name).write_bytes(_image_bytes(size, mode, fmt))
    ds = load_images(str(single_folder))
    assert ds.skipped == []
    i = ds.paths.index(f"NORMAL/{name}")
    assert (int(ds.widths[i]), int(ds.heights[i])) == size


def test_too_few_images_fails_clearly(single_folder: Path) -> None:
    for f in list((single_folder / "PNEUMONIA").iterdir())[1:]:
        f.write_bytes(b"broken")
    with pytest.raises(DataError, match=r"Only 13 usable images.*11 file\(s\) were skipped"):
        load_images(str(single_folder), min_images=5)


def test_listing_version_tracks_changes(single_folder: Path) -> None:
    before = listing_version(str(single_folder))
    assert listing_version(str(single_folder)) == before
    target = single_folder / "NORMAL" / "IM-0100-0001.jpeg"
    target.write_bytes(encode(synthetic_pixels(0, 48, np.random.default_rng(5))))
    assert listing_version(str(single_folder)) != before


def test_fingerprint_ignores_order_but_not_content(single_folder: Path) -> None:
    ds = load_images(str(single_folder))
    reordered = ds.subset(reversed(range(len(ds))))
    assert reordered.fingerprint() == ds.fingerprint()
    assert ds.subset(range(len(ds) - 1)).fingerprint() != ds.fingerprint()


def test_discover_reports_layout(kaggle_tree: Path, single_folder: Path) -> None:
    assert discover_images(str(kaggle_tree))[2] == "kaggle"
    assert discover_images(str(single_folder))[2] == "single"


def test_training_and_inference_read_a_folder_the_same_way(kaggle_tree: Path) -> None:
    """One layout reader (xray.io.layout): the same files, paths and classes for both."""
    from xray.ml.inference import find_inputs

    (kaggle_tree / "README.txt").write_text("downloaded from Kaggle")
    (kaggle_tree / "train" / "NORMAL" / ".DS_Store").write_bytes(b"junk")
    found, _, layout = discover_images(str(kaggle_tree))
    inputs, _, inference_layout = find_inputs(str(kaggle_tree))
    assert layout == inference_layout == "kaggle"
    assert sorted((f.rel_path, f.label) for f in found) == [(i.rel_path, i.truth) for i in inputs]
    outer = kaggle_tree.parent / "download"
    shutil.copytree(kaggle_tree, outer / "chest_xray")
    (outer / "LICENSE.txt").write_text("CC BY 4.0")  # not an image: still stepped into
    assert [f.rel_path for f in discover_images(str(outer))[0]] == [f.rel_path for f in found]
    assert [i.rel_path for i in find_inputs(str(outer))[0]] == [i.rel_path for i in inputs]
