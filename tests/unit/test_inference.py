import re
import threading
import weakref
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pytest

import xray.ml.inference as inference
from synthetic import encode, make_kaggle_tree, synthetic_pixels, write_class_folder
from xray.io.image_stats import statistics_table
from xray.io.loading import DataError, load_images
from xray.io.paths import read_location
from xray.logic.dataset import SkippedFile
from xray.ml.inference import InputImage, find_inputs, labelled_metrics, score_images
from xray.ml.model import build_model
from xray.ml.training import predict_probabilities

IMAGE_SIZE = 32


@pytest.fixture(scope="module")
def model() -> Any:
    return build_model(
        backbone="compact_cnn", image_size=IMAGE_SIZE, weights=None, augment=False
    ).model


def _write(path: Path, label: int = 0, size: int = 40, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = synthetic_pixels(label, size, np.random.default_rng(seed))
    path.write_bytes(encode(pixels, "PNG" if path.suffix == ".png" else "JPEG"))
    return path


def test_find_inputs_kaggle_layout(tmp_path: Path) -> None:
    root = make_kaggle_tree(tmp_path / "xr", {"train": 2, "val": 1, "test": 1}, size=40)
    (root / "test" / "NORMAL").rename(root / "test" / "normal")
    files, skipped, layout = find_inputs(str(root))
    assert layout == "kaggle" and skipped == []
    assert [f.rel_path for f in files] == sorted(f.rel_path for f in files)
    assert len(files) == 8
    truths = {f.rel_path.split("/")[1].upper(): set() for f in files}
    for f in files:
        truths[f.rel_path.split("/")[1].upper()].add(f.truth)
    assert truths == {"NORMAL": {0}, "PNEUMONIA": {1}}
    assert all(Path(f.uri.removeprefix("file://")).is_file() for f in files)


def test_find_inputs_one_class_folder_alone_is_labelled(tmp_path: Path) -> None:
    write_class_folder(tmp_path / "new" / "PNEUMONIA", 1, 3, 40, seed=0)
    files, skipped, layout = find_inputs(str(tmp_path / "new"))
    assert layout == "single" and skipped == []
    assert [f.truth for f in files] == [1, 1, 1]
    assert all(f.rel_path.startswith("PNEUMONIA/") for f in files)


def test_find_inputs_unlabelled_nested_folder(tmp_path: Path) -> None:
    root = tmp_path / "batch"
    for rel in ["b/deep/x.jpeg", "a.png", "train/w.JPG", ".hidden.jpeg", ".cache/z.jpeg"]:
        _write(root / rel)
    (root / "b" / "notes.txt").write_text("not an image")
    files, skipped, layout = find_inputs(str(root))
    assert layout == "unlabelled"
    assert [f.rel_path for f in files] == ["a.png", "b/deep/x.jpeg", "train/w.JPG"]
    assert all(f.truth is None for f in files)
    assert skipped == [SkippedFile("b/notes.txt", "not an image file (extension '.txt')")]


def test_find_inputs_steps_into_a_lone_chest_xray_folder(tmp_path: Path) -> None:
    make_kaggle_tree(tmp_path / "download" / "chest_xray", {"train": 1, "test": 1}, size=40)
    files, _, layout = find_inputs(str(tmp_path / "download"))
    assert layout == "kaggle" and files[0].rel_path.startswith("test/NORMAL/")


def test_find_inputs_single_file(tmp_path: Path) -> None:
    image = _write(tmp_path / "scan.png")
    files, skipped, layout = find_inputs(str(image))
    assert layout == "file" and skipped == []
    assert files == [InputImage(files[0].uri, "scan.png", None)]
    other = tmp_path / "report.pdf"
    other.write_bytes(b"%PDF")
    with pytest.raises(DataError, match=r"report\.pdf.*\.jpeg, \.jpg, \.png"):
        find_inputs(str(other))


def test_find_inputs_missing_or_empty_folder_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"{re.escape(str(missing))} does not exist"):
        find_inputs(str(missing))
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.md").write_text("x")
    with pytest.raises(
        DataError, match=rf"No \.jpeg/\.jpg/\.png/\.dcm image .*{re.escape(str(empty))}.*readme\.md"
    ):
        find_inputs(str(empty))


@pytest.fixture
def labelled_folder(tmp_path: Path) -> Path:
    """NORMAL and PNEUMONIA images of mixed sizes, and one corrupt file."""
    root = tmp_path / "new"
    write_class_folder(root / "NORMAL", 0, 3, 40, seed=1)
    write_class_folder(root / "PNEUMONIA", 1, 3, 56, seed=2)
    (root / "PNEUMONIA" / "broken.jpeg").write_bytes(
        (root / "NORMAL" / "IM-0100-0001.jpeg").read_bytes()[:200]
    )
    return root


def test_score_images_schema_order_skips_and_probabilities(
    model: Any, labelled_folder: Path
) -> None:
    files, _, _ = find_inputs(str(labelled_folder))
    reference = load_images(str(labelled_folder), min_images=2)  # skips the broken file too
    expected = predict_probabilities(model, reference.images, IMAGE_SIZE)
    threshold = float(np.median(expected))
    result = score_images(model, files, IMAGE_SIZE, threshold, batch_size=4, workers=2)

    assert result.skipped == [SkippedFile("PNEUMONIA/broken.jpeg", result.skipped[0].reason)]
    assert "corrupt or truncated" in result.skipped[0].reason
    p = result.predictions
    assert list(p.columns) == ["file", "probability", "label", "truth", "accepted", "guard_reason"]
    assert list(p["file"]) == [f.rel_path for f in files if f.rel_path != "PNEUMONIA/broken.jpeg"]
    assert list(p["file"]) == reference.paths
    np.testing.assert_allclose(p["probability"], expected, atol=1e-5)
    assert list(p["truth"]) == ["NORMAL"] * 3 + ["PNEUMONIA"] * 3
    assert list(p["label"]) == [
        "PNEUMONIA" if v >= threshold else "NORMAL" for v in p["probability"]
    ]
    assert set(p["label"]) == {"NORMAL", "PNEUMONIA"}

    pd.testing.assert_frame_equal(result.statistics, statistics_table({"new": reference}))
    assert set(result.statistics["split"]) == {"new"}


def test_score_images_unknown_truth_and_no_files(model: Any, tmp_path: Path) -> None:
    _write(tmp_path / "in" / "person7_virus_9.jpeg", label=1)
    files, _, _ = find_inputs(str(tmp_path / "in"))
    result = score_images(model, files, IMAGE_SIZE, threshold=0.0)
    assert list(result.predictions["truth"]) == [""]
    assert list(result.predictions["label"]) == ["PNEUMONIA"]
    assert result.statistics.loc[0, ["label", "patient"]].tolist() == ["unknown", "person7"]
    empty = score_images(model, [], IMAGE_SIZE, threshold=0.5)
    assert empty.predictions.empty and list(empty.predictions.columns) == [
        "file",
        "probability",
        "label",
        "truth",
        "accepted",
        "guard_reason",
    ]


def test_local_reads_bypass_fsspec_and_a_vanished_file_is_skipped(
    model: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = _write(tmp_path / "in" / "a b%20c.jpeg", label=1)  # a space and a % in the name
    gone = _write(tmp_path / "in" / "gone.jpeg", label=0, seed=1)
    files, _, _ = find_inputs(str(tmp_path / "in"))
    assert all(f.uri.startswith("file://") for f in files)

    def no_fsspec(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a local file went through fsspec")

    monkeypatch.setattr(fsspec, "open", no_fsspec)
    assert read_location(files[0].uri) == kept.read_bytes()
    gone.unlink()  # between listing and scoring
    result = score_images(model, files, IMAGE_SIZE, threshold=0.5)
    assert list(result.predictions["file"]) == ["a b%20c.jpeg"]
    assert [s.path for s in result.skipped] == ["gone.jpeg"]
    assert result.skipped[0].reason.startswith("cannot read file:")
    assert "No such file" in result.skipped[0].reason


def test_s3_input_matches_local(model: Any, labelled_folder: Path, s3_endpoint: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="incoming")
    for path in labelled_folder.rglob("*.jpeg"):
        key = f"batch/{path.relative_to(labelled_folder).as_posix()}"
        s3.upload_file(str(path), "incoming", key)
    files, _, layout = find_inputs("s3://incoming/batch")
    local_files, _, _ = find_inputs(str(labelled_folder))
    assert layout == "single" and files[0].uri.startswith("s3://incoming/batch/")
    assert [(f.rel_path, f.truth) for f in files] == [(f.rel_path, f.truth) for f in local_files]
    remote = score_images(model, files, IMAGE_SIZE, 0.5, batch_size=4)
    local = score_images(model, local_files, IMAGE_SIZE, 0.5, batch_size=4)
    pd.testing.assert_frame_equal(remote.predictions, local.predictions)
    assert [s.path for s in remote.skipped] == ["PNEUMONIA/broken.jpeg"]
    with pytest.raises(DataError, match="s3://incoming/nothing does not exist"):
        find_inputs("s3://incoming/nothing")


class _Tracker:
    """Counts how many of the read file contents and decoded images are alive at once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, retain: bool = False) -> None:
        self.lock = threading.Lock()
        self.reads = 0
        self.live_bytes = self.peak_bytes = 0
        self.live_images = self.peak_images = 0
        self.retained: list[Any] = []
        self.calls: list[tuple[int, int, int]] = []
        tracker = self

        class TrackedBytes(bytes):
            def __del__(self) -> None:
                with tracker.lock:
                    tracker.live_bytes -= 1

        read, examine = inference.read_location, inference._examine

        def tracked_read(uri: str) -> bytes:
            data = TrackedBytes(read(uri))
            with self.lock:
                self.reads += 1
                self.live_bytes += 1
                self.peak_bytes = max(self.peak_bytes, self.live_bytes)
            if retain:
                self.retained.append(data)
            return data

        def image_gone() -> None:
            with self.lock:
                self.live_images -= 1

        def tracked_examine(*args: Any) -> Any:
            outcome = examine(*args)
            if not isinstance(outcome, str):
                weakref.finalize(outcome[1], image_gone)
                with self.lock:
                    self.live_images += 1
                    self.peak_images = max(self.peak_images, self.live_images)
                if retain:
                    self.retained.append(outcome[1])
            return outcome

        monkeypatch.setattr(inference, "read_location", tracked_read)
        monkeypatch.setattr(inference, "_examine", tracked_examine)

    def progress(self, done: int, total: int) -> None:
        self.calls.append((done, total, self.reads))


@pytest.fixture
def ten_images(tmp_path: Path) -> list[InputImage]:
    write_class_folder(tmp_path / "ten", 0, 10, 36, seed=3)
    return find_inputs(str(tmp_path / "ten"))[0]


def test_score_images_holds_at_most_two_batches(
    model: Any, ten_images: list[InputImage], monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = _Tracker(monkeypatch)
    result = score_images(
        model, ten_images, IMAGE_SIZE, 0.5, batch_size=3, workers=2, progress=tracker.progress
    )
    assert len(result.predictions) == 10 and tracker.reads == 10
    assert [(done, total) for done, total, _ in tracker.calls] == [
        (3, 10),
        (6, 10),
        (9, 10),
        (10, 10),
    ]
    # When a batch is done, at most the next one has been read ahead.
    assert all(reads <= done + 3 for done, _, reads in tracker.calls)
    assert tracker.peak_images <= 2 * 3  # decoded: the batch being scored and the next one
    assert tracker.peak_bytes <= 2  # encoded: only while a worker thread handles the file
    assert tracker.live_bytes == 0 and tracker.live_images == 0


def test_bound_check_catches_an_implementation_that_keeps_images(
    model: Any, ten_images: list[InputImage], monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = _Tracker(monkeypatch, retain=True)
    score_images(model, ten_images, IMAGE_SIZE, 0.5, batch_size=3, workers=2)
    assert tracker.peak_bytes == 10 and tracker.peak_images == 10


def test_labelled_metrics() -> None:
    predictions = pd.DataFrame(
        {
            "file": ["a", "b", "c", "d"],
            "probability": [0.2, 0.9, 0.7, 0.4],
            "label": ["NORMAL", "PNEUMONIA", "PNEUMONIA", "NORMAL"],
            "truth": ["NORMAL", "PNEUMONIA", "", "PNEUMONIA"],
        }
    )
    metrics = labelled_metrics(predictions, threshold=0.5)
    assert metrics is not None
    assert metrics["labelled"] == metrics["n"] == 3
    assert (metrics["tn"], metrics["fp"], metrics["fn"], metrics["tp"]) == (1, 0, 1, 1)
    assert metrics["roc_auc"] == 1.0 and metrics["threshold"] == 0.5
    assert labelled_metrics(predictions.assign(truth=""), threshold=0.5) is None


def _guard_for(model: Any, seed: int) -> Any:
    from xray.ml.guard import features_and_embeddings, fit_guard
    from xray.ml.preprocessing import prepare_image

    rng = np.random.default_rng(seed)

    def part(n: int) -> Any:
        files = [encode(synthetic_pixels(i % 2, 40 + i % 20, rng)) for i in range(n)]
        return features_and_embeddings(
            model, [np.stack([prepare_image(f, IMAGE_SIZE) for f in files])]
        )

    train, val = part(120), part(120)  # the threshold is set on held-out images
    return fit_guard(train[0], train[1], val[0], val[1])


@pytest.mark.parametrize("mode", ["refuse", "flag", "off"])
def test_guard_refuses_a_photo_in_batch_inference(
    model: Any, labelled_folder: Path, mode: str
) -> None:
    photo = np.zeros((60, 60, 3), np.uint8)
    photo[..., 0] = 220  # a red picture in the NORMAL folder
    (labelled_folder / "NORMAL" / "holiday.png").write_bytes(encode(photo, "PNG", "RGB"))
    files, _, _ = find_inputs(str(labelled_folder))
    guard = _guard_for(model, 3)
    result = score_images(model, files, IMAGE_SIZE, 0.5, guard=guard, guard_mode=mode)
    p = result.predictions.set_index("file")
    row = p.loc["NORMAL/holiday.png"]
    metrics = labelled_metrics(result.predictions, 0.5)
    if mode == "off":
        assert row["accepted"] and row["guard_reason"] == ""
        assert metrics["labelled"] == len(p)
        return
    assert not row["accepted"] and "colour image" in row["guard_reason"]
    if mode == "refuse":
        assert np.isnan(row["probability"]) and row["label"] == ""
    else:
        assert 0 <= row["probability"] <= 1 and row["label"] in ("NORMAL", "PNEUMONIA")
    assert metrics["labelled"] == int(p["accepted"].sum()) < len(p)  # refused: not judged
    assert len(result.statistics) == len(p)  # drift still sees every scored image


def test_shards_are_contiguous_near_equal_and_cover_the_input() -> None:
    files = [InputImage(f"f{i}", f"f{i}.png", None) for i in range(10)]
    parts = [inference.shard(files, i, 3) for i in range(3)]
    assert [len(p) for p in parts] == [4, 3, 3]
    assert [f for p in parts for f in p] == files  # in input order, nothing twice
    assert inference.shard(files[:2], 2, 3) == []  # more shards than files: empty ones
    with pytest.raises(ValueError, match="shard 3 of 3"):
        inference.shard(files, 3, 3)


def test_merged_shards_equal_one_run(model: Any, labelled_folder: Path) -> None:
    """Three shards scored apart (as parallel steps do), merged: the same predictions,
    statistics, skipped files and metrics as scoring the folder at once."""
    files, _, layout = find_inputs(str(labelled_folder))
    whole = score_images(model, files, IMAGE_SIZE, 0.5, batch_size=4, workers=2)
    parts = [
        score_images(model, inference.shard(files, i, 3), IMAGE_SIZE, 0.5, batch_size=2)
        for i in range(3)
    ]
    summaries = [
        inference.summarize(part, "new", layout, 0.5, "none", 1.0 + i)
        for i, part in enumerate(parts)
    ]
    predictions, statistics, summary = inference.merge_shards(
        [p.predictions for p in parts], [p.statistics for p in parts], summaries
    )
    pd.testing.assert_frame_equal(predictions, whole.predictions)
    pd.testing.assert_frame_equal(statistics, whole.statistics)
    expected = inference.summarize(whole, "new", layout, 0.5, "none", 3.0)
    assert pd.Series(summary.metrics).equals(pd.Series(expected.metrics))  # NaN == NaN here
    assert summary.predicted == expected.predicted
    assert summary.skipped == expected.skipped and summary.images == 6
    assert summary.images_per_second == pytest.approx(6 / 3.0, abs=0.25)  # slowest shard
    with pytest.raises(ValueError, match="different thresholds"):
        inference.merge_shards(
            [], [], [summaries[0], summaries[1].model_copy(update={"threshold": 0.4})]
        )
