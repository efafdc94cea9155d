"""Folder layouts, in one place: what a folder of chest X-rays may look like, and what a
file's path says about it (its class, its split), on a local disk, ``s3://`` or ``gs://``.

One listing (:func:`list_folder`) and one reading of paths (:func:`path_truth`) serve
both readers:

- training (:func:`xray.io.loading.discover_images`) is strict: the Kaggle layout
  ``{train,val,test}/{NORMAL,PNEUMONIA}/`` or the single-folder ``{NORMAL,PNEUMONIA}/``,
  and any other folder is an error naming it;
- batch inference (:func:`xray.ml.inference.find_inputs`) is lenient: every image below the
  folder is scored, and one in a class folder (directly or under a split folder) carries
  that class as its known truth.

Names are case-insensitive; hidden files and folders (``.x``, ``__x``) are ignored; a
folder holding a ``chest_xray/`` folder (the Kaggle archive) and no class, split or
image of its own is stepped into.
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import fsspec

from xray.io.paths import is_uri
from xray.logic.constants import CLASS_NAMES, IMAGE_EXTENSIONS, SPLIT_NAMES

logger = logging.getLogger(__name__)

EXTENSIONS_TEXT = ".jpeg/.jpg/.png/.dcm"
""":data:`xray.logic.constants.IMAGE_EXTENSIONS` as people write them."""
CLASS_INDEX = {name.lower(): i for i, name in enumerate(CLASS_NAMES)}
SPLITS = {name.lower(): name for name in SPLIT_NAMES}
ARCHIVE_FOLDER = "chest_xray"


class DataError(ValueError):
    """The data folder cannot be used as given; the message says how to fix it."""


def is_hidden(name: str) -> bool:
    """Hidden files and folders (``.DS_Store``, ``__MACOSX``) are never data."""
    return name.startswith(".") or name.startswith("__")


def extension(name: str) -> str:
    """The lower-case extension of a file name (``""`` when it has none)."""
    return os.path.splitext(name)[1].lower()


def is_image_name(name: str) -> bool:
    """Whether a file name has an image extension (JPEG, PNG or DICOM)."""
    return extension(name) in IMAGE_EXTENSIONS


def locate(
    root: str, what: str = "data folder"
) -> tuple[fsspec.AbstractFileSystem, str, str | None]:
    """The filesystem of ``root`` (local, ``s3://``, ``gs://``), its stripped path, and
    what is there: ``"folder"``, ``"file"`` or None.

    Raises:
        DataError: When ``root`` cannot be reached (a missing fsspec backend, network,
            credentials, permissions), naming ``what`` it was and how to fix it.
    """
    try:
        fs, path = fsspec.core.url_to_fs(root)
        fs.invalidate_cache()  # remote listings are cached per process; always list afresh
        if fs.isdir(path):
            return fs, path, "folder"
        return fs, path, "file" if fs.isfile(path) else None
    except ImportError as exc:
        raise DataError(f"Cannot read {root}: {exc}. Install the project's dependencies.") from exc
    except Exception as exc:  # noqa: BLE001 - network, credentials, permissions...
        hint = (
            " Check your cloud credentials (AWS profile / GOOGLE_APPLICATION_CREDENTIALS) and "
            "network access to the bucket."
            if is_uri(root)
            else ""
        )
        raise DataError(f"Cannot read the {what} {root}: {exc!r}.{hint}") from exc


def entry_version(entry: dict[str, Any]) -> str:
    """A cheap change marker for one listed file: size plus mtime, ETag or hash."""
    for key in ("ETag", "etag", "md5Hash", "crc32c", "mtime", "LastModified", "updated"):
        if entry.get(key) is not None:
            return f"{entry.get('size')}:{entry[key]}"
    return str(entry.get("size"))


def path_truth(rel_path: str) -> tuple[str, int | None]:
    """What a path relative to the folder says: its split folder and its class.

    ``NORMAL/x`` -> ``("", 0)``; ``test/PNEUMONIA/x`` -> ``("test", 1)`` (deeper paths
    too); anything else -> ``("", None)``.
    """
    parts = rel_path.split("/")
    if len(parts) >= 2 and parts[0].lower() in CLASS_INDEX:
        return "", CLASS_INDEX[parts[0].lower()]
    if len(parts) >= 3 and parts[0].lower() in SPLITS and parts[1].lower() in CLASS_INDEX:
        return SPLITS[parts[0].lower()], CLASS_INDEX[parts[1].lower()]
    return "", None


@dataclass(frozen=True)
class ListedFile:
    """A file found under a folder (not read).

    Attributes:
        uri: Where to read it (fsspec URL).
        rel_path: Its path relative to the folder (after stepping into ``chest_xray/``).
        size: Its size in bytes (0 when the filesystem does not say).
        version: A cheap change marker (size plus mtime, ETag or hash).
    """

    uri: str
    rel_path: str
    size: int
    version: str

    @property
    def parent(self) -> str:
        """The folder it is in, relative to the listed folder (``""`` at the top)."""
        return self.rel_path.rsplit("/", 1)[0] if "/" in self.rel_path else ""


@dataclass
class Listing:
    """Every file and folder under a folder, hidden ones left out, listed once.

    Attributes:
        root: The folder as given.
        base: The listed folder's path on its filesystem (inside ``chest_xray/`` when
            that was stepped into).
        files: The files, sorted by relative path.
        folders: Every folder's relative path.
    """

    root: str
    base: str
    files: list[ListedFile] = field(default_factory=list)
    folders: set[str] = field(default_factory=set)

    def subfolders(self, rel: str = "") -> dict[str, str]:
        """The folders directly in ``rel``: name -> relative path, sorted by name."""
        found = {
            f.rsplit("/", 1)[-1]: f
            for f in self.folders
            if (f.rsplit("/", 1)[0] if "/" in f else "") == rel and f != rel
        }
        return dict(sorted(found.items()))

    def files_in(self, rel: str) -> list[ListedFile]:
        """The files directly in ``rel``, sorted by name."""
        return [f for f in self.files if f.parent == rel]

    def where(self, rel: str) -> str:
        """A folder's location for messages: the root as given, plus ``rel``."""
        return f"{self.root.rstrip('/')}/{rel}" if rel else self.root


def _list(fs: fsspec.AbstractFileSystem, root: str, path: str) -> Listing:
    prefix = path.rstrip("/") + "/"
    listing = Listing(root=root, base=path.rstrip("/"))
    files: list[ListedFile] = []
    for name, entry in fs.find(path, withdirs=True, detail=True).items():
        rel = name.rstrip("/")[len(prefix) :] if name.startswith(prefix) else ""
        if not rel or any(is_hidden(part) for part in rel.split("/")):
            continue
        parts = rel.split("/")
        listing.folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
        if entry.get("type") == "directory":
            listing.folders.add(rel)
        else:
            uri = fs.unstrip_protocol(name)
            files.append(ListedFile(uri, rel, int(entry.get("size") or 0), entry_version(entry)))
    listing.files = sorted(files, key=lambda f: f.rel_path)
    return listing


def list_folder(fs: fsspec.AbstractFileSystem, root: str, path: str) -> Listing:
    """Lists a folder once (recursively), stepping into a lone ``chest_xray/`` folder.

    Args:
        fs: Its filesystem (:func:`locate`).
        root: The folder as given (for messages).
        path: Its path on ``fs``.

    Returns:
        The listing.
    """
    listing = _list(fs, root, path)
    top = {name.lower(): name for name in listing.subfolders()}
    known = set(CLASS_INDEX) | set(SPLITS)
    outside = [f for f in listing.files_in("") if is_image_name(f.rel_path)]
    if ARCHIVE_FOLDER in top and not set(top) & known and not outside:
        logger.info("Using the %s/ folder inside %s", top[ARCHIVE_FOLDER], root)
        listing = _list(fs, root, f"{path.rstrip('/')}/{top[ARCHIVE_FOLDER]}")
    return listing


def match_folders(
    folders: dict[str, str], wanted: tuple[str, ...], what: str, where: str
) -> dict[str, str]:
    """Maps each wanted name (case-insensitively) to the folder that has it.

    Args:
        folders: Name -> relative path of the folders found.
        wanted: The allowed names (``CLASS_NAMES`` or ``SPLIT_NAMES``).
        what: ``"class"`` or ``"split"`` (for messages).
        where: The parent folder (for messages).

    Raises:
        DataError: If a folder is not one of ``wanted``, or two only differ by case.
    """
    found: dict[str, str] = {}
    for name, rel in folders.items():
        canonical = next((w for w in wanted if w.lower() == name.lower()), None)
        if canonical is None:
            raise DataError(
                f"Unknown {what} folder '{name}' in {where}: expected only "
                f"{', '.join(wanted)} (case-insensitive). Move or remove '{name}'."
            )
        if canonical in found:
            raise DataError(
                f"Two {what} folders in {where} differ only by case: "
                f"'{found[canonical].rsplit('/', 1)[-1]}' and '{name}'. Merge them."
            )
        found[canonical] = rel
    return found
