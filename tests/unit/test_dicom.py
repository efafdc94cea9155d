"""DICOM, 16-bit, EXIF and CMYK through the one shared decode (xray.io.images.decode_image)."""

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthetic import BIRTH_DATE, PATIENT_NAME, encode, encode_dicom, synthetic_pixels
from xray.io.images import ImageError, decode_image, encode_png, patient_key
from xray.io.loading import load_images
from xray.ml.preprocessing import prepare_image

PIXELS = synthetic_pixels(1, 64, np.random.default_rng(3))
FULL = np.linspace(0, 255, 64 * 64).reshape(64, 64).astype(np.uint8)  # spans 0..255
PHI = (PATIENT_NAME, PATIENT_NAME.split("^")[0], BIRTH_DATE, "MRN-0042", "St Example")


def gray(data: bytes) -> np.ndarray:
    return decode_image(data).pixels[:, :, 0].astype(int)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"photometric": "MONOCHROME1"},
        {"bits": 12, "window": (2047.5, 4096)},
        {"bits": 16, "photometric": "MONOCHROME1", "window": (32767.5, 65536)},
        {"bits": 12, "window": (2047.5, 4096), "rescale": (2.0, -1024.0)},
        {"compression": "rle"},
        {"compression": "jpeg2000", "bits": 12, "window": (2047.5, 4096)},
    ],
    ids=["8bit", "mono1", "12bit-window", "16bit-mono1", "rescale", "rle", "j2k-12bit"],
)
def test_dicom_variants_decode_to_the_original_pixels(options: dict) -> None:
    out = gray(encode_dicom(PIXELS, **options))
    assert np.abs(out - PIXELS).max() <= 1


def test_jpeg_baseline_dicom_is_read_lossy_but_close() -> None:
    out = gray(encode_dicom(PIXELS, compression="jpeg"))
    assert np.abs(out - PIXELS).mean() < 3


def test_12_bit_without_a_window_is_windowed_not_darkened() -> None:
    # Scaled by the 16-bit container's range this would be nearly black (max 4095/65535).
    out = gray(encode_dicom(FULL, bits=12))
    assert out.min() == 0 and out.max() == 255 and np.abs(out - FULL).max() <= 1


def test_16_bit_png_is_windowed() -> None:
    wide = FULL.astype(np.uint16) * 16  # 12-bit data in a 16-bit PNG
    buffer = io.BytesIO()
    Image.fromarray(wide).save(buffer, format="PNG")
    decoded = decode_image(buffer.getvalue())
    assert decoded.info.bit_depth == 16
    assert np.abs(decoded.pixels[:, :, 0].astype(int) - FULL).max() <= 1


def test_exif_orientation_is_applied() -> None:
    tall = np.zeros((80, 40), np.uint8)
    tall[:10] = 255  # a bright band at the top
    image = Image.fromarray(tall)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: a viewer turns it 90 degrees clockwise
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif, quality=95)
    decoded = decode_image(buffer.getvalue())
    assert decoded.pixels.shape[:2] == (40, 80)  # shown landscape
    assert decoded.pixels[:, -10:].mean() > 200  # the band is now on the right


def test_cmyk_jpeg_becomes_rgb() -> None:
    rgb = np.stack([PIXELS] * 3, axis=2)
    buffer = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buffer, format="JPEG", quality=95)
    decoded = decode_image(buffer.getvalue())
    assert decoded.info.mode == "CMYK" and decoded.pixels.shape == (64, 64, 3)
    assert np.abs(decoded.pixels[:, :, 0].astype(int) - PIXELS).mean() < 6


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (encode_dicom(PIXELS, frames=3), r"multi-frame DICOM \(3 frames\)"),
        (encode_dicom(PIXELS)[:-1000], r"cannot decode the DICOM pixel data"),
        (b"\0" * 128 + b"DICM\x02\x00\x10\x00UL\x04\x00", "not a readable|without pixel data"),
    ],
    ids=["multi-frame", "truncated", "corrupt-header"],
)
def test_unusable_dicom_is_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageError, match=reason):
        decode_image(data)


def test_dicom_without_pixel_data_is_refused() -> None:
    from pydicom.data import get_testdata_file

    with pytest.raises(ImageError, match="without pixel data"):
        decode_image(Path(get_testdata_file("rtplan.dcm")).read_bytes())


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless, process 14
        "JPEG2000.dcm",
    ],
)
def test_files_pydicom_ships_are_read(name: str) -> None:
    from pydicom.data import get_testdata_file

    decoded = decode_image(Path(get_testdata_file(name)).read_bytes())
    assert decoded.pixels.dtype == np.uint8 and decoded.pixels.shape[2] == 3
    assert decoded.pixels.std() > 5  # an image, not a blank


def test_patient_key_is_salted_and_never_the_id(monkeypatch: pytest.MonkeyPatch) -> None:
    info = decode_image(encode_dicom(PIXELS, patient_id="MRN-0042")).info
    assert info.patient == patient_key("MRN-0042") and "MRN" not in info.patient
    assert decode_image(encode_dicom(PIXELS, patient_id="MRN-0043")).info.patient != info.patient
    monkeypatch.setenv("XRAY_PATIENT_ID_SALT", "another site secret")
    assert patient_key("MRN-0042") != info.patient


def test_png_and_dicom_of_one_image_get_the_same_probability() -> None:
    from xray.ml.model import build_model

    model = build_model(backbone="compact_cnn", image_size=48, seed=0).model
    variants = {
        "png": encode(PIXELS, "PNG"),
        "dicom": encode_dicom(PIXELS),
        "dicom-mono1": encode_dicom(PIXELS, photometric="MONOCHROME1"),
        "dicom-12bit": encode_dicom(PIXELS, bits=12, window=(2047.5, 4096)),
        "dicom-rle": encode_dicom(PIXELS, compression="rle"),
        "dicom-j2k": encode_dicom(PIXELS, compression="jpeg2000", bits=12, window=(2047.5, 4096)),
    }
    batch = np.stack([prepare_image(data, 48) for data in variants.values()])
    p = np.asarray(model(batch, training=False)).reshape(-1)
    assert np.abs(p - p[0]).max() <= 0.01, dict(zip(variants, p.tolist(), strict=True))


def test_training_folder_of_dicoms_keeps_no_tag_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(0)
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        folder = tmp_path / "d" / name
        folder.mkdir(parents=True)
        for i in range(4):
            pixels = synthetic_pixels(label, 48, rng)
            patient = f"MRN-{label}{i // 2}"  # two images per patient
            (folder / f"scan{i}.dcm").write_bytes(encode_dicom(pixels, patient_id=patient))
        (folder / "frames.dcm").write_bytes(encode_dicom(PIXELS, frames=2))
    with caplog.at_level(logging.DEBUG):
        dataset = load_images(str(tmp_path / "d"), min_images=4)
    assert len(dataset) == 8 and len(set(dataset.patients)) == 4
    assert all(p.startswith("dcm-") for p in dataset.patients)
    assert all(image[:8] == b"\x89PNG\r\n\x1a\n" for image in dataset.images)  # no header
    assert dataset.skipped[0].reason.startswith("multi-frame DICOM")
    stored = b"".join(dataset.images) + repr(dataset.__dict__).encode() + caplog.text.encode()
    for value in PHI:
        assert value.encode() not in stored, value


def test_encode_png_keeps_the_pixels() -> None:
    rgb = np.stack([PIXELS] * 3, axis=2)
    assert np.array_equal(decode_image(encode_png(rgb)).pixels, rgb)
