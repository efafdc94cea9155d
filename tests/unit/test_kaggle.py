from pathlib import Path

import pytest

from xray.io.kaggle import download_kaggle_dataset, kaggle_credentials_present
from xray.io.loading import DataError


def test_credentials_detection(tmp_path: Path) -> None:
    assert not kaggle_credentials_present({"HOME": str(tmp_path)})
    assert kaggle_credentials_present({"KAGGLE_USERNAME": "u", "KAGGLE_KEY": "k"})
    (tmp_path / ".kaggle").mkdir()
    (tmp_path / ".kaggle" / "kaggle.json").write_text("{}")
    assert kaggle_credentials_present({"HOME": str(tmp_path)})


def test_without_credentials_fails_at_once_with_manual_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DataError, match="paultimothymooney/chest-xray-pneumonia by hand"):
        download_kaggle_dataset(tmp_path / "dl")
    assert not (tmp_path / "dl").exists()


def test_existing_download_is_reused(tmp_path: Path) -> None:
    for split in ("train", "test"):
        (tmp_path / "chest_xray" / split).mkdir(parents=True)
    assert download_kaggle_dataset(tmp_path) == tmp_path / "chest_xray"
