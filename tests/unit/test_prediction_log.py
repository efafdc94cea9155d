"""The prediction log: journal, background move, feedback, crash recovery, images."""

import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xray.io.prediction_log import (
    PredictionLog,
    PredictionLogError,
    PredictionRecord,
    PredictionStore,
    UnknownInferenceError,
    keep_images,
    labelled_images,
    open_log,
    purge_images,
    save_image,
)
from xray.logic.settings import DRIFT_COLUMNS


def _record(i: int, role: str = "production", when: datetime | None = None) -> PredictionRecord:
    probability = (i % 10) / 10
    return PredictionRecord(
        inference_id=f"id-{i:04d}",
        time=when or datetime.now(UTC),
        route="/predict",
        role=role,
        model_version="3",
        probability=probability,
        label="PNEUMONIA" if probability >= 0.5 else "NORMAL",
        threshold=0.5,
        accepted=True,
        statistics={column: float(i) for column in DRIFT_COLUMNS},
    )


@pytest.fixture
def store(tmp_path: Path) -> PredictionStore:
    return PredictionStore(f"sqlite:///{tmp_path / 'db' / 'predictions.db'}")


def test_records_reach_the_database_with_their_statistics(
    store: PredictionStore, tmp_path: Path
) -> None:
    log = PredictionLog(store, tmp_path, interval=0.05).start()
    log.record([_record(i) for i in range(5)])
    log.record([_record(5, "challenger"), _record(5)])
    assert log.flush(10)
    predictions, feedback = store.window()
    log.close()
    assert len(predictions) == 7 and feedback.empty
    assert set(predictions["role"]) == {"production", "challenger"}
    assert (
        predictions.set_index(["inference_id", "role"]).loc[("id-0003", "production"), "mean"] == 3
    )
    assert set(DRIFT_COLUMNS) <= set(predictions.columns)
    assert not log.journal.exists()  # all moved: a closed log leaves no journal


def test_a_crashed_process_journal_is_moved_at_start_once(
    store: PredictionStore, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    journal.mkdir()
    dead = journal / "999999999.jsonl"  # no such pid
    lines = [_record(i).model_dump_json() for i in range(3)]
    dead.write_text("\n".join(lines) + "\n" + lines[0][:40])  # the last write cut short
    store.insert([_record(0)])  # one was already moved before the crash
    log = PredictionLog(store, tmp_path, interval=0.05).start()
    log.close()
    predictions, _ = store.window()
    assert sorted(predictions["inference_id"]) == ["id-0000", "id-0001", "id-0002"]
    assert not dead.exists()


def test_a_journal_left_under_this_pid_is_moved(store: PredictionStore, tmp_path: Path) -> None:
    """In a container the restarted service often has the same pid as the crashed one."""
    journal = tmp_path / "journal"
    journal.mkdir()
    (journal / f"{os.getpid()}.jsonl").write_text(
        _record(8).model_dump_json() + "\n" + _record(9).model_dump_json()[:50]
    )
    log = PredictionLog(store, tmp_path, interval=0.05).start()
    log.record([_record(10)])
    assert log.flush(10)
    log.close()
    assert sorted(store.window()[0]["inference_id"]) == ["id-0008", "id-0010"]
    assert not list(journal.iterdir())  # everything moved: no journal is left behind


def test_two_logs_in_one_process_keep_their_own_journals(
    store: PredictionStore, tmp_path: Path
) -> None:
    """Regression: two logs of one process shared ``<pid>.jsonl``; one truncated what the
    other had not moved yet, and feedback on that answer got 404 (seen in CI)."""
    other_store = PredictionStore(f"sqlite:///{tmp_path / 'other.db'}")
    first = PredictionLog(other_store, tmp_path, interval=0.01).start()
    second = PredictionLog(store, tmp_path, interval=5.0).start()
    assert first.journal != second.journal
    for i in range(20):
        first.record([_record(100 + i)])
        second.record([_record(i)])
        time.sleep(0.005)
    assert first.flush(10) and second.flush(10)
    # a third log starting now leaves the live logs' journals to them
    PredictionLog(PredictionStore(f"sqlite:///{tmp_path / 'third.db'}"), tmp_path).start().close()
    first.close()
    second.close()
    assert sorted(store.window()[0]["inference_id"]) == [f"id-{i:04d}" for i in range(20)]
    assert len(other_store.window()[0]) == 20


def test_feedback_is_idempotent_and_names_unknown_ids(store: PredictionStore) -> None:
    store.insert([_record(1), _record(2)])
    assert store.add_feedback("id-0001", "PNEUMONIA", "radiologist") == "recorded"
    assert store.add_feedback("id-0001", "PNEUMONIA", "radiologist") == "unchanged"
    assert store.add_feedback("id-0001", "NORMAL", "radiologist") == "updated"
    with pytest.raises(UnknownInferenceError):
        store.add_feedback("id-9999", "NORMAL")
    _, feedback = store.window()
    assert feedback.set_index("inference_id").loc["id-0001", "label"] == "NORMAL"


def test_the_window_selects_by_time(store: PredictionStore) -> None:
    now = datetime.now(UTC)
    store.insert([_record(i, when=now - timedelta(days=i)) for i in range(5)])
    predictions, _ = store.window(since=now - timedelta(days=2, hours=1))
    assert sorted(predictions["inference_id"]) == ["id-0000", "id-0001", "id-0002"]
    predictions, _ = store.window(since=now - timedelta(days=9), until=now - timedelta(hours=1))
    assert len(predictions) == 4


def test_an_unreachable_database_keeps_records_in_the_journal_and_hides_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from stacks.emulators import free_port

    url = f"postgresql+pg8000://xray:s3cret@127.0.0.1:{free_port()}/xray"
    caplog.set_level(logging.WARNING, "xray.io.prediction_log")
    log = PredictionLog(PredictionStore(url), tmp_path, interval=0.05).start()
    log.record([_record(i) for i in range(3)])
    assert not log.flush(1.5)
    log.close(timeout=0.5)
    assert "cannot be reached" in caplog.text or "failed" in caplog.text
    assert "s3cret" not in caplog.text and "***" in caplog.text
    # the database is back (here: another URL), the next start moves the journal
    sqlite = PredictionStore(f"sqlite:///{tmp_path / 'later.db'}")
    PredictionLog(sqlite, tmp_path, interval=0.05).start().close()
    assert len(sqlite.window()[0]) == 3


def test_settings_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XRAY_PREDICTION_LOG_DIR", str(tmp_path))
    monkeypatch.setenv("XRAY_PREDICTION_LOG", "maybe")
    with pytest.raises(PredictionLogError, match="XRAY_PREDICTION_LOG='maybe'"):
        open_log()
    monkeypatch.setenv("XRAY_PREDICTION_LOG", "off")
    assert open_log() is None
    monkeypatch.setenv("XRAY_PREDICTION_LOG", "on")
    monkeypatch.setenv("XRAY_PREDICTION_LOG_URL", "nosuchdb://x")
    with pytest.raises(PredictionLogError, match="XRAY_PREDICTION_LOG_URL"):
        open_log()
    monkeypatch.setenv("XRAY_PREDICTION_LOG_URL", f"sqlite:///{tmp_path / 'x.db'}")
    monkeypatch.setenv("XRAY_PREDICTION_LOG_DIR", "/proc/not-writable")
    with pytest.raises(PredictionLogError, match="XRAY_PREDICTION_LOG_DIR to a writable"):
        open_log()
    monkeypatch.setenv("XRAY_PREDICTION_LOG_IMAGES", "keep")
    monkeypatch.setenv("XRAY_PREDICTION_LOG_IMAGE_DAYS", "0")
    with pytest.raises(PredictionLogError, match="XRAY_PREDICTION_LOG_IMAGE_DAYS"):
        keep_images()
    monkeypatch.setenv("XRAY_PREDICTION_LOG_IMAGE_DAYS", "7")
    assert keep_images() == 7
    monkeypatch.delenv("XRAY_PREDICTION_LOG_IMAGES")
    assert keep_images() is None


def test_kept_images_are_pngs_without_metadata_and_expire(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    pixels = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    path = save_image(folder, "id-0001", pixels)
    with Image.open(path) as image:
        assert image.format == "PNG" and not image.info.get("exif")
        assert np.array_equal(np.asarray(image), pixels)
    old = save_image(folder, "id-0002", pixels)
    past = time.time() - 40 * 86400
    os.utime(old, (past, past))
    assert purge_images(folder, 30) == 1
    assert path.exists() and not old.exists()
    assert not list(folder.glob(".*partial"))


def test_labelled_images_pair_kept_images_with_feedback(
    store: PredictionStore, tmp_path: Path
) -> None:
    store.insert([_record(i) for i in range(3)] + [_record(1, "challenger")])
    store.add_feedback("id-0001", "PNEUMONIA")
    store.add_feedback("id-0002", "NORMAL")
    folder = tmp_path / "images"
    for i in (0, 1):
        save_image(folder, f"id-{i:04d}", np.zeros((8, 8, 3), np.uint8))
    predictions, feedback = store.window()
    assert list(labelled_images(predictions, feedback, folder)) == [
        (folder / "id-0001.png", "PNEUMONIA")
    ]
