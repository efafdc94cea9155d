import io

import numpy as np
import pytest
from PIL import Image

from synthetic import encode, synthetic_pixels
from xray.reporting.error_analysis import (
    confident_errors,
    error_grid,
    short_name,
    subtype_of,
    subtype_results,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("path", "subtype"),
    [
        ("person1000_bacteria_2931.jpeg", "bacteria"),
        ("data/chest_xray/test/PNEUMONIA/person1_virus_6.jpeg", "virus"),
        ("s3://bucket/x/PERSON3_VIRUS_12.JPEG", "virus"),
        ("C:\\data\\person7_Bacteria_33.jpeg", "bacteria"),
        ("IM-0001-0001.jpeg", None),
        ("NORMAL2-IM-1427-0001.jpeg", None),
        ("virus/IM-0001-0001.jpeg", None),  # folders are not read
        ("person1_virusfree_6.jpeg", None),  # a whole word only
    ],
)
def test_subtype_is_parsed_from_the_file_name(path: str, subtype: str | None) -> None:
    assert subtype_of(path) == subtype


def test_short_name_drops_the_extension_then_the_middle() -> None:
    assert short_name("a/b/person1_virus_6.jpeg") == "person1_virus_6.jpeg"
    assert short_name("x/person1000_bacteria_2931.jpeg") == "person1000_bacteria_2931"
    assert short_name("x/person1000_bacteria_29310000.jpeg", 16) == "person1…29310000"


def test_subtype_results_on_a_hand_made_case() -> None:
    paths = [
        "person1_bacteria_1.jpeg",
        "person2_bacteria_2.jpeg",
        "person3_bacteria_3.jpeg",
        "person4_virus_4.jpeg",
        "person5_virus_5.jpeg",
        "elsewhere_7.jpeg",  # PNEUMONIA without a subtype: in no entry
        "IM-0001-0001.jpeg",
        "IM-0002-0001.jpeg",
    ]
    y = np.array([1, 1, 1, 1, 1, 1, 0, 0])
    p = np.array([0.9, 0.6, 0.3, 0.5, 0.2, 0.1, 0.7, 0.1])
    results = subtype_results(paths, y, p, threshold=0.5)
    assert list(results) == ["bacteria", "virus", "NORMAL"]
    assert results["bacteria"] == {
        "n": 3,
        "detected": 2,
        "sensitivity": pytest.approx(2 / 3),
        "mean_probability": pytest.approx(0.6),
    }
    assert results["virus"] == {
        "n": 2,
        "detected": 1,  # P = 0.5 reaches the threshold
        "sensitivity": 0.5,
        "mean_probability": pytest.approx(0.35),
    }
    assert results["NORMAL"] == {
        "n": 2,
        "specificity": 0.5,
        "mean_probability": pytest.approx(0.4),
    }


def test_subtype_results_without_subtypes() -> None:
    only_normal = subtype_results(["a.png", "b.png", "c.png"], [0, 1, 0], [0.2, 0.9, 0.8], 0.5)
    assert only_normal == {"NORMAL": {"n": 2, "specificity": 0.5, "mean_probability": 0.5}}
    assert subtype_results(["a.png"], [1], [0.9], 0.5) == {}
    with pytest.raises(ValueError, match="one label and probability per image"):
        subtype_results(["a.png"], [1, 0], [0.9, 0.1], 0.5)


def test_confident_errors_are_ordered_and_capped() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0])
    p = np.array([0.6, 0.95, 0.1, 0.8, 0.05, 0.4, 0.9, 0.3, 0.95])
    errors = confident_errors(y, p, threshold=0.5)
    assert errors == {"false_positives": [1, 8, 3, 0], "false_negatives": [4, 7, 5]}
    assert confident_errors(y, p, 0.5, k=2) == {
        "false_positives": [1, 8],
        "false_negatives": [4, 7],
    }
    everything_positive = confident_errors(y, p, 0.0)
    assert everything_positive == {"false_positives": [1, 8, 3, 0, 2], "false_negatives": []}
    with pytest.raises(ValueError, match="k must be"):
        confident_errors(y, p, 0.5, k=-1)


def _images(labels: list[int]) -> list[bytes]:
    rng = np.random.default_rng(0)
    return [encode(synthetic_pixels(label, 96, rng)) for label in labels]


def test_error_grid_is_a_small_png_with_or_without_errors() -> None:
    labels = [0] * 8 + [1] * 8
    images = _images(labels)
    paths = [f"IM-{i:04d}-0001.jpeg" for i in range(8)]
    paths += [f"person{i}_bacteria_{i}.jpeg" for i in range(8)]
    y = np.array(labels)
    wrong = np.where(y == 1, 0.1, 0.9)  # every image misclassified
    png = error_grid(images, paths, y, wrong, threshold=0.5, k=6)
    assert png.startswith(PNG_MAGIC) and len(png) < 1_000_000
    width, height = Image.open(io.BytesIO(png)).size
    assert width > height > 100
    right = np.where(y == 1, 0.9, 0.1)
    assert error_grid(images, paths, y, right, threshold=0.5).startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="one image per label"):
        error_grid(images[:3], paths, y, right, threshold=0.5)
