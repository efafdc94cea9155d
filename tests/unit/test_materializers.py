import os
import uuid
from pathlib import Path

import numpy as np
import pytest
from zenml.client import Client
from zenml.enums import VisualizationType

from materializers import ImageDatasetMaterializer, KerasModelMaterializer, PngFigureMaterializer
from xray.io.loading import load_images
from xray.logic.dataset import ImageDataset
from xray.ml.model import KerasModelFile, build_model
from xray.reporting.plots import PngFigure, history_figure


@pytest.fixture
def artifact_uri() -> str:
    store = Client().active_stack.artifact_store
    uri = os.path.join(store.path, "test-materializers", uuid.uuid4().hex)
    os.makedirs(uri)
    return uri


def test_image_dataset_roundtrip_with_metadata(kaggle_tree: Path, artifact_uri: str) -> None:
    ds = load_images(str(kaggle_tree), min_images=10)
    m = ImageDatasetMaterializer(artifact_uri)
    m.save(ds)
    back = m.load(ImageDataset)
    assert back.fingerprint() == ds.fingerprint() and back.paths == ds.paths
    meta = m.extract_metadata(ds)
    assert meta["images"] == 28 and meta["class_counts"] == {"NORMAL": 14, "PNEUMONIA": 14}
    assert meta["fingerprint"] == ds.fingerprint() == m.compute_content_hash(ds)
    assert sorted(os.listdir(artifact_uri)) == ["images.bin", "index.json"]


def test_keras_model_roundtrip(artifact_uri: str) -> None:
    model = build_model(backbone="compact_cnn", image_size=32, weights=None).model
    m = KerasModelMaterializer(artifact_uri)
    m.save(KerasModelFile.from_model(model))
    assert sorted(os.listdir(artifact_uri)) == ["model.json", "model.keras"]
    back = m.load(KerasModelFile)
    assert back.image_size == 32
    x = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    restored = back.load().predict(x, verbose=0)
    np.testing.assert_allclose(restored, model.predict(x, verbose=0), atol=1e-6)
    assert m.extract_metadata(back)["file_megabytes"] > 0


def test_png_figure_is_an_image_visualization(artifact_uri: str) -> None:
    fig = PngFigure(history_figure({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}), "curves")
    m = PngFigureMaterializer(artifact_uri)
    m.save(fig)
    assert m.load(PngFigure) == fig
    assert fig.png.startswith(b"\x89PNG")
    assert list(m.save_visualizations(fig).values()) == [VisualizationType.IMAGE]
