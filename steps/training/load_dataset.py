"""Step: read every image under a data folder into one versioned artifact."""

import logging
from typing import Annotated

from zenml import log_metadata, step
from zenml.utils.source_utils import get_source_root

from materializers import ImageDatasetMaterializer
from xray.io.loading import load_images, merge_sources
from xray.io.paths import resolve_location
from xray.logic.constants import DATASET_ARTIFACT
from xray.logic.dataset import ImageDataset
from xray.logic.settings import LoadSettings

logger = logging.getLogger(__name__)


@step(output_materializers={DATASET_ARTIFACT: ImageDatasetMaterializer})
def load_dataset(
    data_dir: str,
    listing_version: str = "",
    extra_data_dirs: list[str] | None = None,
    config: LoadSettings | None = None,
) -> tuple[Annotated[ImageDataset, DATASET_ARTIFACT], Annotated[str, "data_fingerprint"]]:
    """Loads a Kaggle-layout or single-folder data set from a local path, s3:// or gs://.

    Args:
        data_dir: The data folder (see :mod:`xray.io.loading` for the accepted layouts); a
            relative path is relative to the source root (the project root locally, the
            image's working directory on a cloud stack).
        listing_version: Fingerprint of the folder listing, computed when the pipeline is
            built; it only makes the cache key change when files change.
        extra_data_dirs: More folders to merge in (a retrain on new data: the old
            folders plus the new one); their paths get the folder name as a prefix.
        config: Settings (:class:`xray.logic.settings.LoadSettings`).

    Returns:
        The data set (encoded images, labels, patients) and its content fingerprint.
    """

    config = config or LoadSettings()

    def progress(done: int, total: int) -> None:
        logger.info("Checked %d/%d images", done, total)

    roots = [resolve_location(d, get_source_root()) for d in [data_dir, *(extra_data_dirs or [])]]
    # min_images applies to the main folder; an added folder needs 2 images per class.
    dataset = merge_sources(
        [
            (
                root,
                load_images(root, min_images=config.min_images if i == 0 else 4, progress=progress),
            )
            for i, root in enumerate(roots)
        ]
    )
    data_dir = dataset.source
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
