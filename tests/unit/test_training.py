import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.metrics import roc_auc_score

from synthetic import make_single_folder
from xray.io.loading import load_images
from xray.logic.split import split_by_patient
from xray.ml.training import TrainConfig, class_weights, predict_probabilities, train_classifier


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = make_single_folder(tmp_path_factory.mktemp("train") / "d", per_class=30, size=48)
    parts, _ = split_by_patient(load_images(str(root)), 0.2, 0.2, seed=0)
    return parts


def test_end_to_end_training_learns(splits: dict) -> None:
    config = TrainConfig(
        backbone="compact_cnn",
        image_size=48,
        epochs=6,
        batch_size=8,
        early_stopping_patience=6,
        seed=1,
        # The synthetic classes differ mostly in brightness, which per-image
        # standardisation removes by design (see test_lifecycle's good config).
        standardize_intensity=False,
        augment_acquisition=False,
    )
    result = train_classifier(splits["train"], splits["val"], config)
    assert result.pretrained is False
    assert len(result.history["loss"]) == 6 and result.history["phase"][0] == "end to end"
    assert result.backbone_passes == 6
    p = predict_probabilities(result.model, splits["test"].images, 48)
    y = splits["test"].labels
    assert p.shape == (len(y),) and np.all((p >= 0) & (p <= 1))
    assert roc_auc_score(y, p) > 0.9  # synthetic classes are easy to tell apart


def test_frozen_phase_runs_backbone_once_then_fine_tunes(splits: dict) -> None:
    config = TrainConfig(
        backbone="compact_cnn",
        image_size=40,
        epochs=5,
        freeze_base=True,
        fine_tune_epochs=1,
        batch_size=8,
        early_stopping_patience=10,
    )
    result = train_classifier(splits["train"], splits["val"], config)
    phases = [p["phase"] for p in result.phases]
    assert phases == ["frozen backbone, cached features", "fine-tune last block"]
    assert result.phases[0]["epochs"] == 5
    assert result.backbone_passes == 1 + 1  # one feature pass, one fine-tune epoch
    assert result.history["phase"].count("fine-tune last block") == 1


def test_class_weights_balance_the_loss() -> None:
    w = class_weights(np.array([0] * 25 + [1] * 75))
    assert w[0] == pytest.approx(2.0) and w[1] == pytest.approx(2 / 3)
    assert 25 * w[0] == pytest.approx(75 * w[1])


def test_config_rejects_typos_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="epoch"):
        TrainConfig(epoch=3)
    with pytest.raises(ValidationError, match="backbone"):
        TrainConfig(backbone="resnet50")
    assert TrainConfig(weights="none").weights is None
