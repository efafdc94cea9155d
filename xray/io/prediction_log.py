"""The prediction log: every answer of the service and the feedback on it, in a database.

The service appends each record to a journal file with one ``write`` before it answers
(so an answered request survives a crash or a restart of the process) and a background
thread moves the journal into the database (so the request never waits for the
database). Each log holds an exclusive lock on its own journal file while it lives; at
start, every journal whose lock is free (its process ended, crashed, or restarted in a
container under the same pid) is moved first; inserts are idempotent (the key is
``inference_id`` and ``role``), so a record moved twice is stored once.

The database is one URL (:data:`URL_ENV`): SQLite in :data:`DIR_ENV` by default, a
server database (``postgresql+pg8000://user:password@host/db``) in production. A record
holds the answer and the image statistics the drift checks use, never the image or a
patient identifier; images are kept only when :data:`KEEP_IMAGES_ENV` says so, as PNGs
of the model's input (no file metadata, no DICOM tags), deleted after
:data:`IMAGE_DAYS_ENV` days.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from xray.logic.constants import CLASS_NAMES

if TYPE_CHECKING:  # pandas is imported where the tables are read: the service never does
    import pandas as pd

URL_ENV = "XRAY_PREDICTION_LOG_URL"
DIR_ENV = "XRAY_PREDICTION_LOG_DIR"
SWITCH_ENV = "XRAY_PREDICTION_LOG"
KEEP_IMAGES_ENV = "XRAY_PREDICTION_LOG_IMAGES"
IMAGE_DAYS_ENV = "XRAY_PREDICTION_LOG_IMAGE_DAYS"
DEFAULT_DIR = Path("~/.xray/prediction_log")
DEFAULT_IMAGE_DAYS = 30
PREDICTIONS_TABLE = "xray_predictions"
FEEDBACK_TABLE = "xray_feedback"
Role = Literal["production", "challenger"]

logger = logging.getLogger(__name__)


class PredictionLogError(RuntimeError):
    """The prediction log is misconfigured or its database cannot be reached."""


class UnknownInferenceError(KeyError):
    """Feedback for an ``inference_id`` the log has no prediction for."""


class PredictionRecord(BaseModel):
    """One model's answer to one image."""

    inference_id: str
    time: datetime
    route: str = Field(description="/predict or /predict_batch")
    role: Role = "production"
    model_version: str
    probability: float
    label: str | None = Field(description="None when the input guard withheld the label")
    threshold: float
    accepted: bool | None = Field(None, description="the input guard's verdict (None: no guard)")
    guard_reason: str | None = None
    statistics: dict[str, float | int | str] = Field(default_factory=dict)


def log_directory() -> Path:
    """Where the journal, the default SQLite file and kept images live (:data:`DIR_ENV`)."""
    return Path(os.environ.get(DIR_ENV) or DEFAULT_DIR).expanduser()


def log_url() -> str:
    """The database URL (:data:`URL_ENV`), else SQLite in :func:`log_directory`."""
    return os.environ.get(URL_ENV) or f"sqlite:///{log_directory() / 'predictions.db'}"


def logging_enabled() -> bool:
    """False when :data:`SWITCH_ENV` is ``off`` (the default is on).

    Raises:
        PredictionLogError: For a value other than ``on``/``off``.
    """
    value = os.environ.get(SWITCH_ENV, "on").strip().lower()
    if value not in ("on", "off"):
        raise PredictionLogError(f"{SWITCH_ENV}={value!r}: use on or off")
    return value == "on"


def redacted(url: str) -> str:
    """The URL without its password (what may be logged)."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _tables(metadata: Any) -> tuple[Any, Any]:
    import sqlalchemy as sa

    predictions = sa.Table(
        PREDICTIONS_TABLE,
        metadata,
        sa.Column("inference_id", sa.String(36), primary_key=True),
        sa.Column("role", sa.String(16), primary_key=True),
        sa.Column("time", sa.DateTime, nullable=False, index=True),  # UTC
        sa.Column("route", sa.String(32), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("label", sa.String(16)),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("accepted", sa.Boolean),
        sa.Column("guard_reason", sa.Text),
        sa.Column("statistics", sa.Text, nullable=False),
    )
    feedback = sa.Table(
        FEEDBACK_TABLE,
        metadata,
        sa.Column("inference_id", sa.String(36), primary_key=True),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("source", sa.String(200)),
        sa.Column("time", sa.DateTime, nullable=False),  # UTC
    )
    return predictions, feedback


class PredictionStore:
    """The two tables (predictions, feedback) behind one SQLAlchemy URL."""

    def __init__(self, url: str | None = None) -> None:
        import sqlalchemy as sa

        self.url = url or log_url()
        try:
            self.engine = sa.create_engine(self.url, pool_pre_ping=True)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
            raise PredictionLogError(
                f"{URL_ENV}={redacted(self.url)} is not a usable database URL ({exc}); e.g. "
                "sqlite:////var/lib/xray/predictions.db or "
                "postgresql+pg8000://user:password@host:5432/xray"
            ) from None
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.metadata = sa.MetaData()
        self.predictions, self.feedback = _tables(self.metadata)
        self._created = False

    def create(self) -> None:
        """Creates the tables when missing.

        Raises:
            PredictionLogError: The database cannot be reached (the URL without password).
        """
        import sqlalchemy as sa

        if self._created:
            return
        try:
            if self.url.startswith("sqlite:///"):
                folder = Path(self.url.removeprefix("sqlite:///")).expanduser().parent
                folder.mkdir(parents=True, exist_ok=True)
            self.metadata.create_all(self.engine)
        except OSError as exc:
            raise PredictionLogError(
                f"prediction log database {redacted(self.url)}: its folder cannot be "
                f"created ({exc.strerror})"
            ) from None
        except sa.exc.SQLAlchemyError as exc:
            raise PredictionLogError(
                f"prediction log database {redacted(self.url)} cannot be reached: "
                f"{type(_cause(exc)).__name__}: {_cause(exc)}"
            ) from None
        self._created = True

    def insert(self, records: Sequence[PredictionRecord]) -> int:
        """Stores records not stored yet (by ``inference_id`` and ``role``); returns how
        many were new."""
        import sqlalchemy as sa

        if not records:
            return 0
        self.create()
        rows = {(r.inference_id, r.role): _row(r) for r in records}
        table = self.predictions
        with self.engine.begin() as connection:
            ids = sorted({key[0] for key in rows})
            stored = {
                (row.inference_id, row.role)
                for row in connection.execute(
                    sa.select(table.c.inference_id, table.c.role).where(
                        table.c.inference_id.in_(ids)
                    )
                )
            }
            new = [row for key, row in rows.items() if key not in stored]
            if new:
                connection.execute(table.insert(), new)
        return len(new)

    def has_prediction(self, inference_id: str) -> bool:
        import sqlalchemy as sa

        self.create()
        query = sa.select(sa.func.count()).where(self.predictions.c.inference_id == inference_id)
        with self.engine.connect() as connection:
            return bool(connection.execute(query).scalar())

    def add_feedback(self, inference_id: str, label: str, source: str | None = None) -> str:
        """Records the true label of a prediction: ``recorded``, ``unchanged`` (the same
        label again: idempotent) or ``updated`` (a corrected label replaces the old one).

        Raises:
            UnknownInferenceError: No prediction has that id.
        """
        import sqlalchemy as sa

        if not self.has_prediction(inference_id):
            raise UnknownInferenceError(inference_id)
        table = self.feedback
        row = {"label": label, "source": source, "time": utc_naive(datetime.now(UTC))}
        with self.engine.begin() as connection:
            old = connection.execute(
                sa.select(table.c.label, table.c.source).where(table.c.inference_id == inference_id)
            ).first()
            if old is None:
                connection.execute(table.insert(), [{"inference_id": inference_id, **row}])
                return "recorded"
            if (old.label, old.source) == (label, source):
                return "unchanged"
            connection.execute(
                table.update().where(table.c.inference_id == inference_id).values(**row)
            )
            return "updated"

    def window(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Predictions made in ``[since, until)`` (both roles) and the feedback on them.

        Returns:
            ``(predictions, feedback)``: the predictions with their statistics as
            columns; the feedback's ``inference_id``, ``label``, ``source``, ``time``.
        """
        import pandas as pd
        import sqlalchemy as sa

        self.create()
        table = self.predictions
        query = sa.select(table)
        if since is not None:
            query = query.where(table.c.time >= utc_naive(since))
        if until is not None:
            query = query.where(table.c.time < utc_naive(until))
        with self.engine.connect() as connection:
            rows = [dict(row._mapping) for row in connection.execute(query.order_by(table.c.time))]
            ids = sorted({row["inference_id"] for row in rows})
            labels: list[dict[str, Any]] = []
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                labels += [
                    dict(row._mapping)
                    for row in connection.execute(
                        sa.select(self.feedback).where(self.feedback.c.inference_id.in_(chunk))
                    )
                ]
        statistics = pd.DataFrame([json.loads(row.pop("statistics")) for row in rows])
        predictions = pd.concat(
            [
                pd.DataFrame(rows, columns=[c.name for c in table.c if c.name != "statistics"]),
                statistics,
            ],
            axis=1,
        )
        feedback = pd.DataFrame(labels, columns=["inference_id", "label", "source", "time"])
        return predictions, feedback


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL: the monitoring pipeline reads while the service writes; a busy database is
    waited for, not an error."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def utc_naive(moment: datetime) -> datetime:
    """A time as the tables hold it: UTC without a zone (a zone-less time is UTC)."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _row(record: PredictionRecord) -> dict[str, Any]:
    row = record.model_dump(exclude={"statistics"})
    row["time"] = utc_naive(record.time)
    row["statistics"] = json.dumps(record.statistics)
    return row


class PredictionLog:
    """Journal plus background writer: :meth:`record` on the request path (one file
    append), the database insert in a thread (every ``interval`` seconds or sooner).

    Args:
        store: Where records end up.
        directory: The journal's folder (``journal/<pid>.jsonl``).
        interval: Longest wait between two moves to the database.
    """

    def __init__(self, store: PredictionStore, directory: Path, interval: float = 1.0) -> None:
        self.store = store
        self.journal_dir = directory / "journal"
        try:
            self.journal_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PredictionLogError(
                f"the prediction log's journal folder {self.journal_dir} cannot be created "
                f"({exc.strerror}): set {DIR_ENV} to a writable folder, or {SWITCH_ENV}=off"
            ) from None
        # One journal per log, named after the pid (for the operator) plus a token (two
        # logs in one process, or a container restarted under the same pid, never share
        # a file), locked for the log's lifetime: a free lock means its writer is gone.
        self.journal = self.journal_dir / f"{os.getpid()}-{secrets.token_hex(4)}.jsonl"
        self.interval = interval
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._moved = threading.Condition()
        self._offset = 0  # bytes of the journal file already in the database
        self._moved_total = 0  # bytes ever moved to the database by this log
        self._appended = 0  # bytes ever appended by this log
        self._fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)

    def start(self) -> PredictionLog:
        """Moves what earlier processes left in the journal, then starts the writer."""
        for leftover in sorted(self.journal_dir.glob("*.jsonl")):
            if leftover != self.journal:
                self._move_leftover(leftover)
        self._thread.start()
        return self

    def record(self, records: Sequence[PredictionRecord]) -> None:
        """Appends records to the journal (one write). The writer moves them at its next
        interval, many per transaction (one transaction per record costs ~15 times the
        CPU of one per ~20 records, measured here)."""
        data = "".join(r.model_dump_json() + "\n" for r in records).encode()
        with self._lock:
            os.write(self._fd, data)
            self._appended += len(data)

    def flush(self, timeout: float = 10.0) -> bool:
        """Waits until everything recorded so far is in the database (True) or
        ``timeout`` seconds pass (False)."""
        with self._lock:
            target = self._appended
        deadline = time.monotonic() + timeout
        with self._moved:
            while self._moved_total < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._wake.set()
                self._moved.wait(min(remaining, 0.2))
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Moves what is left, then stops the writer."""
        self.flush(timeout)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        if not self._thread.is_alive() and os.fstat(self._fd).st_size == 0:
            self.journal.unlink(missing_ok=True)  # all moved; a non-empty one waits
        os.close(self._fd)

    def _run(self) -> None:
        delay = self.interval
        while not self._stop.is_set():
            self._wake.wait(delay)
            self._wake.clear()
            try:
                self._move_own()
                delay = self.interval
                if self._failing:
                    logger.warning("Prediction log: database reachable again; journal moved")
                self._failing = False
            except PredictionLogError as exc:
                if not self._failing:
                    logger.warning("Prediction log: %s; records stay in %s", exc, self.journal)
                self._failing = True
                delay = min(max(delay * 2, 1.0), 30.0)
            except Exception:  # noqa: BLE001 - the writer must outlive any one bad batch
                logger.exception("Prediction log: moving the journal failed")
                delay = min(max(delay * 2, 1.0), 30.0)

    def _move_own(self) -> None:
        with open(self.journal, "rb") as file:
            file.seek(self._offset)
            chunk = file.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        if complete:
            _insert(self.store, _parse(complete, self.journal))
        with self._moved:
            self._offset += len(complete)
            self._moved_total += len(complete)
            with self._lock:
                if self._offset == os.fstat(self._fd).st_size:  # all moved: start afresh
                    os.ftruncate(self._fd, 0)
                    self._offset = 0
            self._moved.notify_all()

    def _move_leftover(self, path: Path) -> None:
        """Moves and deletes a journal whose writer is gone (its lock is free); a journal
        another live log holds is left to that log."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # another starting process moved it first
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a live writer's journal
            try:
                _insert(self.store, _parse(path.read_bytes(), path))
                path.unlink(missing_ok=True)
            except FileNotFoundError:
                return
            except PredictionLogError as exc:
                logger.warning("Prediction log: %s; kept in %s for later", exc, path)
        finally:
            os.close(fd)


def _insert(store: PredictionStore, records: list[PredictionRecord]) -> None:
    import sqlalchemy as sa

    try:
        for start in range(0, len(records), 500):
            store.insert(records[start : start + 500])
    except sa.exc.SQLAlchemyError as exc:
        store._created = False
        raise PredictionLogError(
            f"database {redacted(store.url)} failed: {type(_cause(exc)).__name__}"
        ) from None


def _cause(exc: BaseException) -> BaseException:
    """The driver's exception behind SQLAlchemy's wrapper (what names the problem)."""
    return getattr(exc, "orig", None) or exc


def _parse(data: bytes, path: Path) -> list[PredictionRecord]:
    """Records of a journal; a line that does not parse (a write cut short by a crash) is
    counted and skipped, never logged (it may hold statistics of a patient's image)."""
    records, bad = [], 0
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            records.append(PredictionRecord.model_validate_json(line))
        except ValueError:
            bad += 1
    if bad:
        logger.warning("Prediction log: %d unreadable line(s) in %s skipped", bad, path)
    return records


def open_log(directory: Path | None = None, url: str | None = None) -> PredictionLog | None:
    """The running prediction log the service writes to, or None when switched off.

    Raises:
        PredictionLogError: A bad URL or switch (a database that cannot be reached is
            not an error here: records wait in the journal).
    """
    if not logging_enabled():
        return None
    store = PredictionStore(url or log_url())
    return PredictionLog(store, directory or log_directory()).start()


def keep_images() -> int | None:
    """Days to keep the images of logged predictions, or None when images are not kept
    (the default). ``XRAY_PREDICTION_LOG_IMAGES=keep`` keeps them for
    ``XRAY_PREDICTION_LOG_IMAGE_DAYS`` days (default 30).

    Raises:
        PredictionLogError: A bad value of either variable.
    """
    value = os.environ.get(KEEP_IMAGES_ENV, "off").strip().lower()
    if value not in ("keep", "off"):
        raise PredictionLogError(f"{KEEP_IMAGES_ENV}={value!r}: use keep or off")
    if value == "off":
        return None
    days = os.environ.get(IMAGE_DAYS_ENV, str(DEFAULT_IMAGE_DAYS))
    if not days.isdigit() or int(days) < 1:
        raise PredictionLogError(f"{IMAGE_DAYS_ENV}={days!r}: a whole number of days, >= 1")
    return int(days)


def image_folder(directory: Path | None = None) -> Path:
    """Where kept images are: ``<log dir>/images/<inference_id>.png``."""
    return (directory or log_directory()) / "images"


def save_image(folder: Path, inference_id: str, pixels: np.ndarray) -> Path:
    """Writes the model's input as a PNG (atomically: a reader never sees half a file)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{inference_id}.png"
    partial = folder / f".{inference_id}.png.partial"
    Image.fromarray(np.asarray(pixels, np.uint8)).save(partial, format="PNG")
    partial.replace(path)
    return path


def purge_images(folder: Path, days: int, now: datetime | None = None) -> int:
    """Deletes kept images older than ``days``; returns how many."""
    if not folder.is_dir():
        return 0
    cutoff = ((now or datetime.now(UTC)) - timedelta(days=days)).timestamp()
    removed = 0
    for path in folder.glob("*.png"):
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def labelled_images(
    predictions: pd.DataFrame, feedback: pd.DataFrame, folder: Path
) -> Iterator[tuple[Path, str]]:
    """``(kept image, true label)`` for every production prediction that has feedback
    and a kept image: the production data a retrain can add."""
    production = predictions[predictions["role"] == "production"]
    truth = dict(zip(feedback["inference_id"], feedback["label"], strict=True))
    for inference_id in production["inference_id"]:
        path = folder / f"{inference_id}.png"
        if inference_id in truth and truth[inference_id] in CLASS_NAMES and path.is_file():
            yield path, truth[inference_id]
