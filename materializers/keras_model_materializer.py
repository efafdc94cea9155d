"""Stores Keras 3 models as native ``.keras`` files in any artifact store."""

import os
import tempfile
from typing import Any, ClassVar

import keras
from zenml.enums import ArtifactType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer
from zenml.metadata.metadata_types import MetadataType

from xray.model import load_model

MODEL_FILE = "model.keras"


class KerasModelMaterializer(BaseMaterializer):
    """Saves with ``model.save(... .keras)`` and loads with the project's custom layers.

    ZenML's own TensorFlow materializer needs its ``tensorflow`` integration, which pins
    TF < 2.15 and so cannot be used with Keras 3.
    """

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (keras.Model,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.MODEL

    def save(self, data: keras.Model) -> None:
        """Writes ``model.keras`` locally, then copies it into the artifact store."""
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, MODEL_FILE)
            data.save(local)
            fileio.copy(local, os.path.join(self.uri, MODEL_FILE), overwrite=True)

    def load(self, data_type: type[Any]) -> keras.Model:
        """Copies ``model.keras`` to a temporary folder and loads it (uncompiled)."""
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, MODEL_FILE)
            fileio.copy(os.path.join(self.uri, MODEL_FILE), local, overwrite=True)
            return load_model(local)

    def extract_metadata(self, data: keras.Model) -> dict[str, MetadataType]:
        """Parameter counts and the input/output shapes."""
        trainable = sum(int(w.numpy().size) for w in data.trainable_weights)
        total = sum(int(w.numpy().size) for w in data.weights)
        return {
            "parameters": total,
            "trainable_parameters": trainable,
            "input_shape": str(data.input_shape),
            "output_shape": str(data.output_shape),
        }
