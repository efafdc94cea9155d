"""Small synthetic chest-X-ray-like images, named like the Kaggle files.

NORMAL images are darker with a smooth gradient; PNEUMONIA images are brighter with
blotches, so a model can learn the difference within a few epochs on a CPU.
"""

import io
from pathlib import Path

import numpy as np
from PIL import Image


def synthetic_pixels(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A grayscale ``size`` x ``size`` uint8 image for class ``label``."""
    y, x = np.mgrid[0:size, 0:size] / size
    base = 60 + 50 * np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) * 4)
    if label == 1:
        base = base + 70
        for _ in range(3):
            cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.15)
            base = base + 60 * (((x - cx) ** 2 + (y - cy) ** 2) < r**2)
    noisy = base + rng.normal(0, 12, size=(size, size))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def encode(pixels: np.ndarray, fmt: str = "JPEG", mode: str = "L") -> bytes:
    """Encodes a uint8 array as JPEG/PNG bytes in the given PIL mode."""
    image = (
        Image.fromarray(pixels).convert(mode)
        if mode != "I;16"
        else Image.fromarray(pixels.astype(np.uint16) * 257)
    )
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _file_name(label: int, index: int) -> str:
    if label == 1:
        kind = "bacteria" if index % 2 else "virus"
        return f"person{1000 + index // 2}_{kind}_{2000 + index}.jpeg"
    return f"IM-{100 + index // 2:04d}-{index % 2 + 1:04d}.jpeg"


def write_class_folder(
    folder: Path, label: int, count: int, size: int, seed: int, offset: int = 0
) -> list[Path]:
    """Writes ``count`` images of one class (two per patient) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(offset, offset + count):
        path = folder / _file_name(label, i)
        path.write_bytes(encode(synthetic_pixels(label, size, rng)))
        paths.append(path)
    return paths


def make_kaggle_tree(root: Path, per_class: dict[str, int], size: int = 64, seed: int = 0) -> Path:
    """Writes ``root/{train,val,test}/{NORMAL,PNEUMONIA}`` with distinct patients per split."""
    offset = 0
    for s, (split, count) in enumerate(per_class.items()):
        for label, name in enumerate(("NORMAL", "PNEUMONIA")):
            write_class_folder(
                root / split / name, label, count, size, seed + 10 * s + label, offset
            )
        offset += count + (count % 2)
    return root


def make_single_folder(root: Path, per_class: int, size: int = 64, seed: int = 0) -> Path:
    """Writes ``root/{NORMAL,PNEUMONIA}`` with ``per_class`` images each."""
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        write_class_folder(root / name, label, per_class, size, seed + label)
    return root


def small_run_config(path: Path, image_size: int, epochs: int, quality_mode: str = "fail") -> Path:
    """Writes the shipped run config with a tiny, fast model to ``path``."""
    import yaml

    project_root = Path(__file__).resolve().parent.parent
    config = yaml.safe_load((project_root / "configs" / "training.yaml").read_text())
    set_settings(
        config,
        "train_model",
        image_size=image_size,
        epochs=epochs,
        batch_size=8,
        early_stopping_patience=epochs,
    )
    set_settings(config, "load_dataset", min_images=10)
    set_settings(config, "check_data_quality", mode=quality_mode)
    path.write_text(yaml.safe_dump(config))
    return path


def set_settings(run_config: dict, step: str, **values: object) -> dict:
    """Sets ``steps.<step>.parameters.config.<name>`` in a run config; returns that dict."""
    if not run_config.get("steps"):
        run_config["steps"] = {}
    body = (
        run_config["steps"]
        .setdefault(step, {})
        .setdefault("parameters", {})
        .setdefault("config", {})
    )
    body.update(values)
    return body


PATIENT_NAME = "Testpatient^Wilhelmina"
"""The patient name every synthetic DICOM carries: no output may ever contain it."""
BIRTH_DATE = "19230417"
"""The birth date every synthetic DICOM carries: no output may ever contain it."""


def encode_dicom(
    pixels: np.ndarray,
    bits: int = 8,
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | None = None,
    patient_id: str = "MRN-0042",
    compression: str | None = None,
    frames: int = 1,
    rescale: tuple[float, float] | None = None,
) -> bytes:
    """A DX DICOM file of a grayscale uint8 image, made with pydicom.

    Args:
        pixels: ``[H, W]`` uint8; stored as ``pixels * (2**bits - 1) // 255`` (inverted
            for MONOCHROME1, so a correct reader gets ``pixels`` back).
        bits: Bits stored (8, 12 or 16).
        photometric: ``MONOCHROME1`` or ``MONOCHROME2``.
        window: (centre, width) to write, or None for none.
        patient_id: PatientID (the patient for the split).
        compression: None (explicit VR little endian), ``"rle"``, ``"jpeg"`` (baseline,
            8 bit only), ``"jpeg2000"`` (lossless).
        frames: Number of frames (more than 1 makes a multi-frame file).
        rescale: (slope, intercept) to write; stored values are then
            ``(value - intercept) / slope``.
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import (
        DigitalXRayImageStorageForPresentation,
        ExplicitVRLittleEndian,
        JPEG2000Lossless,
        JPEGBaseline8Bit,
        RLELossless,
        generate_uid,
    )

    peak = 2**bits - 1
    values = np.asarray(pixels, dtype=np.int64) * peak // 255
    if photometric == "MONOCHROME1":
        values = peak - values
    if rescale is not None:
        slope, intercept = rescale
        values = np.round((values - intercept) / slope).astype(np.int64)
    dtype = np.uint8 if bits <= 8 else np.uint16
    stored = values.astype(dtype)
    if frames > 1:
        stored = np.stack([stored] * frames)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientName = PATIENT_NAME
    ds.PatientBirthDate = BIRTH_DATE
    ds.PatientID = patient_id
    ds.InstitutionName = "St Example Hospital"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    ds.PixelData = stored.tobytes()
    if compression == "rle":
        ds.compress(RLELossless)
    elif compression == "jpeg2000":
        ds.compress(JPEG2000Lossless)
    elif compression == "jpeg":
        from pydicom.encaps import encapsulate

        buffer = io.BytesIO()
        Image.fromarray(stored).save(buffer, format="JPEG", quality=95)
        ds.PixelData = encapsulate([buffer.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.LossyImageCompression = "01"
    elif compression is not None:
        raise ValueError(f"unknown compression {compression}")
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()
