"""Grad-CAM on the backbone's last convolutional block (shared by the service and evaluation)."""

import io
from typing import Any

import numpy as np


def _backbone(model: Any) -> Any:
    import keras

    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    backbones = [layer for layer in nested if layer.name != "augmentation"]
    if not backbones:
        raise ValueError(f"Model {model.name} has no nested backbone for Grad-CAM.")
    return backbones[-1]


def gradcam(model: Any, image: np.ndarray) -> tuple[np.ndarray, float]:
    """Class activation map of P(PNEUMONIA) for one image.

    The model is a chain of layers (resize, augmentation, scaling, backbone, pooling,
    dropout, output, and temperature scaling when calibrated); it is replayed in
    inference mode with the backbone's output watched, and the gradient-weighted sum of
    its channels is the map.

    Args:
        model: A model built by :func:`xray.ml.model.build_model`.
        image: One RGB uint8 image ``[H, W, 3]`` (as :func:`xray.ml.preprocessing.prepare_image`
            returns it).

    Returns:
        The heatmap in [0, 1] at the backbone's spatial resolution, and P(PNEUMONIA).
    """
    import tensorflow as tf

    backbone = _backbone(model)
    x = tf.convert_to_tensor(image[None])
    with tf.GradientTape() as tape:
        features = None
        for layer in model.layers[1:]:
            x = layer(x, training=False)
            if layer is backbone:
                features = x
                tape.watch(features)
        output = x[:, 0]
    grads = tape.gradient(output, features)[0]
    weights = tf.reduce_mean(grads, axis=(0, 1))
    cam = tf.nn.relu(tf.reduce_sum(features[0] * weights, axis=-1)).numpy()
    peak = float(cam.max())
    heatmap = cam / peak if peak > 0 else np.zeros_like(cam)
    return heatmap.astype(np.float32), float(output[0].numpy())


def overlay_png(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> bytes:
    """The image in gray with the heatmap blended on top (jet colours), as PNG bytes."""
    from matplotlib import colormaps
    from PIL import Image

    height, width = image.shape[:2]
    gray = np.asarray(Image.fromarray(image).convert("L").convert("RGB"), dtype=np.float32)
    resized = Image.fromarray((heatmap * 255).astype(np.uint8)).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    colours = colormaps["jet"](np.asarray(resized, dtype=np.float32) / 255.0)[..., :3] * 255
    blended = np.clip((1 - alpha) * gray + alpha * colours, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(blended).save(buffer, format="PNG")
    return buffer.getvalue()
