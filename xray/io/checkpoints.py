"""Resumable training on spot/preemptible machines.

Keras' ``BackupAndRestore`` writes the model, optimizer and epoch to a local folder after
every epoch; :class:`CheckpointMirror` copies that folder to durable storage (the stack's
artifact store: ``s3://``, ``gs://`` or a local path) and brings it back when the same
training starts again, so a preempted training step resumes at the next epoch instead of
epoch 1. The file operations come from the caller (ZenML's ``fileio`` in the step, which
uses the artifact store's own credentials), so this module needs no ZenML.
"""

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class FileSystem(Protocol):
    """The file operations the mirror needs (``zenml.io.fileio`` provides them)."""

    def exists(self, path: str) -> bool: ...
    def listdir(self, path: str) -> list[str]: ...
    def isdir(self, path: str) -> bool: ...
    def copy(self, src: str, dst: str, overwrite: bool = False) -> None: ...
    def makedirs(self, path: str) -> None: ...
    def rmtree(self, path: str) -> None: ...


def checkpoint_key(*parts: str) -> str:
    """A short stable key for one training job (e.g. data fingerprints and config).

    The same data and config give the same key, so a re-run after a preemption finds the
    checkpoint; anything else starts fresh.
    """
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


class CheckpointMirror:
    """Keeps a local checkpoint folder and a durable copy of it in step.

    Args:
        remote_dir: Durable folder (e.g. ``s3://bucket/zenml/checkpoints/train_model/<key>``).
        local_dir: Local folder Keras writes to.
        fs: File operations that understand ``remote_dir``.
    """

    def __init__(self, remote_dir: str, local_dir: Path, fs: FileSystem) -> None:
        self.remote_dir = remote_dir.rstrip("/")
        self.local_dir = Path(local_dir)
        self.fs = fs

    def _remote_files(self, folder: str, prefix: str = "") -> list[str]:
        files = []
        for name in self.fs.listdir(folder):
            name = str(name).rstrip("/").rsplit("/", 1)[-1]
            path = f"{folder}/{name}"
            if self.fs.isdir(path):
                files += self._remote_files(path, f"{prefix}{name}/")
            else:
                files.append(f"{prefix}{name}")
        return files

    def restore(self) -> bool:
        """Copies an existing durable checkpoint into the local folder.

        Returns:
            Whether there was one to resume from.
        """
        if not self.fs.exists(self.remote_dir):
            return False
        files = self._remote_files(self.remote_dir)
        if not files:
            return False
        for relative in files:
            target = self.local_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            self.fs.copy(f"{self.remote_dir}/{relative}", str(target), overwrite=True)
        logger.info("Resuming training from the checkpoint in %s", self.remote_dir)
        return True

    def upload(self) -> None:
        """Copies the local folder to the durable one (metadata files last)."""
        files = sorted(
            (p for p in self.local_dir.rglob("*") if p.is_file()),
            key=lambda p: (p.suffix == ".json", str(p)),
        )
        for path in files:
            relative = path.relative_to(self.local_dir).as_posix()
            target = f"{self.remote_dir}/{relative}"
            parent = target.rsplit("/", 1)[0]
            if not self.fs.exists(parent):
                self.fs.makedirs(parent)
            self.fs.copy(str(path), target, overwrite=True)

    def callback(self) -> Any:
        """A Keras callback that uploads after each epoch; put it after BackupAndRestore."""
        import keras

        mirror = self

        class _Upload(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                mirror.upload()

        return _Upload()

    def clear(self) -> None:
        """Deletes both copies once training has finished."""
        if self.fs.exists(self.remote_dir):
            self.fs.rmtree(self.remote_dir)
        shutil.rmtree(self.local_dir, ignore_errors=True)


class HistoryFile:
    """Per-epoch metrics of one training phase, kept beside its checkpoint.

    Keras' ``History`` only sees the epochs since the last resume; this file has them all.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> dict[int, dict[str, float]]:
        """Epoch -> metrics recorded so far (empty if none)."""
        if not self.path.is_file():
            return {}
        return {int(k): v for k, v in json.loads(self.path.read_text()).items()}

    def callback(self) -> Any:
        """A Keras callback that records each epoch's logs; put it before the mirror."""
        import keras

        history = self

        class _Record(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                epochs = history.read()
                epochs[epoch] = {k: float(v) for k, v in (logs or {}).items()}
                history.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = history.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(epochs))
                os.replace(tmp, history.path)

        return _Record()

    def as_lists(self) -> dict[str, list[float]]:
        """The recorded epochs in order, as Keras' ``History.history`` lays them out."""
        epochs = self.read()
        out: dict[str, list[float]] = {}
        for epoch in sorted(epochs):
            for key, value in epochs[epoch].items():
                out.setdefault(key, []).append(value)
        return out
