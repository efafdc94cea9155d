"""DICOM through training and batch inference, and no protected health information in
anything the runs leave behind (ZenML store, artifacts, logs, MLflow, BentoML)."""

import gzip
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from zenml.enums import ExecutionStatus

from stacks.registry import load_stack_spec, register_stack
from synthetic import (
    BIRTH_DATE,
    PATIENT_NAME,
    encode,
    encode_dicom,
    set_settings,
    small_run_config,
)
from synthetic import synthetic_pixels as pixels_of

pytestmark = pytest.mark.integration
MODEL = "dicom_check_classifier"
PHI = [PATIENT_NAME, "Wilhelmina", "Testpatient", BIRTH_DATE, "MRN-77", "St Example Hospital"]
VARIANTS = [
    {},
    {"photometric": "MONOCHROME1"},
    {"bits": 12, "window": (2047.5, 4096)},
    {"compression": "rle"},
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A training folder of DICOMs in every variant (two per patient) plus JPEGs, and a
    folder of new DICOMs to score."""
    root = tmp_path_factory.mktemp("dicom")
    rng = np.random.default_rng(0)
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        for folder, count in ((root / "train" / name, 28), (root / "new" / name, 6)):
            folder.mkdir(parents=True)
            for i in range(count):
                image = pixels_of(label, 56, rng)
                if i % 4 == 3:
                    (folder / f"IM-{label}{i:03d}-0001.jpeg").write_bytes(encode(image))
                    continue
                dicom = encode_dicom(
                    image, patient_id=f"MRN-77{label}{i // 2:03d}", **VARIANTS[i % 4]
                )
                (folder / f"image{i:03d}.dcm").write_bytes(dicom)
    return root / "train", root / "new"


@pytest.fixture(scope="module")
def runs(folders: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    from pipelines.inference import inference_pipeline
    from pipelines.training import training_pipeline

    workdir = tmp_path_factory.mktemp("configs")
    train_config = small_run_config(workdir / "training.yaml", 48, 3)
    config = yaml.safe_load(train_config.read_text())
    config["model"] = {"name": MODEL}
    train_config.write_text(yaml.safe_dump(config))
    register_stack(load_stack_spec("local"))
    training = training_pipeline.with_options(config_path=str(train_config), enable_cache=False)(
        data_dir=str(folders[0])
    )
    root = Path(__file__).resolve().parents[2]
    inference = yaml.safe_load((root / "configs" / "inference.yaml").read_text())
    inference["model"] = {"name": MODEL, "version": training.model_version.number}
    set_settings(inference, "check_inference_drift", min_images=5)
    set_settings(inference, "batch_predict", guard_mode="flag")
    (workdir / "inference.yaml").write_text(yaml.safe_dump(inference))
    scoring = inference_pipeline.with_options(
        config_path=str(workdir / "inference.yaml"), enable_cache=False
    )(data_dir=str(folders[1]))
    return [training, scoring]


def test_dicoms_train_and_score_with_hashed_patients(runs: list[Any]) -> None:
    training, scoring = runs
    assert training.status == ExecutionStatus.COMPLETED
    assert scoring.status == ExecutionStatus.COMPLETED
    load = training.steps["load_dataset"].run_metadata
    assert load["skipped_count"] == 0
    dataset = training.steps["load_dataset"].outputs["xray_dataset"][0].load()
    dicom_patients = {
        p for p, f in zip(dataset.patients, dataset.paths, strict=True) if f.endswith(".dcm")
    }
    assert len(dicom_patients) == 2 * 14 and all(p.startswith("dcm-") for p in dicom_patients)
    predictions = scoring.steps["batch_predict"].outputs["predictions"][0].load()
    assert len(predictions) == 12 and predictions["probability"].between(0, 1).all()
    assert predictions["file"].str.endswith(".dcm").sum() == 10


def _texts(path: Path) -> list[bytes]:
    """The bytes of a file and of whatever it packs (zip members, gzip, parquet tables)."""
    data = path.read_bytes()
    texts = [data]
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            texts += [archive.read(name) for name in archive.namelist()]
    elif data[:2] == b"\x1f\x8b":
        texts.append(gzip.decompress(data))
    elif data[:4] == b"PAR1":
        texts.append(pd.read_parquet(io.BytesIO(data)).to_csv().encode())
    return texts


def test_no_patient_identifier_or_tag_value_in_any_output(
    runs: list[Any], isolated_dir: Path
) -> None:
    """Every file of the isolated ZenML store (artifacts, step logs, the database),
    MLflow and BentoML homes is searched for the patient's name, birth date, ids and
    institution."""
    found = []
    files = [p for p in isolated_dir.rglob("*") if p.is_file()]
    assert len(files) > 50  # the store really is there
    for path in files:
        for text in _texts(path):
            found += [(str(path), value) for value in PHI if value.encode() in text]
    assert not found, found[:10]
