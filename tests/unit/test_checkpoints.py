"""Preempted training resumes from the mirrored checkpoint instead of epoch 1."""

from pathlib import Path

import keras
import numpy as np
import pytest
from zenml.io import fileio

from synthetic import make_single_folder
from xray.io.checkpoints import CheckpointMirror, checkpoint_key
from xray.io.loading import load_images
from xray.logic.split import split_by_patient
from xray.ml.training import TrainConfig, train_classifier


class Preempted(Exception):
    pass


class EpochSpy(keras.callbacks.Callback):
    """Records the epochs it sees; raises after ``stop_after`` of them (a preemption)."""

    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__()
        self.seen: list[int] = []
        self.stop_after = stop_after

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seen.append(epoch)
        if self.stop_after is not None and len(self.seen) == self.stop_after:
            raise Preempted


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = make_single_folder(tmp_path_factory.mktemp("ckpt") / "d", per_class=16, size=40)
    parts, _ = split_by_patient(load_images(str(root)), 0.25, 0.2, seed=0)
    return parts


@pytest.mark.parametrize("fine_tune", [False, True])
def test_preempted_training_resumes_at_the_next_epoch(
    splits: dict, tmp_path: Path, fine_tune: bool
) -> None:
    config = TrainConfig(
        backbone="compact_cnn",
        image_size=40,
        epochs=4,
        batch_size=8,
        early_stopping_patience=10,
        freeze_base=fine_tune,
        fine_tune_epochs=2 if fine_tune else 0,
    )
    remote = str(tmp_path / "artifact-store" / "checkpoints" / "k")
    first = CheckpointMirror(remote, tmp_path / "machine-1", fileio)
    stop_after = 5 if fine_tune else 2  # fine-tune: inside the second phase
    with pytest.raises(Preempted):
        train_classifier(
            splits["train"], splits["val"], config, [EpochSpy(stop_after)], checkpoint=first
        )
    assert fileio.exists(remote) and fileio.listdir(remote)

    spy = EpochSpy()
    second = CheckpointMirror(remote, tmp_path / "machine-2", fileio)  # a fresh machine
    result = train_classifier(splits["train"], splits["val"], config, [spy], checkpoint=second)
    total = config.epochs + config.fine_tune_epochs
    if fine_tune:
        assert spy.seen == [5]  # the frozen phase is not repeated; fine-tune epoch 6 only
    else:
        assert spy.seen == [2, 3]  # epochs 3 and 4; 1 and 2 are not trained again
    assert len(result.history["loss"]) == total  # the history has every epoch
    assert np.isfinite(result.history["val_auc"]).all()
    assert not fileio.exists(remote)  # a finished training clears its checkpoint


def test_checkpoint_key_depends_on_every_part() -> None:
    assert checkpoint_key("a", "b") == checkpoint_key("a", "b")
    assert checkpoint_key("a", "b") != checkpoint_key("a", "c")
    assert checkpoint_key("ab", "c") != checkpoint_key("a", "bc")
