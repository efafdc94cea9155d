"""Request checks and answers of the prediction service (no BentoML imports: unit-testable).

Every refusal is a :class:`RequestError` with its HTTP status (see the README, "What the
service accepts"): 413 for a body or file over the size limit or too many files, 400 for
anything that is not a usable image, 422 for an image the input guard refuses.
"""

import asyncio
import os
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from xray.io.images import MAX_PIXELS, ImageError
from xray.logic.constants import CLASS_NAMES
from xray.logic.settings import GUARD_MODES
from xray.ml.guard import InputGuard, Verdict

DISCLAIMER = (
    "Research demonstration, not a medical device: this output is not a diagnosis and "
    "must not be used for clinical decisions."
)
DEFAULT_MAX_UPLOAD_MB = 20
DEFAULT_MAX_BATCH_FILES = 32
DEFAULT_GUARD_MODE = "refuse"


def max_upload_bytes() -> int:
    """Largest accepted upload, from ``XRAY_MAX_UPLOAD_MB`` (default 20 MB)."""
    return int(float(os.environ.get("XRAY_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB)) * 2**20)


def max_batch_files() -> int:
    """Most files one ``/predict_batch`` request may carry, from ``XRAY_MAX_BATCH_FILES``."""
    return int(os.environ.get("XRAY_MAX_BATCH_FILES", DEFAULT_MAX_BATCH_FILES))


def guard_mode() -> str:
    """``refuse`` (default), ``flag`` or ``off``, from ``XRAY_GUARD_MODE``.

    Raises:
        ValueError: For any other value, naming the variable and the choices.
    """
    mode = os.environ.get("XRAY_GUARD_MODE", DEFAULT_GUARD_MODE).strip().lower()
    if mode not in GUARD_MODES:
        raise ValueError(f"XRAY_GUARD_MODE={mode!r}: use one of {', '.join(GUARD_MODES)}")
    return mode


@dataclass
class RequestError(Exception):
    """A request the service refuses, with the HTTP status and a message for the caller."""

    status: int
    message: str

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "disclaimer": DISCLAIMER}
        if self.status == 422:
            body["accepted"] = False
        return body


def check_size(data: bytes, name: str = "image", max_bytes: int | None = None) -> None:
    """Raises 413 for a file over the upload limit."""
    limit = max_bytes if max_bytes is not None else max_upload_bytes()
    if len(data) > limit:
        raise RequestError(
            413, f"'{name}' is {len(data) / 2**20:.1f} MB; the limit is {limit / 2**20:.0f} MB"
        )


def decode_upload(
    data: bytes, image_size: int, name: str = "image", max_bytes: int | None = None
) -> np.ndarray:
    """The model input for one upload (JPEG, PNG or DICOM): decoded once by the shared
    decode and resized by the shared preprocessing, ``[S, S, 3]`` uint8.

    Raises:
        RequestError: As :func:`prepare_upload`.
    """
    return prepare_upload(data, image_size, name, max_bytes)[0]


def prepare_upload(
    data: bytes,
    image_size: int,
    name: str = "image",
    max_bytes: int | None = None,
    statistics: bool = False,
) -> tuple[np.ndarray, dict[str, float | int | str] | None]:
    """The model input for one upload (:func:`decode_upload`) and, with ``statistics``,
    what the prediction log keeps of it: the drift statistics, computed exactly as for
    the training reference, from the same decode and without the file's hash
    (:func:`xray.ml.preprocessing.decode_and_describe`).

    Raises:
        RequestError: 413 for a file over the size limit; 400 for an empty, non-image,
            truncated, tiny, bomb or multi-frame file, or one that cannot be decoded.
    """
    from xray.ml.preprocessing import decode_and_describe, decode_for_model, resize_pixels

    check_size(data, name, max_bytes)
    described = None
    try:
        if statistics:
            decoded, described = decode_and_describe(data, image_size, MAX_PIXELS)
            described.pop("sha256", None)  # it would let a record be matched to a file
        else:
            decoded = decode_for_model(data, image_size, MAX_PIXELS)
    except ImageError as exc:
        raise RequestError(400, f"'{name}' cannot be used: {exc}") from None
    return resize_pixels(decoded, image_size), described


def refusal(verdict: Verdict, name: str = "image") -> RequestError:
    """The 422 for an image the input guard refuses (never a label)."""
    return RequestError(
        422,
        f"'{name}' is not a chest X-ray this model can judge: {verdict.reason}",
    )


def guarded_answer(
    probability: float,
    threshold: float,
    model_version: str,
    verdict: Verdict | None,
) -> dict[str, Any]:
    """:func:`answer` plus the guard's verdict (``accepted``, ``guard_reason``)."""
    body = answer(probability, threshold, model_version)
    if verdict is not None:
        body["accepted"] = verdict.accepted
        if not verdict.accepted:
            body["guard_reason"] = verdict.reason
    return body


def load_guard(path: str | os.PathLike[str]) -> InputGuard | None:
    """The guard saved beside a model (``guard.json``), or None when the model has none."""
    import json
    from pathlib import Path

    file = Path(path)
    return InputGuard.from_dict(json.loads(file.read_text())) if file.is_file() else None


def answer(probability: float, threshold: float, model_version: str) -> dict[str, Any]:
    """The JSON answer for one image: label at the evaluation threshold, not 0.5."""
    return {
        "label": CLASS_NAMES[1] if probability >= threshold else CLASS_NAMES[0],
        "probability": float(probability),
        "threshold": float(threshold),
        "model_version": model_version,
        "disclaimer": DISCLAIMER,
    }


class Overloaded(RuntimeError):
    """More images wait for the model than ``XRAY_MAX_QUEUE``: the caller should retry."""


class ForwardBatcher:
    """Shares forward passes between concurrent requests, in this process.

    :meth:`__call__` queues a request's images and waits for its rows of the output.
    One task runs the passes: each takes every image waiting (at most ``max_batch``)
    and runs ``forward`` in a thread, so the event loop keeps accepting requests
    meanwhile. There is no timer: a pass starts as soon as the previous one ends, so a
    lone request goes straight through and, under load, the images that arrived during
    one pass make the next batch. This replaces BentoML's adaptive batching, which
    batches only across a service boundary: a second process and an HTTP hop per
    request (``benchmarks/serving.py`` measures both).

    Args:
        forward: ``[N, S, S, 3]`` uint8 -> ``[N, K]`` outputs (runs in a worker thread).
        max_batch: Most images per forward pass.
        max_queue: Most images waiting; more raise :class:`Overloaded` (a 503).
    """

    def __init__(self, forward: Any, max_batch: int = 32, max_queue: int = 512) -> None:
        self.forward = forward
        self.max_batch = max(1, max_batch)
        self.max_queue = max(1, max_queue)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: deque[tuple[np.ndarray, asyncio.Future]] = deque()
        self._queued = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    async def __call__(self, images: np.ndarray) -> np.ndarray:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first call, or a new event loop (tests)
            self._loop, self._waiting, self._queued = loop, deque(), 0
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run())
        if self._queued + len(images) > self.max_queue:
            raise Overloaded(f"{self._queued} images wait for the model")
        future = loop.create_future()
        self._waiting.append((images, future))
        self._queued += len(images)
        self._wake.set()  # type: ignore[union-attr]
        return await future

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            await wake.wait()
            wake.clear()
            while self._waiting:
                taken, count = [], 0
                while self._waiting and (
                    not taken or count + len(self._waiting[0][0]) <= self.max_batch
                ):
                    item = self._waiting.popleft()
                    taken.append(item)
                    count += len(item[0])
                self._queued -= count
                batch = np.concatenate([images for images, _ in taken])
                try:
                    out = await asyncio.to_thread(self.forward, batch)
                except Exception as exc:  # noqa: BLE001 - each waiting request gets it
                    for _, future in taken:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                offset = 0
                for images, future in taken:
                    if not future.done():
                        future.set_result(out[offset : offset + len(images)])
                    offset += len(images)
