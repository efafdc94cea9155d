"""Step: read every image under a data folder into one versioned artifact."""

import logging
from pathlib import Path
from typing import Annotated

from zenml import log_metadata, step
from zenml.utils.source_utils import get_source_root

from materializers import ImageDatasetMaterializer
from xray.constants import DATASET_ARTIFACT
from xray.dataset import ImageDataset
from xray.loading import load_images

logger = logging.getLogger(__name__)


@step(output_materializers={DATASET_ARTIFACT: ImageDatasetMaterializer})
def load_dataset(
    data_dir: str,
    listing_version: str = "",
    min_images: int = 20,
) -> tuple[Annotated[ImageDataset, DATASET_ARTIFACT], Annotated[str, "data_fingerprint"]]:
    """Loads a Kaggle-layout or single-folder data set from a local path, s3:// or gs://.

    Args:
        data_dir: The data folder (see :mod:`xray.loading` for the accepted layouts); a
            relative path is relative to the source root (the project root locally, the
            image's working directory on a cloud stack).
        listing_version: Fingerprint of the folder listing, computed when the pipeline is
            built; it only makes the cache key change when files change.
        min_images: Fail when fewer usable images remain after skipping bad files.

    Returns:
        The data set (encoded images, labels, patients) and its content fingerprint.
    """

    def progress(done: int, total: int) -> None:
        logger.info("Checked %d/%d images", done, total)

    if "://" not in data_dir and not Path(data_dir).is_absolute():
        data_dir = str(Path(get_source_root()) / data_dir)
    dataset = load_images(data_dir, min_images=min_images, progress=progress)
    fingerprint = dataset.fingerprint()
    logger.info(
        "Loaded %d images of %d patients %s from %s; skipped %d file(s)",
        len(dataset),
        dataset.patient_count(),
        dataset.class_counts(),
        data_dir,
        len(dataset.skipped),
    )
    log_metadata(
        metadata={
            "images": len(dataset),
            "class_counts": dataset.class_counts(),
            "patients": dataset.patient_count(),
            "fingerprint": fingerprint,
            "skipped_count": len(dataset.skipped),
            "skipped_files": {s.path: s.reason for s in dataset.skipped[:500]},
        }
    )
    return dataset, fingerprint
