"""The one preprocessing definition shared by training, batch inference and serving.

Outside the model, a file (JPEG, PNG or DICOM) is decoded to RGB ``uint8`` by the one
decode (:func:`xray.io.images.decode_image`; a large JPEG at a reduced DCT scale,
:func:`decode_for_model`) and resized by Pillow to the model's input size
(:func:`prepare_image`); that is all. Scaling to the backbone's input
range happens inside the model (:mod:`xray.ml.model`), so the saved ``.keras`` file takes raw
pixels and nobody can forget a step.
"""

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

    from xray.io.images import DecodedImage


def _bytes(data: "bytes | np.ndarray") -> bytes:
    return bytes(data.item() if isinstance(data, np.ndarray) else data)


def draft_side(image_size: int) -> int:
    """The side a JPEG is decoded at (at least) for a model of input side ``image_size``:
    the statistics' :data:`~xray.io.image_stats.ANALYSIS_SIZE` when the model's input is
    no larger, so that one decode serves both; else the model's side."""
    from xray.io.image_stats import ANALYSIS_SIZE

    return max(image_size, ANALYSIS_SIZE)


def decode_for_model(
    data: "bytes | np.ndarray", image_size: int, max_pixels: int | None = None
) -> "DecodedImage":
    """The one decode of a file for the model: a JPEG larger than twice
    :func:`draft_side` is decoded at a reduced DCT scale (the resize to the model's
    input would discard that detail anyway, and it is several times faster), any other
    file at full size.

    Raises:
        xray.io.images.ImageError: For a file that is not a usable image.
    """
    from xray.io.images import MAX_PIXELS, decode_image

    limit = MAX_PIXELS if max_pixels is None else max_pixels
    return decode_image(_bytes(data), max_pixels=limit, draft=draft_side(image_size))


def decode_and_describe(
    data: bytes, image_size: int, max_pixels: int | None = None
) -> tuple["DecodedImage", dict[str, float | int | str]]:
    """The one decode of a file for the model (:func:`decode_for_model`) and its drift
    statistics, exactly as the training reference computes them
    (:func:`xray.io.image_stats.image_statistics`): from that same decode when its JPEG
    scale is the statistics' own (a model input up to ``ANALYSIS_SIZE``), else from a
    second decode at the statistics' scale.

    Raises:
        xray.io.images.ImageError: For a file that is not a usable image.
    """
    from xray.io.image_stats import ANALYSIS_SIZE, decoded_statistics, image_statistics

    decoded = decode_for_model(data, image_size, max_pixels)
    if draft_side(image_size) == ANALYSIS_SIZE:
        return decoded, decoded_statistics(decoded, data)
    return decoded, image_statistics(data)


def resize_pixels(pixels: "np.ndarray | DecodedImage", image_size: int) -> np.ndarray:
    """Resizes decoded pixels to the model's input: ``[S, S, 3]`` uint8.

    Bilinear with antialiasing (Pillow's filter widens with the reduction), aspect ratio
    not kept (the reference data set was made the same way). A grayscale image is
    resized once, on its one channel, then repeated.

    Args:
        pixels: ``[H, W, 3]`` uint8, or a :class:`~xray.io.images.DecodedImage`.
        image_size: Side length S of the square output.
    """
    from PIL import Image

    gray = getattr(pixels, "gray", None)
    rgb = getattr(pixels, "pixels", pixels)
    size = (image_size, image_size)
    if gray is not None:
        small = np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.BILINEAR))
        return np.repeat(small[:, :, None], 3, axis=2)
    image = Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR))


def prepare_image(data: "bytes | np.ndarray", image_size: int) -> np.ndarray:
    """Decodes and resizes one file to the model's input: ``[S, S, 3]`` uint8.

    Args:
        data: The file content (JPEG, PNG or DICOM).
        image_size: Side length S of the square output.

    Returns:
        The model input, the same for training, batch inference and the service.
    """
    return resize_pixels(decode_for_model(data, image_size), image_size)


def _prepare_in_graph(data: "tf.Tensor", image_size: int) -> "tf.Tensor":
    """:func:`prepare_image` inside a tf.data map (as Python; Pillow releases the GIL)."""
    import tensorflow as tf

    pixels = tf.numpy_function(
        lambda b: prepare_image(b, image_size), [data], tf.uint8, stateful=False
    )
    pixels.set_shape([image_size, image_size, 3])
    return pixels


def without_autotune(dataset: "tf.data.Dataset") -> "tf.data.Dataset":
    """``dataset`` with tf.data's autotuning switched off.

    With autotuning on, every iterator runs a model thread that sleeps between
    optimisation rounds, for up to a minute once it has run a while; destroying the
    iterator (Keras makes one per epoch, for training and for validation) waits for that
    sleep to end. On a 2-core machine that stalled one training epoch in three by about
    18 s, with the process idle (issue #18). The pipelines here are simple enough for fixed
    settings: one parallel decode per core and two batches prefetched.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


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
    bytes), so later epochs skip decoding entirely. Parallelism and prefetch are fixed
    (one decode per core, two batches ahead), not autotuned: see :func:`without_autotune`.

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

    encoded = tf.data.Dataset.from_tensor_slices(tf.constant(list(images), dtype=tf.string))
    decoded = encoded.map(
        lambda b: _prepare_in_graph(b, image_size), num_parallel_calls=_cores(), deterministic=True
    )
    if labels is not None:
        targets = tf.data.Dataset.from_tensor_slices(np.asarray(labels, dtype=np.float32))
        decoded = tf.data.Dataset.zip((decoded, targets))
    if cache:
        decoded = decoded.cache()
    if shuffle:
        decoded = decoded.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    return without_autotune(decoded.batch(batch_size).prefetch(2))
