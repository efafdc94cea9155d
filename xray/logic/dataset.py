"""The in-memory data set that travels between steps as one artifact.

Images stay encoded (JPEG/PNG bytes as read from the source; DICOM as a header-free PNG
of its decoded pixels) so the artifact is as small as the source folder and every later
step, local or in a cloud container, decodes them with the one shared preprocessing
definition (:mod:`xray.ml.preprocessing`).
"""

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from xray.logic.constants import CLASS_NAMES

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SkippedFile:
    """A file that was found but not loaded, and why."""

    path: str
    reason: str


@dataclass
class ImageDataset:
    """Encoded images with their labels, patients and provenance.

    Attributes:
        images: Encoded image bytes, one entry per image.
        labels: Class index per image (0 = NORMAL, 1 = PNEUMONIA), ``int64``.
        patients: Patient id per image (see :mod:`xray.logic.patients`).
        paths: Path of each image relative to the source root (POSIX style).
        origins: The source split folder each image came from (``train``/``val``/``test``),
            or ``""`` when the source was a single ``{NORMAL,PNEUMONIA}`` folder.
        widths: Decoded width in pixels per image.
        heights: Decoded height in pixels per image.
        modes: PIL mode as decoded (``L``, ``RGB``, ``RGBA``, ``I;16``...) per image.
        source: Where the images were loaded from (a local path or URI).
        skipped: Files found under the source that could not be used, with the reason.
    """

    images: list[bytes]
    labels: np.ndarray
    patients: list[str]
    paths: list[str]
    origins: list[str]
    widths: np.ndarray
    heights: np.ndarray
    modes: list[str]
    source: str = ""
    skipped: list[SkippedFile] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.widths = np.asarray(self.widths, dtype=np.int64)
        self.heights = np.asarray(self.heights, dtype=np.int64)
        n = len(self.images)
        lengths = {
            "labels": len(self.labels),
            "patients": len(self.patients),
            "paths": len(self.paths),
            "origins": len(self.origins),
            "widths": len(self.widths),
            "heights": len(self.heights),
            "modes": len(self.modes),
        }
        wrong = {name: length for name, length in lengths.items() if length != n}
        if wrong:
            raise ValueError(f"ImageDataset fields disagree with {n} images: {wrong}")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: Iterable[int]) -> "ImageDataset":
        """Returns a new data set with the images at ``indices`` (in that order)."""
        idx = list(indices)
        return ImageDataset(
            images=[self.images[i] for i in idx],
            labels=self.labels[idx] if idx else np.zeros(0, dtype=np.int64),
            patients=[self.patients[i] for i in idx],
            paths=[self.paths[i] for i in idx],
            origins=[self.origins[i] for i in idx],
            widths=self.widths[idx] if idx else np.zeros(0, dtype=np.int64),
            heights=self.heights[idx] if idx else np.zeros(0, dtype=np.int64),
            modes=[self.modes[i] for i in idx],
            source=self.source,
            skipped=[],
        )

    def class_counts(self) -> dict[str, int]:
        """Number of images per class name."""
        counts = np.bincount(self.labels, minlength=len(CLASS_NAMES))
        return {name: int(counts[i]) for i, name in enumerate(CLASS_NAMES)}

    def patient_count(self) -> int:
        """Number of distinct patients."""
        return len(set(self.patients))

    def fingerprint(self) -> str:
        """SHA-256 over every image's path, label and content, in path order.

        Two data sets have the same fingerprint exactly when they hold the same files with
        the same labels, whatever order they were read in.
        """
        digest = hashlib.sha256()
        for i in sorted(range(len(self)), key=lambda j: self.paths[j]):
            digest.update(self.paths[i].encode())
            digest.update(b"\0%d\0" % self.labels[i])
            digest.update(hashlib.sha256(self.images[i]).digest())
        return digest.hexdigest()

    def total_bytes(self) -> int:
        """Total size of the encoded images in bytes."""
        return sum(len(image) for image in self.images)

    def index(self) -> dict[str, Any]:
        """Everything but the image bytes, as JSON-serialisable data."""
        return {
            "format_version": FORMAT_VERSION,
            "source": self.source,
            "labels": self.labels.tolist(),
            "patients": self.patients,
            "paths": self.paths,
            "origins": self.origins,
            "widths": self.widths.tolist(),
            "heights": self.heights.tolist(),
            "modes": self.modes,
            "sizes": [len(image) for image in self.images],
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
        }

    def write(self, index_file: IO[str], blob_file: IO[bytes]) -> None:
        """Serialises the data set: a JSON index plus all image bytes back to back."""
        json.dump(self.index(), index_file)
        for image in self.images:
            blob_file.write(image)

    @classmethod
    def read(cls, index_file: IO[str], blob_file: IO[bytes]) -> "ImageDataset":
        """Reads a data set written by :meth:`write`.

        Raises:
            ValueError: If the files are from another format version or truncated.
        """
        index = json.load(index_file)
        if index.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"Image data set format {index.get('format_version')!r} is not supported "
                f"(expected {FORMAT_VERSION}); re-run the pipeline with --no-cache."
            )
        images: list[bytes] = []
        for size in index["sizes"]:
            chunk = blob_file.read(size)
            if len(chunk) != size:
                raise ValueError("Image data set blob is truncated; re-run with --no-cache.")
            images.append(chunk)
        return cls(
            images=images,
            labels=np.asarray(index["labels"], dtype=np.int64),
            patients=index["patients"],
            paths=index["paths"],
            origins=index["origins"],
            widths=np.asarray(index["widths"], dtype=np.int64),
            heights=np.asarray(index["heights"], dtype=np.int64),
            modes=index["modes"],
            source=index["source"],
            skipped=[SkippedFile(**s) for s in index["skipped"]],
        )


def concatenate(parts: Sequence[ImageDataset]) -> ImageDataset:
    """Joins several data sets (same source) into one, keeping order."""
    if not parts:
        raise ValueError("Nothing to concatenate.")
    return ImageDataset(
        images=[img for p in parts for img in p.images],
        labels=np.concatenate([p.labels for p in parts]),
        patients=[x for p in parts for x in p.patients],
        paths=[x for p in parts for x in p.paths],
        origins=[x for p in parts for x in p.origins],
        widths=np.concatenate([p.widths for p in parts]),
        heights=np.concatenate([p.heights for p in parts]),
        modes=[x for p in parts for x in p.modes],
        source=parts[0].source,
        skipped=[s for p in parts for s in p.skipped],
    )
