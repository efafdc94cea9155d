"""The one preprocessing definition shared by training, batch inference and serving.

Outside the model, a file (JPEG, PNG or DICOM) is decoded to RGB ``uint8`` by the one
decode (:func:`xray.io.images.decode_image`) and resized to the model's input size
(:func:`prepare_image`); that is all. Scaling to the backbone's input
range happens inside the model (:mod:`xray.ml.model`), so the saved ``.keras`` file takes raw
pixels and nobody can forget a step.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf


def decode_pixels(data: "bytes | np.ndarray") -> np.ndarray:
    """Decodes one file (JPEG, PNG or DICOM) to RGB uint8 with the shared decode.

    Args:
        data: The file content (bytes, or a NumPy bytes scalar as ``tf.numpy_function``
            passes it).

    Returns:
        A ``[height, width, 3]`` uint8 array (:func:`xray.io.images.decode_image`: EXIF
        orientation applied, 16-bit windowed, DICOM windowed and MONOCHROME1 inverted).

    Raises:
        xray.io.images.ImageError: For a file that is not a usable image.
    """
    from xray.io.images import decode_image

    raw = data.item() if isinstance(data, np.ndarray) else data
    return decode_image(bytes(raw)).pixels


def resize_pixels(pixels: "np.ndarray | tf.Tensor", image_size: int) -> "tf.Tensor":
    """Resizes decoded RGB uint8 pixels to the model's input: ``[S, S, 3]`` uint8.

    Bilinear with antialiasing, aspect ratio not kept (the reference data set was made
    the same way), rounded back to uint8 so that cached training data stays small.
    """
    import tensorflow as tf

    resized = tf.image.resize(pixels, [image_size, image_size], method="bilinear", antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)


def prepare_image(data: "bytes | np.ndarray", image_size: int) -> "tf.Tensor":
    """Decodes and resizes one file to the model's input: ``[S, S, 3]`` uint8.

    Args:
        data: The file content (JPEG, PNG or DICOM).
        image_size: Side length S of the square output.

    Returns:
        The resized image as a uint8 tensor.
    """
    return resize_pixels(decode_pixels(data), image_size)


def _prepare_in_graph(data: "tf.Tensor", image_size: int) -> "tf.Tensor":
    """:func:`prepare_image` inside a tf.data map (the decode runs as Python)."""
    import tensorflow as tf

    pixels = tf.numpy_function(decode_pixels, [data], tf.uint8, stateful=False)
    pixels.set_shape([None, None, 3])
    return resize_pixels(pixels, image_size)


def make_dataset(
    images: Sequence[bytes],
    labels: np.ndarray | None,
    image_size: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    cache: bool = True,
) -> "tf.data.Dataset":
    """Builds the tf.data input pipeline: parallel decode, cache, shuffle, batch, prefetch.

    Decoded images are cached in memory after the first pass, as uint8 (N x S x S x 3
    bytes), so later epochs skip decoding entirely.

    Args:
        images: Encoded image bytes.
        labels: Class index per image, or None for unlabelled prediction input.
        image_size: Model input side length.
        batch_size: Batch size.
        shuffle: Reshuffle every epoch (training).
        seed: Shuffle seed.
        cache: Keep decoded images in memory after the first epoch.

    Returns:
        A dataset of ``(images, labels)`` batches, or of image batches without labels.
    """
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    encoded = tf.data.Dataset.from_tensor_slices(tf.constant(list(images), dtype=tf.string))
    decoded = encoded.map(
        lambda b: _prepare_in_graph(b, image_size), num_parallel_calls=autotune, deterministic=True
    )
    if labels is not None:
        targets = tf.data.Dataset.from_tensor_slices(np.asarray(labels, dtype=np.float32))
        decoded = tf.data.Dataset.zip((decoded, targets))
    if cache:
        decoded = decoded.cache()
    if shuffle:
        decoded = decoded.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    return decoded.batch(batch_size).prefetch(autotune)
