"""Grad-CAM on the backbone's last convolutional block (shared by the service and evaluation)."""

import io
from collections.abc import Sequence
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
        model: A model built by :func:`xray.model.build_model`.
        image: One RGB uint8 image ``[H, W, 3]`` (as :func:`xray.preprocessing.prepare_image`
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


def gradcam_examples(
    model: Any,
    images: Sequence[bytes],
    labels: Any,
    paths: Sequence[str],
    per_class: int = 3,
    image_size: int | None = None,
    seed: int = 0,
) -> bytes:
    """Grad-CAM of a few images of each class, as one PNG for the dashboard.

    Each image goes through exactly what the service's ``/explain`` does:
    :func:`xray.preprocessing.prepare_image`, :func:`gradcam` and :func:`overlay_png`.
    One row per class; per image, the prepared image and its overlay side by side.

    Args:
        model: A model built by :func:`xray.model.build_model` (calibrated or not).
        images: Encoded image bytes.
        labels: Class index per image (1 = PNEUMONIA).
        paths: File path or name per image, for the titles.
        per_class: Images of each class to show (fewer when a class has fewer).
        image_size: Side length to prepare images at; the model's own by default.
        seed: Which images are picked; the same inputs and seed pick the same ones.

    Returns:
        PNG bytes (well under 1.5 MB for ``per_class = 3``).

    Raises:
        ValueError: For mismatched inputs or ``per_class < 1``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from xray.constants import CLASS_NAMES
    from xray.error_analysis import short_name
    from xray.model import model_image_size
    from xray.plots import _figure_to_png
    from xray.preprocessing import prepare_image

    y = np.asarray(labels).astype(int).ravel()
    if not len(images) == len(y) == len(paths):
        raise ValueError(
            f"gradcam_examples needs one label and path per image; got {len(images)} images, "
            f"{len(y)} labels and {len(paths)} paths."
        )
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, not {per_class}.")
    size = image_size or model_image_size(model)
    rng = np.random.default_rng(seed)
    fig = plt.figure(figsize=(3.4 * per_class, 4.6))
    for label, subfig in enumerate(fig.subfigures(2, 1)):
        members = np.flatnonzero(y == label)
        chosen = np.sort(rng.choice(members, min(per_class, len(members)), replace=False))
        subfig.suptitle(f"True {CLASS_NAMES[label]}", fontsize=9)
        axes = np.atleast_1d(subfig.subplots(1, 2 * per_class))
        for ax in axes:
            ax.set_axis_off()
        if not len(chosen):
            axes[0].text(0, 0.5, "none", fontsize=9, va="center", transform=axes[0].transAxes)
        for pair, index in enumerate(chosen):
            image = prepare_image(images[index], size).numpy()
            heatmap, probability = gradcam(model, image)
            overlay = np.asarray(Image.open(io.BytesIO(overlay_png(image, heatmap))))
            axes[2 * pair].imshow(image)
            axes[2 * pair].set_title(short_name(paths[index]), fontsize=6)
            axes[2 * pair + 1].imshow(overlay)
            axes[2 * pair + 1].set_title(f"Grad-CAM, P = {probability:.3f}", fontsize=6)
    return _figure_to_png(fig)
