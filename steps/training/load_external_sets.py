"""Step: load the external test sets (labelled folders from another site or collection)."""

import logging
from typing import Annotated

from zenml import log_metadata, step
from zenml.utils.source_utils import get_source_root

from materializers import ImageDatasetMaterializer
from xray.io.loading import load_images
from xray.io.paths import resolve_location
from xray.logic.constants import EXTERNAL_SETS_ARTIFACT
from xray.logic.dataset import ImageDataset
from xray.logic.external import combine, set_names

logger = logging.getLogger(__name__)


@step(output_materializers={EXTERNAL_SETS_ARTIFACT: ImageDatasetMaterializer})
def load_external_sets(
    external_dirs: list[str], listing_version: str = ""
) -> tuple[
    Annotated[ImageDataset, EXTERNAL_SETS_ARTIFACT],
    Annotated[dict[str, str], "external_sources"],
]:
    """Loads every external folder with the training data's loader and checks.

    Each folder may use either layout (``{NORMAL,PNEUMONIA}`` or Kaggle's
    ``{train,val,test}/{NORMAL,PNEUMONIA}``: all of its images count) and needs both
    classes. Unreadable files are skipped and listed, as in training.

    Args:
        external_dirs: The folders (local, ``s3://``, ``gs://``); relative paths are
            relative to the source root.
        listing_version: Fingerprint of the folder listings (cache key only).

    Returns:
        One data set, whose ``origins`` hold each image's set name (the folder's last
        part), and the folder of each set name.
    """
    roots = [resolve_location(d, get_source_root()) for d in external_dirs]
    names = set_names(roots)
    parts = [
        (name, load_images(root, min_images=4)) for name, root in zip(names, roots, strict=True)
    ]
    for (name, part), root in zip(parts, roots, strict=True):
        logger.info(
            "External set %s: %d images %s from %s; skipped %d file(s)",
            name,
            len(part),
            part.class_counts(),
            root,
            len(part.skipped),
        )
    combined = combine(parts)
    log_metadata(
        metadata={
            name: {
                "source": root,
                "images": len(part),
                "class_counts": part.class_counts(),
                "skipped_files": {s.path: s.reason for s in part.skipped[:200]},
            }
            for (name, part), root in zip(parts, roots, strict=True)
        }
    )
    return combined, dict(zip(names, roots, strict=True))
