"""The one preprocessing definition shared by training, batch inference and serving.

Outside the model, an encoded JPEG/PNG is decoded to RGB ``uint8`` and resized to the
model's input size (:func:`prepare_image`); that is all. Scaling to the backbone's input
range happens inside the model (:mod:`xray.model`), so the saved ``.keras`` file takes raw
pixels and nobody can forget a step.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf


def decode_image(data: "tf.Tensor | bytes") -> "tf.Tensor":
    """Decodes JPEG or PNG bytes (gray, RGB, RGBA, palette, 8 or 16 bit) to RGB uint8.

    Args:
        data: Encoded image bytes (a scalar string tensor or Python bytes).

    Returns:
        A ``[height, width, 3]`` uint8 tensor. Alpha is dropped; 16-bit images are scaled
        to 8 bits.
    """
    import tensorflow as tf

    image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def prepare_image(data: "tf.Tensor | bytes", image_size: int) -> "tf.Tensor":
    """Decodes and resizes one encoded image to the model's input: ``[S, S, 3]`` uint8.

    Bilinear with antialiasing, aspect ratio not kept (the reference data set was made
    the same way), rounded back to uint8 so that cached training data stays small.

    Args:
        data: Encoded image bytes.
        image_size: Side length S of the square output.

    Returns:
        The resized image as a uint8 tensor.
    """
    import tensorflow as tf

    image = decode_image(data)
    resized = tf.image.resize(image, [image_size, image_size], method="bilinear", antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)


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
        lambda b: prepare_image(b, image_size), num_parallel_calls=autotune, deterministic=True
    )
    if labels is not None:
        targets = tf.data.Dataset.from_tensor_slices(np.asarray(labels, dtype=np.float32))
        decoded = tf.data.Dataset.zip((decoded, targets))
    if cache:
        decoded = decoded.cache()
    if shuffle:
        decoded = decoded.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    return decoded.batch(batch_size).prefetch(autotune)
