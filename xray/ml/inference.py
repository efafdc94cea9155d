"""Batch inference: score a folder (or one file) of chest X-rays, streaming, in bounded memory.

Input is a local path or an ``s3://`` / ``gs://`` URI to one image or a folder. Every
``.jpeg``/``.jpg``/``.png``/``.dcm`` below a folder is scored; images in ``NORMAL/`` or
``PNEUMONIA/`` class folders (directly under the folder, or under ``train/``, ``val/``,
``test/``) carry that class as the known truth, so labelled data also gets metrics.

Files are read, checked and decoded ``batch_size`` at a time on a thread pool, while the
model runs on the batch before (see :func:`score_images`): memory holds at most two
batches of decoded images whatever the folder's size. Decoding for the model is the one
shared preprocessing (:func:`xray.ml.preprocessing.prepare_image`), so scores equal those of
:func:`xray.ml.training.predict_probabilities` and of the service.
"""

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import pandas as pd

from xray.io.image_stats import CATEGORICAL_COLUMNS, DRIFT_COLUMNS, ID_COLUMNS, image_statistics
from xray.io.images import MAX_PIXELS, ImageError, decode_image
from xray.io.layout import (
    EXTENSIONS_TEXT,
    DataError,
    extension,
    is_image_name,
    list_folder,
    locate,
    path_truth,
)
from xray.logic.constants import CLASS_NAMES, POSITIVE_CLASS, UNKNOWN_LABEL
from xray.logic.dataset import SkippedFile
from xray.logic.metrics import classification_metrics
from xray.logic.patients import patient_id_or_file
from xray.ml.guard import InputGuard, Verdict, withholds_label

logger = logging.getLogger(__name__)

PREDICTION_COLUMNS: tuple[str, ...] = (
    "file",
    "probability",
    "label",
    "truth",
    "accepted",
    "guard_reason",
)
STATISTICS_SPLIT = "new"
FORWARD_BATCH = 64
"""Images per forward pass: bounds the model's activation memory, whatever ``batch_size``."""

EXPECTED_INPUT = (
    f"expected one {EXTENSIONS_TEXT} file, or a folder of them (any nesting; images in "
    "NORMAL/ or PNEUMONIA/ class folders, directly or under train/val/test/, are scored "
    "against that class)"
)


@dataclass(frozen=True)
class InputImage:
    """An image to score.

    Attributes:
        uri: Where to read it (fsspec URL).
        rel_path: Its path relative to the input folder (the file name for a single file).
        truth: Class index (0 NORMAL, 1 PNEUMONIA) when it sits in a class folder, else None.
    """

    uri: str
    rel_path: str
    truth: int | None


@dataclass
class InferenceResult:
    """What scoring produced.

    Attributes:
        predictions: One row per scored image, in input order: ``file`` (relative path),
            ``probability`` (P(PNEUMONIA)), ``label`` (at the threshold), ``truth``
            (class name, or ``""`` when unknown), ``accepted`` (False when the input
            guard refused the image: then, in ``refuse`` mode, no probability and no
            label) and ``guard_reason``.
        statistics: Per-image statistics with the columns of
            :func:`xray.io.image_stats.statistics_table` (split ``"new"``), for drift checks.
        skipped: Files that could not be scored, with the reason.
    """

    predictions: pd.DataFrame
    statistics: pd.DataFrame
    skipped: list[SkippedFile] = field(default_factory=list)


def find_inputs(root: str) -> tuple[list[InputImage], list[SkippedFile], str]:
    """Lists the images to score under ``root``, without reading their contents (the
    lenient, inference reading of :mod:`xray.io.layout`).

    Args:
        root: A local path or fsspec URL (``s3://``, ``gs://``) to one image file or to
            a folder. A folder whose top level holds ``NORMAL``/``PNEUMONIA`` class
            folders (case-insensitive; one class alone is fine), or ``train``/``val``/
            ``test`` folders holding them, is labelled; every other image below it (hidden
            files and folders excepted) is scored with an unknown truth. A folder holding
            a ``chest_xray/`` folder (the Kaggle archive) and no image of its own is
            stepped into.

    Returns:
        The images sorted by relative path, the files skipped for their extension, and
        the layout: ``"file"``, ``"kaggle"``, ``"single"`` or ``"unlabelled"``.

    Raises:
        DataError: If ``root`` does not exist, is a file that is not a JPEG, PNG or DICOM, or
            is a folder with no image in it.
    """
    fs, path, kind = locate(root, "input")
    if kind is None:
        raise DataError(f"Input {root} does not exist: {EXPECTED_INPUT}. Check the path.")
    if kind == "file":
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if not is_image_name(name):
            raise DataError(
                f"Input file {root} is not an image file: its extension "
                f"'{extension(name) or 'none'}' is not one of "
                f"{EXTENSIONS_TEXT.replace('/', ', ')}. Pass a JPEG, PNG or DICOM file, or a "
                "folder of them."
            )
        return [InputImage(fs.unstrip_protocol(path), name, None)], [], "file"

    files: list[InputImage] = []
    skipped: list[SkippedFile] = []
    layouts: set[str] = set()
    for listed in list_folder(fs, root, path).files:
        rel = listed.rel_path
        if not is_image_name(rel):
            ext = extension(rel)
            skipped.append(SkippedFile(rel, f"not an image file (extension '{ext or 'none'}')"))
            continue
        origin, truth = path_truth(rel)
        if truth is not None:
            layouts.add("kaggle" if origin else "single")
        files.append(InputImage(listed.uri, rel, truth))
    if not files:
        others = f" ({len(skipped)} other file(s), e.g. {skipped[0].path})" if skipped else ""
        raise DataError(
            f"No {EXTENSIONS_TEXT} image in the input folder {root}{others}: {EXPECTED_INPUT}."
        )
    layout = next((name for name in ("kaggle", "single") if name in layouts), "unlabelled")
    return files, skipped, layout


def _read_file(uri: str) -> bytes:
    with fsspec.open(uri, "rb") as handle:
        return handle.read()


def _examine(
    file: InputImage, prepare: Callable[[bytes], Any], max_pixels: int
) -> tuple[dict[str, Any], np.ndarray] | str:
    """Reads, checks, describes and decodes one file; the reason it is unusable otherwise.

    Only this call holds the file's bytes: what it returns is the statistics row and the
    model input (``[S, S, 3]`` uint8).
    """
    try:
        data = _read_file(file.uri)
    except Exception as exc:  # noqa: BLE001 - reported per file, the run goes on
        return f"cannot read file: {exc}"
    try:
        decoded = decode_image(data, max_pixels=max_pixels)
        statistics = image_statistics(data)
        statistics["patient"] = decoded.info.patient  # a DICOM's hashed PatientID, or None
        pixels = prepare(decoded.pixels).numpy()
    except ImageError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - e.g. a JPEG variant TensorFlow cannot decode
        return f"cannot decode for the model: {str(exc).strip().splitlines()[0][:200]}"
    return statistics, pixels


def _score_batch(
    batch: Sequence[InputImage],
    outcomes: Sequence[tuple[dict[str, Any], np.ndarray] | str],
    forward: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]],
    threshold: float,
    predictions: list[dict[str, Any]],
    statistics: list[dict[str, Any]],
    skipped: list[SkippedFile],
    guard: InputGuard | None = None,
    guard_mode: str = "refuse",
) -> None:
    """Runs the model on one batch's decoded images and appends its rows.

    With a guard (mode ``refuse`` or ``flag``) each row says whether the guard accepted
    the image; in ``refuse`` mode a refused image gets no probability and no label.
    """
    kept = [(f, o) for f, o in zip(batch, outcomes, strict=True) if not isinstance(o, str)]
    for f, outcome in zip(batch, outcomes, strict=True):
        if isinstance(outcome, str):
            logger.warning("Skipped %s: %s", f.rel_path, outcome)
            skipped.append(SkippedFile(f.rel_path, outcome))
    if not kept:
        return
    images = np.stack([image for _, (_, image) in kept])
    parts = [forward(images[i : i + FORWARD_BATCH]) for i in range(0, len(images), FORWARD_BATCH)]
    probabilities = np.concatenate([p for p, _ in parts])
    verdicts: list[Verdict | None] = [None] * len(images)
    if guard is not None and guard_mode != "off":
        embeddings = np.concatenate([e for _, e in parts])
        verdicts = list(guard.check_batch(images, embeddings))
    for (f, (row, _)), probability, verdict in zip(
        kept, probabilities.tolist(), verdicts, strict=True
    ):
        truth = CLASS_NAMES[f.truth] if f.truth is not None else ""
        accepted = verdict is None or verdict.accepted
        withheld = withholds_label(verdict, guard_mode)
        predictions.append(
            {
                "file": f.rel_path,
                "probability": float("nan") if withheld else probability,
                "label": ""
                if withheld
                else (POSITIVE_CLASS if probability >= threshold else CLASS_NAMES[0]),
                "truth": truth,
                "accepted": accepted,
                "guard_reason": "" if verdict is None else verdict.reason,
            }
        )
        name = f.rel_path.rsplit("/", 1)[-1]
        row.update(
            path=f.rel_path,
            split=STATISTICS_SPLIT,
            patient=row.get("patient") or patient_id_or_file(name)[0],
            label=truth or UNKNOWN_LABEL,
        )
        statistics.append(row)


def score_images(
    model: Any,
    files: Sequence[InputImage],
    image_size: int,
    threshold: float,
    batch_size: int = 256,
    workers: int = 4,
    progress: Callable[[int, int], None] | None = None,
    max_pixels: int = MAX_PIXELS,
    guard: InputGuard | None = None,
    guard_mode: str = "refuse",
) -> InferenceResult:
    """Scores images streaming, ``batch_size`` at a time, with the model's decision threshold.

    While the model runs on one batch, the thread pool reads, checks
    and decodes (:func:`xray.io.images.decode_image`), describes
    (:func:`xray.io.image_stats.image_statistics`) and resizes
    (:func:`xray.ml.preprocessing.resize_pixels`) the next one. A file's bytes live
    only while its thread works on it; at most two batches of decoded images are held.
    Unusable files are skipped with the reason; the run goes on.

    Args:
        model: A loaded Keras model (raw ``uint8`` images in, P(PNEUMONIA) out).
        files: The images to score (see :func:`find_inputs`).
        image_size: The model's input side length (:func:`xray.ml.model.model_image_size`).
        threshold: Predict PNEUMONIA when P(PNEUMONIA) >= threshold.
        batch_size: Files read and decoded per batch.
        workers: Threads that read, check and decode files.
        progress: Called as ``progress(done, total)`` after each batch (files done,
            skipped ones included).
        max_pixels: Largest accepted image (width x height).
        guard: The model's input guard (:mod:`xray.ml.guard`), or None for none.
        guard_mode: ``refuse`` (refused rows get no probability or label), ``flag``
            (they keep them) or ``off`` (the guard is not consulted).

    Returns:
        Predictions, image statistics and skipped files (see :class:`InferenceResult`).
    """
    import tensorflow as tf

    from xray.ml.guard import embedding_model
    from xray.ml.preprocessing import resize_pixels

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}.")
    prepare = tf.function(
        lambda pixels: resize_pixels(pixels, image_size),
        input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)],
        autograph=False,
    )
    use_guard = guard is not None and guard_mode != "off"
    twin = embedding_model(model, guard.embedding_layer) if use_guard else model  # type: ignore[union-attr]
    model_call = tf.function(
        lambda x: twin(x, training=False),
        input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.uint8)],
        autograph=False,
    )

    def forward(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out = model_call(pixels)
        if use_guard:
            probability, embedding = out
            return np.asarray(probability).reshape(-1), np.asarray(embedding)
        return np.asarray(out).reshape(-1), None

    batches = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
    predictions: list[dict[str, Any]] = []
    statistics: list[dict[str, Any]] = []
    skipped: list[SkippedFile] = []
    done = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:

        def submit(batch: Sequence[InputImage]) -> list[Future]:
            return [pool.submit(_examine, f, prepare, max_pixels) for f in batch]

        upcoming = submit(batches[0]) if batches else []
        for k, batch in enumerate(batches):
            current = upcoming
            # Queued behind this batch: the pool works on it while the model runs below.
            upcoming = submit(batches[k + 1]) if k + 1 < len(batches) else []
            outcomes = [future.result() for future in current]
            del current
            _score_batch(
                batch,
                outcomes,
                forward,
                threshold,
                predictions,
                statistics,
                skipped,
                guard,
                guard_mode,
            )
            del outcomes
            done += len(batch)
            if progress is not None:
                progress(done, len(files))

    statistics_columns = [*ID_COLUMNS, *CATEGORICAL_COLUMNS, *DRIFT_COLUMNS]
    return InferenceResult(
        predictions=pd.DataFrame(predictions, columns=list(PREDICTION_COLUMNS)),
        statistics=pd.DataFrame(statistics, columns=statistics_columns),
        skipped=skipped,
    )


def labelled_metrics(predictions: pd.DataFrame, threshold: float) -> dict[str, Any] | None:
    """Classification metrics over the predictions whose truth is known.

    Args:
        predictions: :attr:`InferenceResult.predictions`.
        threshold: The decision threshold the labels were made with.

    Returns:
        :func:`xray.logic.metrics.classification_metrics` plus ``labelled`` (the number of
        images with a known truth that the input guard accepted), or None when there is
        none.
    """
    known = predictions[predictions["truth"] != ""]
    if "accepted" in known:
        known = known[known["accepted"].astype(bool)]  # refused by the guard: not judged
    if known.empty:
        return None
    y_true = (known["truth"] == POSITIVE_CLASS).to_numpy(dtype=np.int64)
    metrics: dict[str, Any] = classification_metrics(
        y_true, known["probability"].to_numpy(dtype=np.float64), threshold
    )
    metrics["labelled"] = len(known)
    return metrics
