"""Finding and reading chest X-ray images from a local folder, ``s3://`` or ``gs://``.

The folder is listed and read by the one layout reader, :mod:`xray.io.layout`; training
accepts two layouts (folder names case-insensitive):

- Kaggle: ``ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg`` (``val`` optional; an
  extra ``chest_xray/`` level, as the Kaggle archive has, is stepped into);
- single folder: ``ROOT/{NORMAL,PNEUMONIA}/*`` (the split step makes train/val/test).

Files that are not usable images are skipped and reported with the reason; a layout that
cannot be meant (unknown class folder, empty class, missing folder) is an error that
names the folder and says what was expected.
"""

import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from xray.io.images import MAX_PIXELS, ImageError, ImageInfo, decode_image, encode_png
from xray.io.layout import (
    EXTENSIONS_TEXT,
    SPLITS,
    DataError,
    extension,
    is_image_name,
    list_folder,
    locate,
    match_folders,
)
from xray.io.paths import read_location
from xray.logic.constants import CLASS_NAMES, SPLIT_NAMES
from xray.logic.dataset import ImageDataset, SkippedFile
from xray.logic.external import folder_names
from xray.logic.patients import patient_id_or_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoundFile:
    """An image file found under the data root."""

    uri: str
    rel_path: str
    label: int
    origin: str
    size: int
    version: str


EXPECTED_LAYOUT = (
    "expected either {train,val,test}/{NORMAL,PNEUMONIA}/ (the Kaggle layout) or "
    "{NORMAL,PNEUMONIA}/ directly under the data folder"
)


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def discover_images(root: str) -> tuple[list[FoundFile], list[SkippedFile], str]:
    """Lists every image under ``root`` with its label and origin split (the strict,
    training reading of :mod:`xray.io.layout`).

    Args:
        root: A local folder, or an ``s3://`` / ``gs://`` URI (any fsspec URL).

    Returns:
        The image files found, the files skipped for their name (not an image
        extension, or in a nested folder), and the layout (``"kaggle"`` or ``"single"``).

    Raises:
        DataError: If the folder does not exist, has an unknown class or split folder,
            or a class folder holds no image.
    """
    fs, path, kind = locate(root)
    if kind != "folder":
        raise DataError(
            f"Data folder {root} does not exist or is not a folder. Pass --data with a "
            f"folder that holds the images ({EXPECTED_LAYOUT})."
        )
    listing = list_folder(fs, root, path)
    top = listing.subfolders()
    if {n.lower() for n in top} & set(SPLITS):
        layout = "kaggle"
        splits = match_folders(top, SPLIT_NAMES, "split", root)
        for required in ("train", "test"):
            if required not in splits:
                raise DataError(
                    f"The Kaggle layout in {root} has no '{required}/' folder: {EXPECTED_LAYOUT}."
                )
        groups = [(split, splits[split]) for split in SPLIT_NAMES if split in splits]
    elif top:
        layout = "single"
        groups = [("", "")]
    else:
        raise DataError(f"No image folders in {root}: {EXPECTED_LAYOUT}.")

    found: list[FoundFile] = []
    skipped: list[SkippedFile] = []
    for origin, split_rel in groups:
        where = listing.where(split_rel)
        classes = match_folders(listing.subfolders(split_rel), CLASS_NAMES, "class", where)
        missing = [c for c in CLASS_NAMES if c not in classes]
        if missing:
            raise DataError(
                f"Missing class folder(s) {', '.join(missing)} in {where}: {EXPECTED_LAYOUT}."
            )
        for label, class_name in enumerate(CLASS_NAMES):
            class_rel = classes[class_name]
            for sub in listing.subfolders(class_rel).values():
                skipped.append(SkippedFile(sub + "/", "nested folder (ignored)"))
            n_images = 0
            for f in listing.files_in(class_rel):
                if not is_image_name(f.rel_path):
                    ext = extension(f.rel_path)
                    skipped.append(
                        SkippedFile(f.rel_path, f"not an image file (extension '{ext or 'none'}')")
                    )
                    continue
                found.append(FoundFile(f.uri, f.rel_path, label, origin, f.size, f.version))
                n_images += 1
            if n_images == 0:
                raise DataError(
                    f"Class folder {listing.where(class_rel)} holds no {EXTENSIONS_TEXT} "
                    f"image. Every class needs images; add some or fix the path."
                )
    return found, skipped, layout


def listing_version(root: str) -> str:
    """A cheap fingerprint of the folder listing (names, sizes, mtimes or ETags).

    Used as a step parameter so that ZenML's cache never reuses a load after files were
    added, removed or changed; the content fingerprint is computed by the load itself.
    """
    found, skipped, layout = discover_images(root)
    digest = hashlib.sha256(layout.encode())
    for f in found:
        digest.update(f"{f.rel_path}\0{f.label}\0{f.version}\n".encode())
    for s in skipped:
        digest.update(f"{s.path}\0skipped\n".encode())
    return digest.hexdigest()


def _read_all(files: list[FoundFile], workers: int) -> list[bytes | Exception]:
    """Reads every file's bytes, concurrently; an unreadable file yields its exception."""

    def read(f: FoundFile) -> bytes | Exception:
        try:
            return read_location(f.uri)
        except Exception as exc:  # noqa: BLE001 - reported per file, the run goes on
            return exc

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(read, files))


def load_images(
    root: str,
    min_images: int = 20,
    max_pixels: int = MAX_PIXELS,
    workers: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> ImageDataset:
    """Reads and checks every image under ``root`` into an :class:`ImageDataset`.

    Unreadable, corrupt or unsupported files are skipped and listed in
    ``dataset.skipped`` with the reason; the load never fails because of one bad file.

    Args:
        root: Data folder (local path, ``s3://`` or ``gs://``), see the module docstring.
        min_images: Fail when fewer usable images than this remain, or when a class
            has fewer than 2 usable images.
        max_pixels: Largest accepted image (width x height).
        workers: Threads used to read and check files.
        progress: Called as ``progress(done, total)`` while checking images.

    Returns:
        The loaded data set.

    Raises:
        DataError: For a bad layout (see :func:`discover_images`) or too few images.
    """
    found, skipped, layout = discover_images(root)
    logger.info("Found %d image files under %s (%s layout)", len(found), root, layout)
    contents = _read_all(found, workers)

    def check(item: tuple[FoundFile, bytes | Exception]) -> tuple[ImageInfo, bytes | None] | str:
        """The file's description, plus a header-free PNG of its pixels for DICOM (so no
        tag value is kept in the data set or any artifact made from it)."""
        f, data = item
        if isinstance(data, Exception):
            return f"cannot read file: {data}"
        try:
            decoded = decode_image(data, max_pixels=max_pixels)
        except ImageError as exc:
            return str(exc)
        return decoded.info, encode_png(decoded.pixels) if decoded.info.format == "DICOM" else None

    infos: list[tuple[ImageInfo, bytes | None] | str] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, info in enumerate(pool.map(check, zip(found, contents, strict=True)), 1):
            infos.append(info)
            if progress is not None and (i % 500 == 0 or i == len(found)):
                progress(i, len(found))

    keep: list[int] = []
    for i, (f, info) in enumerate(zip(found, infos, strict=True)):
        if isinstance(info, str):
            skipped.append(SkippedFile(f.rel_path, info))
        else:
            keep.append(i)
    for s in skipped:
        logger.warning("Skipped %s: %s", s.path, s.reason)

    kept = [infos[i] for i in keep]
    kept_infos = [info for info, _ in kept]  # type: ignore[misc]
    patients = [
        info.patient or patient_id_or_file(_basename(found[i].rel_path))[0]
        for i, info in zip(keep, kept_infos, strict=True)
    ]
    dataset = ImageDataset(
        images=[png or contents[i] for i, (_, png) in zip(keep, kept, strict=True)],  # type: ignore[misc]
        labels=np.array([found[i].label for i in keep], dtype=np.int64),
        patients=patients,
        paths=[found[i].rel_path for i in keep],
        origins=[found[i].origin for i in keep],
        widths=np.array([info.width for info in kept_infos], dtype=np.int64),
        heights=np.array([info.height for info in kept_infos], dtype=np.int64),
        modes=[info.mode for info in kept_infos],
        source=root,
        skipped=skipped,
    )
    counts = dataset.class_counts()
    too_few = [name for name, n in counts.items() if n < 2]
    if len(dataset) < min_images or too_few:
        listing = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:20])
        raise DataError(
            f"Only {len(dataset)} usable images under {root} ({counts}); at least "
            f"{min_images} are needed (setting load_dataset.config.min_images) and 2 per class. "
            f"{len(skipped)} file(s) were skipped{': ' + listing if listing else ''}."
        )
    return dataset


def merge_sources(parts: list[tuple[str, ImageDataset]]) -> ImageDataset:
    """Joins data sets loaded from several folders (old data + new data) into one.

    The first folder's paths stay as they are (so a single folder's fingerprint does not
    change); every later folder's paths get its folder name as a prefix (made unique),
    so two folders may hold the same relative paths. Split folders (``origins``) are
    kept: an official ``test/`` folder stays test data.

    Args:
        parts: ``(root, data set)`` per folder, the first one the main folder.

    Returns:
        One data set whose ``source`` lists every folder.
    """
    from xray.logic.dataset import concatenate

    if len(parts) == 1:
        return parts[0][1]
    renamed = [parts[0][1]]
    prefixes = folder_names([root for root, _ in parts[1:]], fallback="data")
    for prefix, (_root, dataset) in zip(prefixes, parts[1:], strict=True):
        moved = dataset.subset(range(len(dataset)))
        moved.paths = [f"{prefix}/{path}" for path in dataset.paths]
        moved.skipped = [SkippedFile(f"{prefix}/{s.path}", s.reason) for s in dataset.skipped]
        renamed.append(moved)
    merged = concatenate(renamed)
    merged.source = " + ".join(root for root, _ in parts)
    return merged
