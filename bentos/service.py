"""BentoML service: POST /predict, /predict_batch and /explain for chest X-rays.

One class, one process: ``PneumoniaClassifier`` checks uploads, applies the shared
preprocessing, runs the Keras model and answers with the evaluation threshold. Concurrent
requests share forward passes: a request's images join a queue, and each pass takes every
image waiting (up to ``XRAY_MAX_BATCH`` images), so under load the model runs in batches
while a lone request is never made to wait for company (:class:`ForwardBatcher`). The
model is the tag in ``XRAY_MODEL_TAG``, else the one a built Bento was built for
(``model_tag.txt``). The service imports the core (``xray``) only, never ZenML:
``python -m application.serve`` resolves the ``production`` version (importing its Bento
from the artifact store when this machine does not have it) and starts ``bentoml serve``
with ``XRAY_MODEL_TAG`` set.

Not a medical device: every answer carries a disclaimer (field and header).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# A built Bento serves the core it was built with: its wheel (env/python/wheels, beside
# src/) goes first on the path. In bentos/ of the project, the project's core is used.
_BENTO_WHEELS = Path(__file__).resolve().parent.parent / "env" / "python" / "wheels"
sys.path[:0] = [str(wheel) for wheel in sorted(_BENTO_WHEELS.glob("xray_core-*.whl"))]

import bentoml  # noqa: E402
import numpy as np  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402

from xray.io.prediction_log import (  # noqa: E402
    PredictionRecord,
    UnknownInferenceError,
    image_folder,
    keep_images,
    open_log,
    purge_images,
    save_image,
)
from xray.logic.constants import CLASS_NAMES, GUARD_FILE  # noqa: E402
from xray.ml.guard import Verdict, withholds_label  # noqa: E402
from xray.ml.serving import (  # noqa: E402
    DISCLAIMER,
    ForwardBatcher,
    Overloaded,
    RequestError,
    decode_upload,
    guard_mode,
    guarded_answer,
    load_guard,
    max_batch_files,
    max_upload_bytes,
    prepare_upload,
    refusal,
)

logger = logging.getLogger(__name__)
PINNED_TAG_FILE = Path(__file__).with_name("model_tag.txt")  # written into built Bentos


class NoModelTagError(RuntimeError):
    """Neither ``XRAY_MODEL_TAG`` nor a built Bento names the model to serve."""


def _model_tag() -> str:
    """The BentoML model to serve: ``XRAY_MODEL_TAG``, else the Bento's ``model_tag.txt``.

    The service never asks ZenML: the production version is resolved by the launcher
    (``python -m application.serve``), which sets ``XRAY_MODEL_TAG`` first.

    Raises:
        NoModelTagError: With the three ways to name a model.
    """
    tag = os.environ.get("XRAY_MODEL_TAG") or (
        PINNED_TAG_FILE.read_text().strip() if PINNED_TAG_FILE.is_file() else ""
    )
    if not tag:
        raise NoModelTagError(
            "No model to serve. Serve the production version with the launcher, from the "
            "project root: python -m application.serve --host 127.0.0.1 ; or name a model: "
            "XRAY_MODEL_TAG=pneumonia_classifier:<version> bentoml serve ; or serve a built "
            "Bento: bentoml serve pneumonia_service:latest"
        )
    return tag


MODEL_TAG = _model_tag()
CHALLENGER_TAG = os.environ.get("XRAY_CHALLENGER_TAG", "").strip()
"""A second model scored in shadow after each answer (set by ``python -m application.serve
--challenger``); its answers are logged and counted, never returned."""
HEADERS = {"X-Disclaimer": "Not a medical device; not a diagnosis."}
ID_HEADER = "X-Inference-Id"

# Prometheus metrics on /metrics (BentoML's registry; built lazily, on first use).
PREDICTIONS = bentoml.metrics.Counter(
    name="xray_predictions_total",
    documentation="Answers by model version, role (production or challenger) and label "
    "(WITHHELD: the input guard refused the image)",
    labelnames=["model_version", "role", "label"],
)
REFUSALS = bentoml.metrics.Counter(
    name="xray_guard_refusals_total",
    documentation="Images the input guard did not accept, by model version and guard mode",
    labelnames=["model_version", "mode"],
)
PROBABILITY = bentoml.metrics.Histogram(
    name="xray_probability",
    documentation="P(PNEUMONIA) of answered images, by model version and role",
    labelnames=["model_version", "role"],
    buckets=tuple(round(0.1 * i, 1) for i in range(1, 10)) + (0.95, 0.99, 1.0),
)
LATENCY = bentoml.metrics.Histogram(
    name="xray_request_seconds",
    documentation="Time from request to answer, by route and HTTP status",
    labelnames=["route", "status"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
SHADOW = bentoml.metrics.Counter(
    name="xray_shadow_comparisons_total",
    documentation="Images scored by the challenger in shadow, by whether its label "
    "agreed with production's",
    labelnames=["production_version", "challenger_version", "agreement"],
)
FEEDBACK = bentoml.metrics.Counter(
    name="xray_feedback_total",
    documentation="Ground-truth labels received on /feedback, by label and outcome",
    labelnames=["label", "outcome"],
)


class _JsonForForms:
    """BentoML 1.4 JSON-decodes multipart fields it does not expect; a binary file under
    another name (``file`` instead of ``image``) then raises UnicodeDecodeError and a 500.
    This makes that a JSONDecodeError, so the request ends as a 400 naming the missing
    field."""

    JSONDecodeError = json.JSONDecodeError

    def loads(self, value: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return json.loads(value, *args, **kwargs)
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError(str(exc), "", 0) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(json, name)


async def _file_fields_only(value: Any) -> Any:
    """BentoML fetches a text value of a file field as a URL (server-side request
    forgery); this service never fetches anything: a file field must be a file."""
    from starlette.datastructures import UploadFile

    if isinstance(value, UploadFile):
        return value
    raise bentoml.exceptions.BadInput(
        "a file field must carry an uploaded file; text values and URLs are not accepted "
        "(send the image itself, e.g. curl -F image=@xray.png)"
    )


try:
    import _bentoml_impl.serde as _serde

    _serde.json = _JsonForForms()  # type: ignore[assignment]
    _serde.MultipartSerde.ensure_file = staticmethod(_file_fields_only)  # type: ignore[method-assign]
    _serde.is_http_url = lambda _url: False  # a JSON body that is a URL is not fetched either
except ImportError:  # another BentoML layout: nothing to mend
    pass


class UploadSizeLimit:
    """ASGI middleware: refuses a request body over the upload limit with 413 — at once
    when its Content-Length says so, else while it streams in (chunked uploads), before
    more than the limit has been read."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.limit = max_upload_bytes() + 64 * 1024  # multipart framing

    def _too_large(self, size: str) -> JSONResponse:
        error = RequestError(
            413, f"request body is {size}; the limit is {max_upload_bytes() / 2**20:.0f} MB"
        )
        return JSONResponse(error.body(), status_code=413, headers=HEADERS)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._too_large(f"{int(length) / 2**20:.1f} MB")(scope, receive, send)
            return
        received = 0
        refused = False

        async def limited_receive() -> dict:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    refused = True
                    await self._too_large("over the limit")(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict) -> None:
            if not refused:  # after the 413, whatever the app still says is dropped
                await send(message)

        await self.app(scope, limited_receive, guarded_send)


def _load_models(bento_model: Any) -> dict[str, Any]:
    """The production model (with its guard's embedding output) and the challenger, as
    traced forward functions, warmed up before the first request."""
    import tensorflow as tf

    from xray.ml.guard import embedding_model
    from xray.ml.model import inference_model, load_model, model_image_size

    model = load_model(bento_model.path_of("model.keras"))
    fast = inference_model(model)  # batch norms folded into their convolutions (issue #18)
    guard = load_guard(bento_model.path_of(GUARD_FILE)) if guard_mode() != "off" else None
    size = model_image_size(model)
    spec = tf.TensorSpec([None, size, size, 3], tf.uint8)
    if guard is not None:  # with XRAY_GUARD_MODE=off no embedding is computed at all
        twin = embedding_model(fast, guard.embedding_layer)
        traced = tf.function(lambda x: twin(x, training=False), input_signature=[spec])
    else:
        traced = tf.function(lambda x: (fast(x, training=False), None), input_signature=[spec])

    def forward(images: np.ndarray) -> np.ndarray:
        """``[N, 2]``: P(PNEUMONIA) and the guard's embedding distance (NaN: no guard)."""
        probabilities, embeddings = traced(images)
        p = np.asarray(probabilities).reshape(-1)
        if guard is None or embeddings is None:
            return np.column_stack([p, np.full_like(p, np.nan)])
        return np.column_stack([p, guard.distances(np.asarray(embeddings))])

    forward(np.zeros((1, size, size, 3), np.uint8))  # trace once, before traffic
    loaded: dict[str, Any] = {"model": model, "forward": forward, "challenger": None}
    if CHALLENGER_TAG:  # the challenger scores production's prepared input
        challenger = inference_model(
            load_model(bentoml.models.get(CHALLENGER_TAG).path_of("model.keras"))
        )
        shadow = tf.function(lambda x: challenger(x, training=False), input_signature=[spec])

        def challenge(images: np.ndarray) -> np.ndarray:
            return np.asarray(shadow(images)).reshape(-1, 1)

        challenge(np.zeros((1, size, size, 3), np.uint8))
        loaded["challenger"] = challenge
    return loaded


@bentoml.service(workers=1, traffic={"timeout": 60, "concurrency": 128})
class PneumoniaClassifier:
    """The public API. Answers carry the label at the threshold chosen at evaluation, and
    an ``inference_id`` to send ground truth to ``/feedback`` with."""

    bento_model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        loaded = _load_models(self.bento_model)
        self.keras_model = loaded["model"]
        max_batch = int(os.environ.get("XRAY_MAX_BATCH", 32))
        max_queue = int(os.environ.get("XRAY_MAX_QUEUE", 512))
        self._forward = ForwardBatcher(loaded["forward"], max_batch, max_queue)
        self._challenge = (
            ForwardBatcher(loaded["challenger"], max_batch, max_queue)
            if loaded["challenger"] is not None
            else None
        )
        info = self.bento_model.info
        self.threshold = float(info.metadata["threshold"])
        self.image_size = int(info.metadata["image_size"])
        self.model_version = str(info.labels.get("zenml_model_version", info.tag.version))
        self.mode = guard_mode()
        self.guard = load_guard(self.bento_model.path_of(GUARD_FILE))
        if self.guard is None and self.mode != "off":
            logger.warning(
                "Model %s has no input guard (%s): every image is answered", MODEL_TAG, GUARD_FILE
            )
        workers = int(os.environ.get("XRAY_DECODE_CONCURRENCY", os.cpu_count() or 2))
        self._decode_slots = asyncio.Semaphore(max(1, workers))
        warm = np.zeros((self.image_size, self.image_size, 3), np.uint8)
        decode_upload(_png_bytes(warm), self.image_size)  # first request is not slow
        self.log = open_log()  # None with XRAY_PREDICTION_LOG=off
        self.image_days = keep_images() if self.log is not None else None
        if self.image_days is not None:
            purge_images(image_folder(), self.image_days)
        self.challenger_version, self.challenger_threshold = None, None
        if CHALLENGER_TAG:
            challenger = bentoml.models.get(CHALLENGER_TAG).info
            self.challenger_version = str(
                challenger.labels.get("zenml_model_version", challenger.tag.version)
            )
            self.challenger_threshold = float(challenger.metadata["threshold"])
        self._background: set[asyncio.Task] = set()

    async def _prepare(
        self, path: Path, name: str, describe: bool = True
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reads and decodes one upload, once, in a thread (never on the event loop), at
        most ``XRAY_DECODE_CONCURRENCY`` at a time: the model input, and the drift
        statistics for the log (empty when the log is off or ``describe`` is False)."""
        logged = describe and self.log is not None

        def prepare() -> tuple[np.ndarray, dict[str, Any]]:
            data = Path(path).read_bytes()
            pixels, statistics = prepare_upload(data, self.image_size, name, statistics=logged)
            return pixels, statistics or {}

        async with self._decode_slots:
            return await asyncio.to_thread(prepare)

    async def _verdicts(self, pixels: list[np.ndarray], distances: np.ndarray) -> list[Any]:
        """The guard's verdict per image; None each when the guard is off or absent."""
        if self.mode == "off" or self.guard is None:
            return [None] * len(pixels)
        from xray.ml.guard import image_features

        guard = self.guard

        def judge() -> list[Any]:
            return [
                guard.check(image_features(p), float(d))
                for p, d in zip(pixels, distances, strict=True)
            ]

        return await asyncio.to_thread(judge)

    def _error(self, error: RequestError, inference_id: str | None = None) -> JSONResponse:
        body, headers = error.body(), dict(HEADERS)
        if inference_id is not None:
            body["inference_id"] = headers[ID_HEADER] = inference_id
        return JSONResponse(body, status_code=error.status, headers=headers)

    def _failed(self, exc: Exception) -> JSONResponse:
        """503 with Retry-After only when the model is overloaded (``XRAY_MAX_QUEUE``
        images already wait); any other failure is a 500 (a bug to fix, not a reason to
        retry)."""
        if isinstance(exc, Overloaded | TimeoutError):
            logger.warning("Model overloaded: %s", exc)
            body = RequestError(503, "the model is busy; retry shortly").body()
            return JSONResponse(body, status_code=503, headers={**HEADERS, "Retry-After": "1"})
        logger.error("Model call failed", exc_info=exc)
        body = RequestError(
            500, "internal error while running the model (see the server log)"
        ).body()
        return JSONResponse(body, status_code=500, headers=HEADERS)

    async def _score(
        self, route: str, pixels: list[np.ndarray], statistics: list[dict[str, Any]]
    ) -> tuple[list[str], np.ndarray, list[Verdict | None]] | JSONResponse:
        """Runs the model, judges each image with the guard, logs every answer (with the
        statistics :meth:`_prepare` computed) and starts the challenger in shadow.

        Returns:
            The inference ids, P(PNEUMONIA) per image and the guard's verdicts; or the
            503/500 answer when the model service failed.
        """
        batch = np.stack(pixels)
        try:
            out = await self._forward(batch)
        except Exception as exc:  # noqa: BLE001 - mapped to 503 or 500 by _failed
            return self._failed(exc)
        out = np.asarray(out).reshape(-1, 2)
        verdicts = await self._verdicts(pixels, out[:, 1])
        ids = [uuid.uuid4().hex for _ in pixels]
        now = datetime.now(UTC)
        records = []
        for i, (probability, verdict) in enumerate(zip(out[:, 0], verdicts, strict=True)):
            withheld = withholds_label(verdict, self.mode)
            label = CLASS_NAMES[int(probability >= self.threshold)]
            PREDICTIONS.labels(
                self.model_version, "production", "WITHHELD" if withheld else label
            ).inc()
            PROBABILITY.labels(self.model_version, "production").observe(float(probability))
            if verdict is not None and not verdict.accepted:
                REFUSALS.labels(self.model_version, self.mode).inc()
            records.append(
                PredictionRecord(
                    inference_id=ids[i],
                    time=now,
                    route=route,
                    model_version=self.model_version,
                    probability=float(probability),
                    label=None if withheld else label,
                    threshold=self.threshold,
                    accepted=None if verdict is None else verdict.accepted,
                    guard_reason=None if verdict is None or verdict.accepted else verdict.reason,
                    statistics=statistics[i],
                )
            )
        if self.log is not None:
            self.log.record(records)
            if self.image_days is not None:
                await asyncio.to_thread(_save_images, ids, pixels, self.image_days)
        if self._challenge is not None:
            task = asyncio.create_task(self._shadow(records, batch))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return ids, out[:, 0], verdicts

    async def _shadow(self, answered: list[PredictionRecord], batch: np.ndarray) -> None:
        """Scores the answered images with the challenger, after the answer, and logs its
        answers under the same ids (role ``challenger``)."""
        try:
            p = np.asarray(await self._challenge(batch))  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - a failing challenger never affects production
            logger.exception("Shadow scoring by challenger %s failed", CHALLENGER_TAG)
            return
        records = []
        for record, probability in zip(answered, p.reshape(-1), strict=True):
            label = CLASS_NAMES[int(probability >= self.challenger_threshold)]
            agreement = "agree" if record.label in (None, label) else "disagree"
            if record.label is not None:
                SHADOW.labels(self.model_version, self.challenger_version, agreement).inc()
            PREDICTIONS.labels(self.challenger_version, "challenger", label).inc()
            PROBABILITY.labels(self.challenger_version, "challenger").observe(float(probability))
            records.append(
                record.model_copy(
                    update={
                        "role": "challenger",
                        "model_version": self.challenger_version,
                        "probability": float(probability),
                        "label": label,
                        "threshold": self.challenger_threshold,
                    }
                )
            )
        if self.log is not None:
            self.log.record(records)

    @bentoml.api(route="/predict")
    async def predict(self, image: Path) -> dict[str, Any]:
        """Classifies one chest X-ray (multipart field ``image``: JPEG, PNG or DICOM)."""
        started = time.perf_counter()
        response = await self._predict(image)
        LATENCY.labels("/predict", str(response.status_code)).observe(time.perf_counter() - started)
        return response

    async def _predict(self, image: Path) -> JSONResponse:
        try:
            pixels, statistics = await self._prepare(image, "image")
        except RequestError as error:
            return self._error(error)
        scored = await self._score("/predict", [pixels], [statistics])
        if isinstance(scored, JSONResponse):
            return scored
        (inference_id,), probabilities, (verdict,) = scored
        if withholds_label(verdict, self.mode):
            return self._error(refusal(verdict), inference_id)
        body = guarded_answer(float(probabilities[0]), self.threshold, self.model_version, verdict)
        body["inference_id"] = inference_id
        return JSONResponse(body, headers={**HEADERS, ID_HEADER: inference_id})

    @bentoml.api(route="/predict_batch")
    async def predict_batch(self, images: list[Path]) -> list[dict[str, Any]]:
        """Classifies several images (multipart field ``images``, repeated)."""
        started = time.perf_counter()
        response = await self._predict_batch(images)
        LATENCY.labels("/predict_batch", str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response

    async def _predict_batch(self, images: list[Path]) -> JSONResponse:
        if len(images) > max_batch_files():
            return self._error(
                RequestError(
                    413,
                    f"{len(images)} files in one request; at most {max_batch_files()} "
                    "(XRAY_MAX_BATCH_FILES). Split the batch.",
                )
            )
        if not images:
            return self._error(RequestError(400, "no file in field 'images'"))
        try:
            prepared = await asyncio.gather(
                *(self._prepare(p, f"images[{i}]") for i, p in enumerate(images))
            )
        except RequestError as error:
            return self._error(error)
        pixels, statistics = [p for p, _ in prepared], [s for _, s in prepared]
        scored = await self._score("/predict_batch", pixels, statistics)
        if isinstance(scored, JSONResponse):
            return scored
        ids, probabilities, verdicts = scored
        results = []
        for i, (probability, verdict) in enumerate(zip(probabilities, verdicts, strict=True)):
            if withholds_label(verdict, self.mode):
                result = refusal(verdict, f"images[{i}]").body()
            else:
                result = guarded_answer(
                    float(probability), self.threshold, self.model_version, verdict
                )
            results.append({**result, "inference_id": ids[i]})
        return JSONResponse(results, headers={**HEADERS, ID_HEADER: ",".join(ids)})

    @bentoml.api(route="/feedback")
    async def feedback(
        self, inference_id: str, label: str, source: str | None = None
    ) -> dict[str, Any]:
        """Records the true label of an answered image (JSON ``{"inference_id": ...,
        "label": "NORMAL" | "PNEUMONIA", "source": ...}``). Sending the same label again
        changes nothing; another label replaces it (a correction)."""
        if label not in CLASS_NAMES:
            return self._error(
                RequestError(400, f"label {label!r}: use one of {', '.join(CLASS_NAMES)}")
            )
        if source is not None and len(source) > 200:
            return self._error(RequestError(400, "source: at most 200 characters"))
        if self.log is None:
            return self._error(
                RequestError(409, "the prediction log is off (XRAY_PREDICTION_LOG=off)")
            )
        log = self.log

        def store() -> str:
            try:
                return log.store.add_feedback(inference_id, label, source)
            except UnknownInferenceError:
                log.flush(5)  # the prediction may still be in the journal
                return log.store.add_feedback(inference_id, label, source)

        try:
            outcome = await asyncio.to_thread(store)
        except UnknownInferenceError:
            FEEDBACK.labels(label, "unknown").inc()
            return self._error(
                RequestError(404, f"no prediction has inference_id {inference_id!r}")
            )
        except Exception:  # noqa: BLE001 - the database is down: the caller may retry
            logger.exception("Feedback could not be stored")
            body = RequestError(503, "the prediction log is unavailable; retry shortly").body()
            return JSONResponse(body, status_code=503, headers={**HEADERS, "Retry-After": "5"})
        FEEDBACK.labels(label, outcome).inc()
        body = {"inference_id": inference_id, "label": label, "status": outcome}
        return JSONResponse(body, headers=HEADERS)

    @bentoml.api(route="/explain")
    async def explain(self, image: Path) -> Any:
        """Grad-CAM overlay (PNG) of one image; P(PNEUMONIA) in the X-Probability header."""
        from xray.ml.gradcam import gradcam, overlay_png

        try:
            pixels, _ = await self._prepare(image, "image", describe=False)  # not logged
        except RequestError as error:
            return self._error(error)
        try:
            if self.mode == "refuse" and self.guard is not None:
                out = np.asarray(await self._forward(pixels[None]))
                (verdict,) = await self._verdicts([pixels], out.reshape(-1, 2)[:, 1])
                if withholds_label(verdict, self.mode):
                    return self._error(refusal(verdict))
            heatmap, probability = await asyncio.to_thread(gradcam, self.keras_model, pixels)
        except Exception as exc:  # noqa: BLE001
            return self._failed(exc)
        png = await asyncio.to_thread(overlay_png, pixels, heatmap)
        headers = {
            **HEADERS,
            "X-Probability": f"{probability:.6f}",
            "X-Disclaimer-Full": DISCLAIMER,
        }
        return Response(png, media_type="image/png", headers=headers)


_last_purge = [time.monotonic()]


def _save_images(ids: list[str], pixels: list[np.ndarray], days: int) -> None:
    """Keeps the model's input of each answered image (XRAY_PREDICTION_LOG_IMAGES=keep),
    and deletes those older than the retention limit, at most once an hour."""
    folder = image_folder()
    for inference_id, image in zip(ids, pixels, strict=True):
        save_image(folder, inference_id, image)
    if time.monotonic() - _last_purge[0] > 3600:
        _last_purge[0] = time.monotonic()
        purge_images(folder, days)


def _png_bytes(pixels: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


PneumoniaClassifier.add_asgi_middleware(UploadSizeLimit)
