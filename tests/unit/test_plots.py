"""The data overview figure."""

import io
from pathlib import Path

from PIL import Image

from xray.io.loading import load_images
from xray.logic.split import split_by_patient
from xray.reporting.plots import data_overview_figure


def test_data_overview_is_a_small_png(kaggle_tree: Path) -> None:
    splits, _ = split_by_patient(load_images(str(kaggle_tree), min_images=4), 0.25, 0.2, 0)
    png = data_overview_figure(splits, per_class=3)
    assert png.startswith(b"\x89PNG") and len(png) < 500_000
    with Image.open(io.BytesIO(png)) as image:
        width, height = image.size
    assert width > height > 100  # bars on the left, 2 rows of 3 thumbnails on the right


def test_data_overview_copes_with_fewer_images_than_asked(kaggle_tree: Path) -> None:
    splits, _ = split_by_patient(load_images(str(kaggle_tree), min_images=4), 0.25, 0.2, 0)
    assert data_overview_figure(splits, per_class=50).startswith(b"\x89PNG")
