"""BentoML service: POST /predict, /predict_batch and /explain for chest X-rays.

Two classes, one process each: ``PneumoniaClassifier`` is the public API (checks uploads,
applies the shared preprocessing, answers with the evaluation threshold); the model runs
in ``PneumoniaModel``, whose ``predict`` is batchable, so concurrent requests are grouped
into one model call by BentoML's adaptive batching (batching happens at a service
boundary). The model is the tag in ``XRAY_MODEL_TAG``, else the one a built Bento was
built for (``model_tag.txt``), else the ``production`` version of the ZenML Model
``XRAY_MODEL_NAME`` (default ``pneumonia_classifier``; its Bento is imported from the
artifact store when this machine does not have it).

Not a medical device: every answer carries a disclaimer (field and header).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
from starlette.responses import JSONResponse, Response

from xray.serving import (
    DISCLAIMER,
    RequestError,
    answer,
    check_upload,
    max_upload_bytes,
    prepare_upload,
)

logger = logging.getLogger(__name__)
PINNED_TAG_FILE = Path(__file__).with_name("model_tag.txt")  # written into built Bentos


def _model_tag() -> str:
    """The BentoML model to serve (see the module docstring).

    The production lookup needs the project's environment (ZenML); a built Bento never
    gets there, it has ``model_tag.txt``. The result goes into ``XRAY_MODEL_TAG`` so the
    worker processes BentoML starts next inherit it instead of asking ZenML again.
    """
    tag = os.environ.get("XRAY_MODEL_TAG") or (
        PINNED_TAG_FILE.read_text().strip() if PINNED_TAG_FILE.is_file() else ""
    )
    if not tag:
        from lifecycle.production import production_model_tag
        from xray.constants import MODEL_NAME

        tag = production_model_tag(os.environ.get("XRAY_MODEL_NAME") or MODEL_NAME)
        os.environ["XRAY_MODEL_TAG"] = tag
        logger.info("Serving the production model version: %s", tag)
    return tag


MODEL_TAG = _model_tag()
HEADERS = {"X-Disclaimer": "Not a medical device; not a diagnosis."}


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


try:
    import _bentoml_impl.serde as _serde

    _serde.json = _JsonForForms()  # type: ignore[assignment]
except ImportError:  # another BentoML layout: nothing to mend
    pass


class UploadSizeLimit:
    """ASGI middleware: refuses a request whose declared body is over the upload limit
    with 413 before it is read."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.limit = max_upload_bytes() + 64 * 1024  # multipart framing

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.limit:
                error = RequestError(
                    413,
                    f"request body is {int(length) / 2**20:.1f} MB; "
                    f"the limit is {max_upload_bytes() / 2**20:.0f} MB",
                )
                response = JSONResponse(error.body(), status_code=413, headers=HEADERS)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


@bentoml.service(workers=1, traffic={"timeout": 60, "concurrency": 128})
class PneumoniaModel:
    """Runs the Keras model; ``predict`` is batched adaptively across requests."""

    bento_model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        import tensorflow as tf

        from xray.model import load_model, model_image_size

        self.model = load_model(self.bento_model.path_of("model.keras"))
        size = model_image_size(self.model)
        spec = tf.TensorSpec([None, size, size, 3], tf.uint8)
        self._forward = tf.function(lambda x: self.model(x, training=False), input_signature=[spec])
        self._forward(np.zeros((1, size, size, 3), np.uint8))  # trace once, before traffic

    # max_latency_ms bounds how long a request may wait for its batch; BentoML answers
    # 503 when it predicts that bound cannot be met, so it is set for a busy 2-core box.
    @bentoml.api(batchable=True, max_batch_size=32, max_latency_ms=3000)
    def predict(self, images: np.ndarray) -> np.ndarray:
        """P(PNEUMONIA) for a batch of prepared images ``[N, S, S, 3]`` uint8."""
        return self._forward(images).numpy().reshape(-1)

    @bentoml.api
    def explain(self, image: np.ndarray) -> np.ndarray:
        """Grad-CAM heatmap of one prepared image, its last element is P(PNEUMONIA)."""
        from xray.gradcam import gradcam

        heatmap, probability = gradcam(self.model, image)
        return np.append(heatmap.ravel(), [heatmap.shape[0], heatmap.shape[1], probability])


@bentoml.service(workers=1, traffic={"timeout": 60, "concurrency": 128})
class PneumoniaClassifier:
    """The public API. Answers carry the label at the threshold chosen at evaluation."""

    bento_model = bentoml.models.BentoModel(MODEL_TAG)
    model = bentoml.depends(PneumoniaModel)

    def __init__(self) -> None:
        info = self.bento_model.info
        self.threshold = float(info.metadata["threshold"])
        self.image_size = int(info.metadata["image_size"])
        self.model_version = str(info.labels.get("zenml_model_version", info.tag.version))
        warm = np.zeros((self.image_size, self.image_size, 3), np.uint8)
        prepare_upload(_png_bytes(warm), self.image_size)  # first request is not slow

    async def _prepare(self, path: Path, name: str) -> np.ndarray:
        data = await asyncio.to_thread(Path(path).read_bytes)
        check_upload(data, name)
        return await asyncio.to_thread(prepare_upload, data, self.image_size)

    def _error(self, error: RequestError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=HEADERS)

    async def _call(self, method: Any, *args: Any) -> Any:
        """Calls the model service, retrying a dropped keep-alive connection twice (under
        bursts the dependency's server may close an idle pooled connection)."""
        import aiohttp

        for attempt in range(3):
            try:
                return await method(*args)
            except aiohttp.ClientConnectionError:
                if attempt == 2:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _busy(self, exc: Exception) -> JSONResponse:
        logger.warning("Model service call failed: %r", exc)
        body = RequestError(503, "the model is busy or restarting; retry shortly").body()
        return JSONResponse(body, status_code=503, headers={**HEADERS, "Retry-After": "1"})

    @bentoml.api(route="/predict")
    async def predict(self, image: Path) -> dict[str, Any]:
        """Classifies one chest X-ray (multipart field ``image``: JPEG or PNG)."""
        try:
            pixels = await self._prepare(image, "image")
        except RequestError as error:
            return self._error(error)
        try:
            probability = await self._call(self.model.to_async.predict, pixels[None])
        except Exception as exc:  # noqa: BLE001 - the model service is overloaded or down
            return self._busy(exc)
        return JSONResponse(
            answer(float(probability[0]), self.threshold, self.model_version), headers=HEADERS
        )

    @bentoml.api(route="/predict_batch")
    async def predict_batch(self, images: list[Path]) -> list[dict[str, Any]]:
        """Classifies several images (multipart field ``images``, repeated)."""
        try:
            pixels = [await self._prepare(p, f"images[{i}]") for i, p in enumerate(images)]
        except RequestError as error:
            return self._error(error)
        if not pixels:
            return self._error(RequestError(400, "no file in field 'images'"))
        try:
            probabilities = await self._call(self.model.to_async.predict, np.stack(pixels))
        except Exception as exc:  # noqa: BLE001
            return self._busy(exc)
        results = [answer(float(p), self.threshold, self.model_version) for p in probabilities]
        return JSONResponse(results, headers=HEADERS)

    @bentoml.api(route="/explain")
    async def explain(self, image: Path) -> Any:
        """Grad-CAM overlay (PNG) of one image; P(PNEUMONIA) in the X-Probability header."""
        from xray.gradcam import overlay_png

        try:
            pixels = await self._prepare(image, "image")
        except RequestError as error:
            return self._error(error)
        try:
            flat = await self._call(self.model.to_async.explain, pixels)
        except Exception as exc:  # noqa: BLE001
            return self._busy(exc)
        rows, cols, probability = int(flat[-3]), int(flat[-2]), float(flat[-1])
        heatmap = np.asarray(flat[:-3], dtype=np.float32).reshape(rows, cols)
        png = await asyncio.to_thread(overlay_png, pixels, heatmap)
        headers = {
            **HEADERS,
            "X-Probability": f"{probability:.6f}",
            "X-Disclaimer-Full": DISCLAIMER,
        }
        return Response(png, media_type="image/png", headers=headers)


def _png_bytes(pixels: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


PneumoniaClassifier.add_asgi_middleware(UploadSizeLimit)
