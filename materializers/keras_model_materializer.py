"""Stores a :class:`xray.ml.model.KerasModelFile` as a native ``.keras`` file."""

import json
import os
from typing import Any, ClassVar

from zenml.enums import ArtifactType
from zenml.materializers.base_materializer import BaseMaterializer
from zenml.metadata.metadata_types import MetadataType

from xray.ml.model import KerasModelFile

MODEL_FILE = "model.keras"
INFO_FILE = "model.json"


class KerasModelMaterializer(BaseMaterializer):
    """Writes ``model.keras`` (loadable with ``keras.saving.load_model`` once the project's
    custom layers are registered, see :func:`xray.ml.model.load_model`) and its image size.

    ZenML's own TensorFlow materializer needs its ``tensorflow`` integration, which pins
    TF < 2.15 and so cannot be used with Keras 3; and this one needs no TensorFlow at all.
    """

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (KerasModelFile,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.MODEL

    def save(self, data: KerasModelFile) -> None:
        """Writes the ``.keras`` file and a small JSON with the image size."""
        with self.artifact_store.open(os.path.join(self.uri, MODEL_FILE), "wb") as f:
            f.write(data.data)
        with self.artifact_store.open(os.path.join(self.uri, INFO_FILE), "w") as f:
            json.dump({"image_size": data.image_size}, f)

    def load(self, data_type: type[Any]) -> KerasModelFile:
        """Reads the file back (call ``.load()`` on the result for a ``keras.Model``)."""
        with self.artifact_store.open(os.path.join(self.uri, MODEL_FILE), "rb") as f:
            data = f.read()
        with self.artifact_store.open(os.path.join(self.uri, INFO_FILE), "r") as f:
            image_size = int(json.load(f)["image_size"])
        return KerasModelFile(data=data, image_size=image_size)

    def extract_metadata(self, data: KerasModelFile) -> dict[str, MetadataType]:
        """File size and input size."""
        return {"file_megabytes": round(len(data.data) / 1e6, 2), "image_size": data.image_size}
