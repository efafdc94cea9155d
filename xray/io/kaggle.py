"""``--data kaggle``: download the Kermany data set with the Kaggle API, if possible.

Nothing is downloaded without credentials: the caller fails at once with the steps to
download it by hand.
"""

import os
from pathlib import Path

from xray.io.layout import DataError

KAGGLE_DATASET = "paultimothymooney/chest-xray-pneumonia"
MANUAL_STEPS = (
    f"Download https://www.kaggle.com/datasets/{KAGGLE_DATASET} by hand (the 'Download' "
    "button; about 1.2 GB), unzip it, and pass the folder that holds train/ val/ test/ "
    "with --data, e.g. `python run.py --stack local --data ~/Downloads/chest_xray`. "
    "To let run.py download it, create a Kaggle API token (kaggle.com > Settings > API) "
    "and save it as ~/.kaggle/kaggle.json, or export KAGGLE_USERNAME and KAGGLE_KEY."
)


def kaggle_credentials_present(env: dict[str, str] | None = None) -> bool:
    """Whether the Kaggle API could authenticate (environment or token files)."""
    env = dict(os.environ) if env is None else env
    if env.get("KAGGLE_API_TOKEN") or (env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY")):
        return True
    config_dir = Path(env.get("KAGGLE_CONFIG_DIR") or Path(env.get("HOME", "~")) / ".kaggle")
    config_dir = config_dir.expanduser()
    return (config_dir / "kaggle.json").is_file() or (config_dir / "access_token").is_file()


def download_kaggle_dataset(destination: Path) -> Path:
    """Downloads and unzips the data set into ``destination`` (skipped if already there).

    Args:
        destination: Folder to download into.

    Returns:
        The ``chest_xray`` folder in the Kaggle layout.

    Raises:
        DataError: Without credentials (at once) or when the download fails; the message
            says how to get the data by hand.
    """
    target = destination / "chest_xray"
    if (target / "train").is_dir() and (target / "test").is_dir():
        return target
    if not kaggle_credentials_present():
        raise DataError("No Kaggle API credentials found. " + MANUAL_STEPS)
    from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    try:
        api.authenticate()
        destination.mkdir(parents=True, exist_ok=True)
        api.dataset_download_files(KAGGLE_DATASET, path=str(destination), unzip=True, quiet=False)
    except (SystemExit, Exception) as exc:  # noqa: BLE001 - the Kaggle client exits on auth errors
        raise DataError(f"Kaggle download failed ({exc!r}). " + MANUAL_STEPS) from None
    if not (target / "train").is_dir():
        raise DataError(
            f"The Kaggle download has no chest_xray/train in {destination}. " + MANUAL_STEPS
        )
    return target
