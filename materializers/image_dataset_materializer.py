"""Stores an :class:`xray.logic.dataset.ImageDataset` in any artifact store (local, S3, GCS)."""

import os
from typing import Any, ClassVar

from zenml.enums import ArtifactType
from zenml.materializers.base_materializer import BaseMaterializer
from zenml.metadata.metadata_types import MetadataType

from xray.logic.dataset import ImageDataset

INDEX_FILE = "index.json"
BLOB_FILE = "images.bin"


class ImageDatasetMaterializer(BaseMaterializer):
    """Writes the encoded images back to back in one blob plus a JSON index.

    One large object instead of thousands of small ones keeps uploads to S3/GCS fast,
    and the content hash (the data set fingerprint) lets ZenML's cache key on content.
    """

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (ImageDataset,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def save(self, data: ImageDataset) -> None:
        """Writes the index and the image blob under the artifact URI."""
        with (
            self.artifact_store.open(os.path.join(self.uri, INDEX_FILE), "w") as index_file,
            self.artifact_store.open(os.path.join(self.uri, BLOB_FILE), "wb") as blob_file,
        ):
            data.write(index_file, blob_file)

    def load(self, data_type: type[Any]) -> ImageDataset:
        """Reads the data set back."""
        with (
            self.artifact_store.open(os.path.join(self.uri, INDEX_FILE), "r") as index_file,
            self.artifact_store.open(os.path.join(self.uri, BLOB_FILE), "rb") as blob_file,
        ):
            return ImageDataset.read(index_file, blob_file)

    def extract_metadata(self, data: ImageDataset) -> dict[str, MetadataType]:
        """Size, classes, patients and the content fingerprint, shown in the dashboard."""
        counts = data.class_counts()
        return {
            "fingerprint": data.fingerprint(),
            "images": len(data),
            "patients": data.patient_count(),
            "class_counts": counts,
            "encoded_megabytes": round(data.total_bytes() / 1e6, 2),
            "skipped_files": len(data.skipped),
            "source": data.source,
        }

    def compute_content_hash(self, data: ImageDataset) -> str | None:
        """The data set fingerprint, so downstream caching follows content."""
        return data.fingerprint()
