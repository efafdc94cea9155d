from collections.abc import Callable

import pandas as pd
import pytest
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from synthetic import make_kaggle_tree
from xray.integrations.validation import (
    DataValidationError,
    DriftGateConfig,
    QualityGateConfig,
    drift_report,
    gate,
    quality_report,
)
from xray.io.image_stats import statistics_table
from xray.io.loading import load_images
from xray.logic.dataset import ImageDataset, SkippedFile


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ImageDataset]:
    root = make_kaggle_tree(
        tmp_path_factory.mktemp("v") / "chest_xray",
        per_class={"train": 60, "val": 20, "test": 30},
        size=96,
    )
    ds = load_images(str(root))
    return {
        o: ds.subset(i for i, x in enumerate(ds.origins) if x == o)
        for o in ("train", "val", "test")
    }


def _table(splits: dict[str, ImageDataset]) -> pd.DataFrame:
    return statistics_table(splits)


def _modify_test(splits: dict, change: Callable[[Image.Image], Image.Image]) -> dict:
    import io

    test = splits["test"].subset(range(len(splits["test"])))
    for i in range(0, len(test), 2):  # every other test image
        image = Image.open(io.BytesIO(test.images[i])).convert("L")
        buffer = io.BytesIO()
        change(image).save(buffer, format="JPEG", quality=95)
        test.images[i] = buffer.getvalue()
    return {**splits, "test": test}


def test_clean_data_passes_both_gates(splits: dict) -> None:
    table = _table(splits)
    quality, html = quality_report(table, [], QualityGateConfig())
    assert quality.passed, quality.message()
    assert "Data quality gate: PASSED" in html and len(html) < 6_000_000
    drift, drift_html = drift_report(table, DriftGateConfig())
    assert drift.passed, drift.message()
    assert set(drift.details["splits"]) == {"val", "test"}
    per_column = drift.details["splits"]["test"]["columns"]["mean"]
    assert {"score", "method", "threshold", "drifted"} <= set(per_column)
    assert drift_html.count("Data drift gate: PASSED") == 1 and len(drift_html) < 6_000_000
    assert gate([quality.to_dict(), drift.to_dict()]) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda im: ImageEnhance.Brightness(im).enhance(0.35), {"mean", "p50"}),
        (lambda im: ImageEnhance.Brightness(im).enhance(1.8), {"mean", "p50"}),
        (ImageOps.invert, {"mean", "p50"}),
        (lambda im: im.filter(ImageFilter.GaussianBlur(4)), {"sharpness"}),
    ],
    ids=["darkened", "brightened", "inverted", "blurred"],
)
def test_modified_test_images_drift_on_the_right_statistics(
    splits: dict, change: Callable, expected: set[str]
) -> None:
    drift, _ = drift_report(_table(_modify_test(splits, change)), DriftGateConfig())
    test = drift.details["splits"]["test"]
    assert expected <= set(test["drifted_columns"]), test["drifted_columns"]
    assert not drift.passed
    with pytest.raises(DataValidationError) as error:
        gate([drift.to_dict()])
    message = str(error.value)
    assert "drift train -> test" in message
    assert all(column in message for column in expected)
    assert "drift train -> val" not in message  # val was left alone


def test_duplicate_across_splits_and_patient_leak_fail_naming_them(splits: dict) -> None:
    table = _table(splits)
    i_test = table.index[table["split"] == "test"][0]
    i_train = table.index[table["split"] == "train"][0]
    table.loc[i_test, "sha256"] = table.loc[i_train, "sha256"]
    table.loc[i_test, "patient"] = table.loc[i_train, "patient"]
    quality, html = quality_report(table, [], QualityGateConfig())
    failed = {c.name: c for c in quality.failed}
    assert set(failed) == {"identical images across splits", "patient leakage across splits"}
    dup = failed["identical images across splits"].offenders[0]
    assert table.loc[i_train, "path"] in dup and table.loc[i_test, "path"] in dup
    assert failed["patient leakage across splits"].offenders == [
        f"{table.loc[i_train, 'patient']} in test+train"
    ]
    with pytest.raises(
        DataValidationError, match="identical images across splits.*\n.*patient leakage"
    ):
        gate([quality.to_dict()])
    assert "FAILED" in html


def test_corrupt_file_is_reported_not_fatal(splits: dict) -> None:
    skipped = [SkippedFile("train/NORMAL/bad.jpeg", "corrupt or truncated image: broken data")]
    quality, html = quality_report(_table(splits), skipped, QualityGateConfig())
    check = next(c for c in quality.checks if c.name == "unreadable or corrupt files")
    assert check.passed and check.offenders == [
        "train/NORMAL/bad.jpeg: corrupt or truncated image: broken data"
    ]
    assert "bad.jpeg" in html
    strict = QualityGateConfig(max_unreadable_fraction=0.0)
    assert not quality_report(_table(splits), skipped, strict)[0].passed


def test_balance_size_outliers_and_near_constant(splits: dict) -> None:
    table = _table(splits)
    val = table.index[table["split"] == "val"]
    table.loc[val[: len(val) // 2 + 8], "label"] = "PNEUMONIA"  # val nearly one class
    first = table.index[0]
    table.loc[first, ["width", "height", "aspect_ratio"]] = [3000, 600, 5.0]
    table.loc[table.index[1], "std"] = 0.5
    quality, _ = quality_report(table, [], QualityGateConfig(max_size_outlier_fraction=0.0))
    failed = {c.name: c for c in quality.failed}
    assert set(failed) == {"class balance per split", "image size outliers", "near-constant images"}
    assert failed["class balance per split"].offenders[0].startswith("val: minority class")
    assert "3000x600)" in failed["image size outliers"].offenders[0]
    assert "std 0.5)" in failed["near-constant images"].offenders[0]


def test_warn_mode_only_warns(splits: dict) -> None:
    changed = _table(_modify_test(splits, lambda im: ImageEnhance.Brightness(im).enhance(0.35)))
    drift, _ = drift_report(changed, DriftGateConfig(mode="warn"))
    assert not drift.passed
    warnings = gate([drift.to_dict()])
    assert warnings and warnings[0].startswith("[drift] drift train -> test")


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="max_drift_shar"):
        DriftGateConfig(max_drift_shar=0.3)
    with pytest.raises(ValueError, match="unknown statistics"):
        drift_report(
            pd.DataFrame({"split": ["train"], "mean": [1.0]}), DriftGateConfig(columns=["nope"])
        )


def test_new_data_against_a_stored_reference(splits: dict) -> None:
    """Later pipelines compare new images with the model's training statistics."""
    table = _table(splits)
    reference = table[table["split"] == "train"]
    new = _table({"new": _modify_test(splits, ImageOps.invert)["test"]})
    drift, _ = drift_report(new, DriftGateConfig(), reference=reference, current=("new",))
    assert drift.details["reference"] == "reference"
    assert "mean" in drift.details["splits"]["new"]["drifted_columns"]
    assert [c.name for c in drift.failed] == ["drift reference -> new"]
