"""A BentoML model entry travels between machines as an archive: on a cloud stack,
package_model and build_bento run in separate containers whose model stores start empty
(the cloud rehearsal found build_bento failing there with "could not be found locally")."""

from pathlib import Path

import bentoml
import pytest

from xray.integrations.packaging import ensure_model, export_model, save_to_model_store
from xray.ml.model import KerasModelFile, build_model


@pytest.fixture(scope="module")
def packaged() -> tuple[str, bytes]:
    model = build_model(backbone="compact_cnn", image_size=32, weights=None, seed=3).model
    tag = save_to_model_store(
        KerasModelFile.from_model(model),
        metadata={"threshold": 0.4, "image_size": 32},
        labels={"zenml_model_version": "9"},
        guard={"kind": "test"},
    )
    return tag, export_model(tag)


def test_a_fresh_store_gets_the_same_model_back(packaged: tuple[str, bytes]) -> None:
    tag, archive = packaged
    before = bentoml.models.get(tag)
    keras_bytes = Path(before.path_of("model.keras")).read_bytes()
    bentoml.models.delete(tag)  # what the next step's container starts with
    assert ensure_model(tag, archive) is True
    restored = bentoml.models.get(tag)
    assert Path(restored.path_of("model.keras")).read_bytes() == keras_bytes
    assert Path(restored.path_of("guard.json")).read_text() == '{"kind": "test"}'
    assert restored.info.metadata["threshold"] == 0.4
    assert restored.info.labels["zenml_model_version"] == "9"
    assert ensure_model(tag, archive) is False  # present: nothing imported


def test_an_archive_of_another_model_is_refused(packaged: tuple[str, bytes]) -> None:
    tag, archive = packaged
    other = "pneumonia_classifier:doesnotexist0000"
    bentoml.models.delete(tag)
    with pytest.raises(ValueError, match=f"holds {tag}, not {other}"):
        ensure_model(other, archive)
    with pytest.raises(bentoml.exceptions.NotFound):
        bentoml.models.get(tag)  # the wrong model was not left behind
