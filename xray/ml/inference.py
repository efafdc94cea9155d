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

import numpy as np
import pandas as pd

from xray.io.image_stats import CATEGORICAL_COLUMNS, DRIFT_COLUMNS, ID_COLUMNS
from xray.io.images import MAX_PIXELS, ImageError
from xray.io.layout import (
    EXTENSIONS_TEXT,
    DataError,
    extension,
    is_image_name,
    list_folder,
    locate,
    path_truth,
)
from xray.io.paths import read_location
from xray.logic.constants import CLASS_NAMES, POSITIVE_CLASS, UNKNOWN_LABEL
from xray.logic.dataset import SkippedFile
from xray.logic.metrics import classification_metrics
from xray.logic.patients import patient_id_or_file
from xray.logic.records import InferenceSummary
from xray.ml.guard import InputGuard, Verdict, withholds_label
from xray.ml.preprocessing import decode_and_describe, resize_pixels

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


def _examine(
    file: InputImage, image_size: int, max_pixels: int
) -> tuple[dict[str, Any], np.ndarray] | str:
    """Reads, checks, decodes (once), describes and resizes one file; the reason it is
    unusable otherwise.

    Only this call holds the file's bytes: what it returns is the statistics row and the
    model input (``[S, S, 3]`` uint8).
    """
    try:
        data = read_location(file.uri)
    except Exception as exc:  # noqa: BLE001 - reported per file, the run goes on
        return f"cannot read file: {exc}"
    try:
        decoded, statistics = decode_and_describe(data, image_size, max_pixels)
        statistics["patient"] = decoded.info.patient  # a DICOM's hashed PatientID, or None
        pixels = resize_pixels(decoded, image_size)
    except ImageError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - e.g. a JPEG variant Pillow cannot decode
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

    While the model runs on one batch, the thread pool reads, checks and decodes each
    file of the next one once and describes it
    (:func:`xray.ml.preprocessing.decode_and_describe`), then resizes
    (:func:`xray.ml.preprocessing.resize_pixels`) what it decoded. A file's bytes live
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
    from xray.ml.model import inference_model

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}.")
    use_guard = guard is not None and guard_mode != "off"
    fast = inference_model(model)  # batch norms folded into their convolutions
    twin = embedding_model(fast, guard.embedding_layer) if use_guard else fast  # type: ignore[union-attr]
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
            return [pool.submit(_examine, f, image_size, max_pixels) for f in batch]

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


def shard(files: Sequence[InputImage], index: int, count: int) -> list[InputImage]:
    """The ``index``-th of ``count`` contiguous, near-equal slices of ``files`` (so that
    the shards' predictions, concatenated in shard order, are in input order).

    Raises:
        ValueError: For an index outside ``0 .. count - 1``.
    """
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {index} of {count}: use 0 <= index < count")
    size, extra = divmod(len(files), count)
    start = index * size + min(index, extra)
    return list(files[start : start + size + (index < extra)])


def merge_results(parts: Sequence[InferenceResult]) -> InferenceResult:
    """One result from the shards' results, in shard order."""
    predictions = [p.predictions for p in parts if not p.predictions.empty]
    statistics = [p.statistics for p in parts if not p.statistics.empty]
    return InferenceResult(
        predictions=pd.concat(predictions, ignore_index=True)
        if predictions
        else parts[0].predictions,
        statistics=pd.concat(statistics, ignore_index=True) if statistics else parts[0].statistics,
        skipped=[s for p in parts for s in p.skipped],
    )


_WORKER_MODEL: list[Any] = []


def _start_worker(model_file: bytes, image_size: int, threads: int) -> None:
    """A scoring process: its share of the cores, then the model, loaded once."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from xray.ml.model import KerasModelFile

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    _WORKER_MODEL[:] = [KerasModelFile(data=model_file, image_size=image_size).load()]


def _score_in_worker(files: list[InputImage], kwargs: dict[str, Any]) -> InferenceResult:
    guard = kwargs.pop("guard")
    return score_images(
        _WORKER_MODEL[0],
        files,
        guard=InputGuard.from_dict(guard) if guard is not None else None,
        **kwargs,
    )


def score_in_processes(
    model_file: bytes,
    files: Sequence[InputImage],
    image_size: int,
    threshold: float,
    processes: int,
    batch_size: int = 256,
    guard: InputGuard | None = None,
    guard_mode: str = "refuse",
    max_pixels: int = MAX_PIXELS,
    progress: Callable[[int, int], None] | None = None,
) -> InferenceResult:
    """:func:`score_images` over ``processes`` contiguous shards of ``files`` at once,
    each in its own worker process (its own model, a share of the cores), merged.

    Worth it where one process leaves cores idle (a many-core machine: the decode
    threads and TensorFlow's thread pools do not use them all); on 2 cores the
    benchmark (``benchmarks/batch_inference.py --shards``) shows what it gives.

    Args:
        model_file: The ``.keras`` file's bytes (each worker loads it once).
        files, image_size, threshold, batch_size, guard, guard_mode, max_pixels: As
            :func:`score_images`.
        processes: Worker processes (shards); 1 scores here, in this process.
        progress: Called as ``progress(done, total)`` as each shard finishes.

    Returns:
        The merged result, rows in input order.
    """
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    processes = max(1, min(processes, len(files)))
    settings = {
        "image_size": image_size,
        "threshold": threshold,
        "batch_size": batch_size,
        "guard_mode": guard_mode,
        "max_pixels": max_pixels,
    }
    if processes == 1:
        from xray.ml.model import KerasModelFile

        model = KerasModelFile(data=model_file, image_size=image_size).load()
        return score_images(model, files, guard=guard, progress=progress, **settings)
    cores = os.cpu_count() or 1
    threads = max(1, cores // processes)
    settings["workers"] = max(2, 4 // processes)
    shards = [shard(files, i, processes) for i in range(processes)]
    guard_dict = guard.to_dict() if guard is not None else None
    done = 0
    context = multiprocessing.get_context("spawn")  # no forked TensorFlow state
    with ProcessPoolExecutor(
        processes,
        mp_context=context,
        initializer=_start_worker,
        initargs=(model_file, image_size, threads),
    ) as pool:
        futures = [
            pool.submit(_score_in_worker, part, {**settings, "guard": guard_dict})
            for part in shards
        ]
        parts = []
        for part, future in zip(shards, futures, strict=True):
            parts.append(future.result())
            done += len(part)
            if progress is not None:
                progress(done, len(files))
    return merge_results(parts)


def summarize(
    result: InferenceResult,
    source: str,
    layout: str,
    threshold: float,
    guard_mode: str,
    seconds: float,
    skipped: Sequence[SkippedFile] = (),
) -> InferenceSummary:
    """The run's summary (``summary.json``) of a (merged) result.

    Args:
        result: What was scored.
        source: The input as given.
        layout: :func:`find_inputs`'s layout.
        threshold: The decision threshold.
        guard_mode: ``refuse``/``flag``/``off``, or ``none`` when the model has no guard.
        seconds: Scoring wall time (for images/s).
        skipped: Files skipped before scoring (not images), listed first.
    """
    predictions = result.predictions
    refused = predictions[~predictions["accepted"].astype(bool)]
    every_skipped = [*skipped, *result.skipped]
    return InferenceSummary(
        source=source,
        layout=layout,
        images=len(predictions),
        predicted=predictions.loc[predictions["label"] != "", "label"].value_counts().to_dict(),
        guard_mode=guard_mode,
        refused=len(refused),
        refused_files=[
            {"file": row.file, "reason": row.guard_reason} for row in refused.itertuples()
        ],
        threshold=float(threshold),
        images_per_second=round(len(predictions) / seconds, 1) if seconds else None,
        skipped=[{"file": s.path, "reason": s.reason} for s in every_skipped],
        metrics=labelled_metrics(predictions, threshold),
    )


def merge_shards(
    predictions: Sequence[pd.DataFrame],
    statistics: Sequence[pd.DataFrame],
    summaries: Sequence[InferenceSummary],
) -> tuple[pd.DataFrame, pd.DataFrame, InferenceSummary]:
    """The outputs of parallel shards (:func:`shard`) as one run's, in shard order.

    Returns:
        The joined predictions and statistics, and a summary over them: counts and
        metrics recomputed, skipped and refused files of every shard, images/s over the
        slowest shard's scoring time.

    Raises:
        ValueError: Without shards, or with shards scored at different thresholds.
    """
    if not summaries:
        raise ValueError("no shard to merge")
    if len({s.threshold for s in summaries}) > 1:
        raise ValueError("the shards were scored at different thresholds (different models)")
    merged = merge_results(
        [InferenceResult(p, s) for p, s in zip(predictions, statistics, strict=True)]
    )
    first = summaries[0]
    seconds = max(
        (s.images / s.images_per_second for s in summaries if s.images_per_second), default=0.0
    )
    skipped = [SkippedFile(f["file"], f["reason"]) for s in summaries for f in s.skipped]
    summary = summarize(
        merged,
        first.source,
        first.layout,
        first.threshold,
        first.guard_mode,
        seconds,
        skipped,
    )
    return merged.predictions, merged.statistics, summary


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
