"""The classifier factory: raw uint8 pixels in, P(PNEUMONIA) out.

The model owns its preprocessing: resizing to the backbone's input size and scaling to
the backbone's expected range are layers, so a saved ``.keras`` file takes the output of
:func:`xray.ml.preprocessing.prepare_image` (or any RGB uint8 image) as is.
A model calibrated on validation data ends in one more layer, temperature scaling
(:func:`with_temperature`), so the served file returns calibrated probabilities.

Backbones:

- ``vgg16``: the seed's VGG16 (ImageNet weights when available), the documented default
  for GPU stacks;
- ``mobilenet_v2``: a light ImageNet backbone for CPU fine-tuning;
- ``compact_cnn``: a small convolutional network trained from scratch, fast enough on
  two CPU cores for the default local run.
"""

import functools
import logging
import math
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np

from xray.logic.settings import TrainConfig

logger = logging.getLogger(__name__)

BACKBONES: tuple[str, ...] = get_args(TrainConfig.model_fields["backbone"].annotation)
_SCALING_MODE = {"vgg16": "caffe", "mobilenet_v2": "tf", "compact_cnn": "unit"}
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@dataclass
class BuiltModel:
    """A model and the facts the rest of the run needs about how it was built.

    Attributes:
        model: The full model: uint8 image in, P(PNEUMONIA) out.
        base: The backbone (a nested model inside ``model``).
        pretrained: Whether ImageNet weights were loaded into the backbone.
        base_frozen: Whether the backbone starts frozen (pretrained weights only).
    """

    model: Any
    base: Any
    pretrained: bool
    base_frozen: bool


def _pixel_scaling_layer() -> type:
    import keras

    @keras.saving.register_keras_serializable(package="xray")
    class PixelScaling(keras.layers.Layer):
        """Scales 0-255 RGB pixels to a backbone's input range.

        Modes: ``unit`` (x / 255), ``tf`` (x / 127.5 - 1), ``caffe`` (RGB to BGR, minus
        the ImageNet channel means), as in ``keras.applications`` preprocess_input.
        """

        def __init__(self, mode: str = "unit", **kwargs: Any) -> None:
            super().__init__(**kwargs)
            if mode not in ("unit", "tf", "caffe"):
                raise ValueError(f"Unknown pixel scaling mode {mode!r}")
            self.mode = mode

        def call(self, inputs: Any) -> Any:
            x = keras.ops.cast(inputs, self.compute_dtype)
            if self.mode == "unit":
                return x / 255.0
            if self.mode == "tf":
                return x / 127.5 - 1.0
            return keras.ops.flip(x, axis=-1) - keras.ops.convert_to_tensor(
                _CAFFE_MEAN_BGR, dtype=self.compute_dtype
            )

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "mode": self.mode}

    return PixelScaling


def pixel_scaling(mode: str, name: str = "pixel_scaling") -> Any:
    """Returns a ``PixelScaling`` layer (registered for ``.keras`` loading on import)."""
    return _pixel_scaling_layer()(mode=mode, name=name)


def _intensity_standardization_layer() -> type:
    import keras

    @keras.saving.register_keras_serializable(package="xray")
    class IntensityStandardization(keras.layers.Layer):
        """Per-image standardisation: each image to mean 128 and standard deviation 64.

        Exposure, brightness and window settings differ between scanners and exports; a
        model that sees every image at one mean and spread cannot key on them. It sits
        after resizing and before the backbone's own scaling, so every backbone (and
        ImageNet weights) gets pixels in the 0-255 range it expects.
        """

        def call(self, inputs: Any) -> Any:
            x = keras.ops.cast(inputs, self.compute_dtype)
            mean = keras.ops.mean(x, axis=(1, 2, 3), keepdims=True)
            std = keras.ops.std(x, axis=(1, 2, 3), keepdims=True)
            return (x - mean) / keras.ops.maximum(std, 1.0) * 64.0 + 128.0

    return IntensityStandardization


def intensity_standardization(name: str = "intensity_standardization") -> Any:
    """Returns an ``IntensityStandardization`` layer (registered for ``.keras`` loading)."""
    return _intensity_standardization_layer()(name=name)


def _acquisition_augmentation_layer() -> type:
    import keras

    @keras.saving.register_keras_serializable(package="xray")
    class AcquisitionAugmentation(keras.layers.Layer):
        """Random acquisition changes in training (identity at inference).

        Per image: gamma (``exp(U(-g, g))``), exposure offset and contrast, a random mix
        between the image and its Gaussian blur that blurs (towards 1) or sharpens
        (towards -1), and Gaussian noise (the same in every channel: a grey image stays
        grey). In the Kermany data PNEUMONIA images are blurrier than NORMAL ones, and
        the official test split's NORMAL images are blurrier and brighter than the
        training NORMALs: without these changes a model can learn "blurry means
        pneumonia" and fail on the next collection.

        Args:
            gamma: Half-range of the log-gamma.
            exposure: Half-range of the grey-level offset (0-255 scale).
            contrast: Half-range of the log contrast factor.
            blur: Half-range of the blur/sharpen mix (1 = fully blurred or 2x detail).
            blur_sigma: Sigma of the Gaussian, as a fraction of the image side.
            noise: Largest noise standard deviation in grey levels.
            seed: Seed of the random draws.
        """

        def __init__(
            self,
            gamma: float = 0.4,
            exposure: float = 25.0,
            contrast: float = 0.3,
            blur: float = 1.0,
            blur_sigma: float = 0.01,
            noise: float = 8.0,
            seed: int | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(**kwargs)
            self.gamma, self.exposure, self.contrast = gamma, exposure, contrast
            self.blur, self.blur_sigma, self.noise, self.seed = blur, blur_sigma, noise, seed
            self.seed_generator = keras.random.SeedGenerator(seed)

        def _blurred(self, x: Any) -> Any:
            side = x.shape[1] or 224
            sigma = max(0.5, self.blur_sigma * side)
            radius = int(math.ceil(3 * sigma))
            taps = [math.exp(-(i * i) / (2 * sigma * sigma)) for i in range(-radius, radius + 1)]
            kernel_1d = keras.ops.convert_to_tensor(
                [t / sum(taps) for t in taps], dtype=self.compute_dtype
            )
            channels = x.shape[-1]
            padded = keras.ops.pad(
                x, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="reflect"
            )
            rows = keras.ops.reshape(kernel_1d, (-1, 1, 1, 1))
            cols = keras.ops.reshape(kernel_1d, (1, -1, 1, 1))
            rows = keras.ops.tile(rows, (1, 1, channels, 1))
            cols = keras.ops.tile(cols, (1, 1, channels, 1))
            out = keras.ops.depthwise_conv(padded, rows, strides=1, padding="valid")
            return keras.ops.depthwise_conv(out, cols, strides=1, padding="valid")

        def call(self, inputs: Any, training: bool | None = None) -> Any:
            if not training:
                return inputs
            x = keras.ops.cast(inputs, self.compute_dtype)
            n = keras.ops.shape(x)[0]

            def draw(half_range: float) -> Any:
                return keras.random.uniform(
                    (n, 1, 1, 1), -half_range, half_range, seed=self.seed_generator
                )

            gamma = keras.ops.exp(draw(self.gamma))
            x = 255.0 * keras.ops.power(keras.ops.clip(x / 255.0, 0.0, 1.0), gamma)
            mean = keras.ops.mean(x, axis=(1, 2, 3), keepdims=True)
            x = (x - mean) * keras.ops.exp(draw(self.contrast)) + mean + draw(self.exposure)
            blurred = self._blurred(x)
            x = blurred + (1.0 - draw(self.blur)) * (x - blurred)
            sigma = (draw(0.5) + 0.5) * self.noise
            # One noise value per pixel, the same in every channel: a detector's noise is in
            # the one grey level, and a grey X-ray stays grey (the served images are grey,
            # R = G = B). Half the random draws of per-channel noise (issue #18).
            shape = keras.ops.shape(x)
            noise = keras.random.normal((shape[0], shape[1], shape[2], 1), seed=self.seed_generator)
            return keras.ops.clip(x + sigma * noise, 0.0, 255.0)

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

        def get_config(self) -> dict[str, Any]:
            return {
                **super().get_config(),
                "gamma": self.gamma,
                "exposure": self.exposure,
                "contrast": self.contrast,
                "blur": self.blur,
                "blur_sigma": self.blur_sigma,
                "noise": self.noise,
                "seed": self.seed,
            }

    return AcquisitionAugmentation


def acquisition_augmentation(seed: int, name: str = "acquisition_augmentation") -> Any:
    """Returns an ``AcquisitionAugmentation`` layer (registered for ``.keras`` loading)."""
    return _acquisition_augmentation_layer()(seed=seed, name=name)


@functools.cache
def _geometric_augmentation_layer() -> type:
    import keras
    from keras import layers

    @keras.saving.register_keras_serializable(package="xray")
    class GeometricAugmentation(keras.layers.Layer):
        """Random rotation, shift and zoom in training (identity at inference), as one
        warp.

        The parameters are drawn by Keras' own ``RandomRotation``, ``RandomTranslation``
        and ``RandomZoom`` (same ranges, seeds and draws as those three layers in a row),
        and their three transforms are composed into one matrix, so each image is
        resampled once instead of three times: a third of the work (issue #18), and one
        bilinear interpolation's smoothing instead of three. The corners a rotation
        would empty are filled with black (``fill_mode="constant"``), as before.

        Args:
            rotation: Largest rotation, as a fraction of a full turn.
            translation: Largest shift, as a fraction of the side (both axes).
            zoom: Largest zoom in or out, as a fraction.
            seed: Seed of the rotation's draws (``seed + 1`` shift, ``seed + 2`` zoom).
        """

        def __init__(
            self,
            rotation: float = 0.04,
            translation: float = 0.05,
            zoom: float = 0.1,
            seed: int | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(**kwargs)
            self.rotation, self.translation = rotation, translation
            self.zoom, self.seed = zoom, seed
            offset = (lambda i: None) if seed is None else (lambda i: seed + i)
            self._rotate = layers.RandomRotation(rotation, fill_mode="constant", seed=offset(0))
            self._shift = layers.RandomTranslation(
                translation, translation, fill_mode="constant", seed=offset(1)
            )
            self._zoom = layers.RandomZoom(zoom, fill_mode="constant", seed=offset(2))

        def build(self, input_shape: Any) -> None:
            for layer in (self._rotate, self._shift, self._zoom):
                layer.build(input_shape)
            self.built = True

        def matrices(self, images: Any) -> tuple[Any, Any, Any, Any]:
            """Draws one rotation, shift and zoom per image: the three ``[N, 8]``
            transforms (Keras' ``affine_transform`` form, output to input coordinates)
            and their composition, the one applied."""
            ops = keras.ops
            shape = ops.shape(images)
            n, height, width = shape[0], shape[1], shape[2]
            rotation = self._rotate.get_random_transformation(images, training=True)
            shift = self._shift.get_random_transformation(images, training=True)
            zoom = self._zoom.get_random_transformation(images, training=True)
            # Each layer's own matrix, as its call would apply it (Keras is pinned in
            # uv.lock; the unit tests compare these with the layers' draws).
            r = ops.cast(ops.reshape(rotation["rotation_matrix"], (n, 8)), "float32")
            t = self._shift._get_translation_matrix(shift["translations"])
            zooms = ops.concatenate([zoom["width_zoom"], zoom["height_zoom"]], axis=1)
            z = self._zoom._get_zoom_matrix(ops.cast(zooms, "float32"), height, width)
            ones = ops.ones((n, 1))

            def square(m: Any) -> Any:
                return ops.reshape(ops.concatenate([m, ones], axis=1), (n, 3, 3))

            # Three warps in a row: out(p) = in(R(T(Z p))), so the one transform is R·T·Z.
            composed = ops.matmul(ops.matmul(square(r), square(t)), square(z))
            composed = ops.reshape(composed, (n, 9))[:, :8]
            return r, t, z, composed

        def call(self, inputs: Any, training: bool | None = None) -> Any:
            if not training:
                return inputs
            x = keras.ops.cast(inputs, self.compute_dtype)
            return keras.ops.image.affine_transform(
                x,
                self.matrices(x)[3],
                interpolation="bilinear",
                fill_mode="constant",
                fill_value=0,
            )

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

        def get_config(self) -> dict[str, Any]:
            return {
                **super().get_config(),
                "rotation": self.rotation,
                "translation": self.translation,
                "zoom": self.zoom,
                "seed": self.seed,
            }

    return GeometricAugmentation


def geometric_augmentation(seed: int, name: str = "geometric_augmentation") -> Any:
    """Returns a :class:`GeometricAugmentation` layer (registered for ``.keras`` loading)."""
    return _geometric_augmentation_layer()(seed=seed, name=name)


@functools.cache
def _fused_batch_norm_layer() -> type:
    import keras

    @keras.saving.register_keras_serializable(package="xray")
    class FusedBatchNormalization(keras.layers.BatchNormalization):
        """Keras' ``BatchNormalization`` with TensorFlow's fused kernel in training.

        In training mode Keras 3 normalises with separate moment, normalisation and
        gradient ops, several passes over every activation; TensorFlow's
        ``FusedBatchNormV3`` (oneDNN on CPU, cuDNN on GPU) does the forward pass in one
        and its gradient in one. That was 40 % of a training step of ``compact_cnn`` on
        CPU (issue #18). The arithmetic is the same: the batch's mean and biased
        variance normalise it, the moving statistics follow Keras' update
        ``moving * momentum + batch * (1 - momentum)`` with the biased variance, and at
        inference the layer is Keras' own. Cases the fused kernel does not cover (a mask,
        renormalisation, synchronised statistics, another axis than the last of a 4-D
        input, no scale or centre) run Keras' code unchanged.
        """

        def _fusable(self, inputs: Any, mask: Any) -> bool:
            rank = len(inputs.shape)
            return (
                keras.backend.backend() == "tensorflow"
                and rank == 4
                and self.axis in (-1, rank - 1)
                and mask is None
                and not self.renorm
                and not getattr(self, "synchronized", False)
                and self.scale
                and self.center
            )

        def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
            if not (training and self.trainable) or not self._fusable(inputs, mask):
                return super().call(inputs, training=training, mask=mask)
            import tensorflow as tf

            x = tf.cast(inputs, tf.float32)
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x,
                tf.cast(self.gamma, tf.float32),
                tf.cast(self.beta, tf.float32),
                epsilon=self.epsilon,
                data_format="NHWC",
                is_training=True,
            )
            # The kernel returns the unbiased (n - 1) variance; Keras' moving statistics
            # use the biased one, as the normalisation itself does.
            n = tf.cast(tf.size(x) // tf.shape(x)[-1], tf.float32)
            variance = variance * (n - 1.0) / tf.maximum(n, 1.0)
            momentum = tf.cast(self.momentum, tf.float32)
            self.moving_mean.assign(
                tf.cast(self.moving_mean, tf.float32) * momentum + mean * (1.0 - momentum)
            )
            self.moving_variance.assign(
                tf.cast(self.moving_variance, tf.float32) * momentum + variance * (1.0 - momentum)
            )
            return tf.cast(y, self.compute_dtype)

    return FusedBatchNormalization


def fused_batch_normalization(name: str, momentum: float = 0.99) -> Any:
    """Returns a :class:`FusedBatchNormalization` layer (registered for ``.keras`` loading)."""
    return _fused_batch_norm_layer()(momentum=momentum, name=name)


def _temperature_scaling_layer() -> type:
    import keras

    @keras.saving.register_keras_serializable(package="xray")
    class TemperatureScaling(keras.layers.Layer):
        """Rescales probabilities: ``sigmoid(logit(p) / temperature)``.

        ``temperature`` is a fixed configuration value (fitted on validation data by
        :func:`xray.logic.calibration.fit_temperature`), not a weight; probabilities are
        clipped to ``[EPSILON, 1 - EPSILON]`` first
        (:data:`xray.logic.constants.PROBABILITY_EPSILON`, the value the fit uses).
        """

        def __init__(self, temperature: float = 1.0, **kwargs: Any) -> None:
            kwargs.setdefault("dtype", "float32")
            kwargs["trainable"] = False
            super().__init__(**kwargs)
            temperature = float(temperature)
            if not (math.isfinite(temperature) and temperature > 0):
                raise ValueError(f"The temperature must be a positive number, not {temperature}.")
            self.temperature = temperature

        def call(self, inputs: Any) -> Any:
            from xray.logic.constants import PROBABILITY_EPSILON as EPSILON

            p = keras.ops.clip(keras.ops.cast(inputs, self.compute_dtype), EPSILON, 1 - EPSILON)
            logits = keras.ops.log(p) - keras.ops.log1p(-p)
            return keras.ops.sigmoid(logits / self.temperature)

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "temperature": self.temperature}

    return TemperatureScaling


def temperature_scaling(temperature: float, name: str = "temperature") -> Any:
    """Returns a ``TemperatureScaling`` layer (registered for ``.keras`` loading on import)."""
    return _temperature_scaling_layer()(temperature=temperature, name=name)


def register_custom_objects() -> None:
    """Registers the custom layers so ``keras.saving.load_model`` can rebuild a model."""
    _pixel_scaling_layer()
    _temperature_scaling_layer()
    _intensity_standardization_layer()
    _acquisition_augmentation_layer()
    _fused_batch_norm_layer()
    _geometric_augmentation_layer()


def _compact_cnn(image_size: int) -> Any:
    import keras
    from keras import layers

    inputs = keras.Input((image_size, image_size, 3), name="scaled_image")
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = fused_batch_normalization(momentum=0.9, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for block, filters in enumerate((32, 64, 128, 256), start=1):
        for conv in (1, 2):
            x = layers.Conv2D(
                filters, 3, padding="same", use_bias=False, name=f"block{block}_conv{conv}"
            )(x)
            x = fused_batch_normalization(momentum=0.9, name=f"block{block}_bn{conv}")(x)
            x = layers.ReLU(name=f"block{block}_relu{conv}")(x)
        x = layers.MaxPooling2D(name=f"block{block}_pool")(x)
    return keras.Model(inputs, x, name="compact_cnn")


def _imagenet_backbone(backbone: str, image_size: int, weights: str | None) -> tuple[Any, bool]:
    """Builds an ImageNet backbone, falling back to random init if weights can't be had."""
    import keras

    factory = {
        "vgg16": keras.applications.VGG16,
        "mobilenet_v2": keras.applications.MobileNetV2,
    }[backbone]
    shape = (image_size, image_size, 3)
    if weights == "imagenet":
        try:
            return factory(include_top=False, weights="imagenet", input_shape=shape), True
        except Exception as exc:  # noqa: BLE001 - offline, proxy, corrupt cache...
            logger.warning(
                "ImageNet weights for %s are not available (%s: %s). Training from RANDOM "
                "initialisation instead; expect lower accuracy. To use pretrained weights, "
                "put the Keras weight file in ~/.keras/models/ or allow the download.",
                backbone,
                type(exc).__name__,
                str(exc).splitlines()[0][:200] if str(exc) else "",
            )
    return factory(include_top=False, weights=None, input_shape=shape), False


def build_model(config: TrainConfig | None = None, **settings: Any) -> BuiltModel:
    """Builds the classifier from the ``train_model`` settings.

    Args:
        config: The settings (:class:`xray.logic.settings.TrainConfig`; its defaults when None).
            The model uses ``backbone``, ``image_size`` (every image is resized to it
            inside the model), ``weights`` (``imagenet``: pretrained backbone weights when
            the Keras cache has them or they can be downloaded; ``compact_cnn`` has
            none), ``freeze_base`` (``auto`` freezes exactly when pretrained weights were
            loaded: a frozen random backbone learns nothing), ``augment`` and
            ``augment_acquisition`` (random layers, active only in training),
            ``standardize_intensity``, ``dropout`` and ``seed``.
        **settings: Single settings that replace those of ``config`` (validated, so a
            misspelt name is an error), e.g. ``build_model(backbone="vgg16")``.

    Returns:
        The model with its backbone and how it was built.

    Raises:
        ValueError: For an unknown backbone, freeze setting or setting name.
    """
    config = TrainConfig.model_validate({**(config or TrainConfig()).model_dump(), **settings})
    backbone, image_size, seed = config.backbone, config.image_size, config.seed
    import keras
    from keras import layers

    if backbone == "compact_cnn":
        base, pretrained = _compact_cnn(image_size), False
    else:
        base, pretrained = _imagenet_backbone(backbone, image_size, config.weights)
    frozen = pretrained if config.freeze_base == "auto" else bool(config.freeze_base)
    base.trainable = not frozen

    inputs = keras.Input((None, None, 3), dtype="uint8", name="image")
    # An explicit training=False, recorded in the model and its .keras file (fit's
    # training=True still overrides it): see _pin_inference_default.
    x = layers.Resizing(image_size, image_size, interpolation="bilinear", name="resize")(
        inputs, training=False
    )
    if config.augment:
        x = keras.Sequential(
            [
                geometric_augmentation(seed=seed),
                layers.RandomContrast(0.15, seed=seed + 3),
            ],
            name="augmentation",
        )(x)
        if config.augment_acquisition:
            x = acquisition_augmentation(seed=seed + 4)(x)
    if config.standardize_intensity:
        x = intensity_standardization()(x)
    x = pixel_scaling(_SCALING_MODE[backbone])(x)
    # A pretrained backbone keeps its BatchNorm statistics (inference mode) even when it
    # is fine-tuned, as the Keras transfer-learning guide recommends. Keras 3.15 replaces
    # the training=False recorded here with fit's training=True (fixed upstream by
    # keras-team/keras#23364, not in the pinned 3.15.1), so the batch norm layers are
    # also frozen: a frozen one runs in inference mode whatever it is told.
    x = base(x, training=False) if pretrained else base(x)
    if pretrained:
        for layer in base._flatten_layers(include_self=False):
            if isinstance(layer, layers.BatchNormalization):
                layer.trainable = False
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(config.dropout, seed=seed, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="prediction", dtype="float32")(x)
    model = keras.Model(inputs, outputs, name=f"pneumonia_{backbone}")
    return BuiltModel(model=model, base=base, pretrained=pretrained, base_frozen=frozen)


def unfreeze_last_block(base: Any, backbone: str) -> int:
    """Makes the backbone's last block trainable (BatchNorm layers stay frozen).

    Args:
        base: The backbone model.
        backbone: Its name, to know where the last block starts.

    Returns:
        The number of layers made trainable.
    """
    from keras import layers

    base.trainable = True
    prefix = {"vgg16": "block5_", "mobilenet_v2": "block_16_", "compact_cnn": "block4_"}[backbone]
    start = next(
        (i for i, layer in enumerate(base.layers) if layer.name.startswith(prefix)),
        len(base.layers),
    )
    count = 0
    for i, layer in enumerate(base.layers):
        trainable = i >= start and not isinstance(layer, layers.BatchNormalization)
        layer.trainable = trainable
        count += int(trainable)
    return count


def _temperature_layers(model: Any) -> list[Any]:
    # By class name: each call of the factory defines a new class, so isinstance can't tell.
    return [layer for layer in model.layers if type(layer).__name__ == "TemperatureScaling"]


def with_temperature(model: Any, temperature: float) -> Any:
    """The model with a ``TemperatureScaling`` layer named ``temperature`` on its output.

    The new functional model shares every layer (and weight) of ``model`` and adds one,
    so it is still a chain that :func:`xray.ml.gradcam.gradcam` can replay, still has the
    ``resize`` layer of :func:`model_image_size`, and saves and loads as ``.keras``.

    Args:
        model: A model built by :func:`build_model` (P(PNEUMONIA) out), not yet scaled.
        temperature: T > 0, e.g. from :func:`xray.logic.calibration.temperature_to_use`.

    Returns:
        A new ``keras.Model`` with the same name, input and calibrated P(PNEUMONIA) out.

    Raises:
        ValueError: When ``model`` already ends in a temperature layer (fit the
            temperature on the uncalibrated model and wrap that one), or for a
            temperature that is not a positive number.
    """
    import keras

    if _temperature_layers(model):
        raise ValueError(
            f"Model {model.name} already has a temperature scaling layer; wrap the "
            "uncalibrated model instead."
        )
    outputs = temperature_scaling(temperature)(model.outputs[0])
    return keras.Model(model.inputs, outputs, name=model.name)


def model_temperature(model: Any) -> float:
    """The temperature of the model's ``TemperatureScaling`` layer; 1.0 without one."""
    found = _temperature_layers(model)
    return float(found[-1].temperature) if found else 1.0


def _conv_batch_norm_pairs(model: Any) -> dict[int, tuple[Any, Any]]:
    """``id(conv) -> (conv, batch_norm)`` for every batch norm layer (Keras' or
    :class:`FusedBatchNormalization`) whose only input is a ``Conv2D`` or
    ``DepthwiseConv2D`` with no activation, channels last, that feeds nothing else."""
    from keras import layers

    pairs: dict[int, tuple[Any, Any]] = {}
    for layer in model._flatten_layers(include_self=False):  # nested models' layers too
        if not isinstance(layer, layers.BatchNormalization) or len(layer._inbound_nodes) != 1:
            continue
        history = getattr(layer.input, "_keras_history", None)
        conv = history.operation if history is not None else None
        if (
            isinstance(conv, layers.Conv2D | layers.DepthwiseConv2D)
            and len(conv._inbound_nodes) == 1
            and len(conv._outbound_nodes) == 1
            and conv.data_format == "channels_last"
            and conv.activation.__name__ == "linear"
            and layer.axis in (-1, 3)
        ):
            pairs[id(conv)] = (conv, layer)
    return pairs


def _folded_weights(conv: Any, batch_norm: Any) -> tuple[np.ndarray, np.ndarray]:
    """The kernel and bias of ``conv`` followed by ``batch_norm`` at inference, as one
    convolution: ``y = (conv(x) + b - mean) * gamma / sqrt(var + eps) + beta``."""
    weights = conv.get_weights()
    kernel = weights[0].astype(np.float64)
    out_channels = batch_norm.moving_mean.shape[0]
    bias = weights[1].astype(np.float64) if conv.use_bias else np.zeros(out_channels)
    gamma = np.asarray(batch_norm.gamma, np.float64) if batch_norm.scale else 1.0
    beta = np.asarray(batch_norm.beta, np.float64) if batch_norm.center else 0.0
    mean = np.asarray(batch_norm.moving_mean, np.float64)
    scale = gamma / np.sqrt(np.asarray(batch_norm.moving_variance, np.float64) + batch_norm.epsilon)
    # Conv2D: [kh, kw, in, out]; DepthwiseConv2D: [kh, kw, in, multiplier], out = in * multiplier.
    kernel = kernel * scale.reshape(kernel.shape[2:] if kernel.shape[-1] != out_channels else -1)
    return kernel.astype(np.float32), ((bias - mean) * scale + beta).astype(np.float32)


def inference_model(model: Any) -> Any:
    """An inference copy of ``model`` with every batch norm that follows a convolution
    folded into it (the convolution's kernel and bias absorb the normalisation).

    At inference a batch norm is a fixed per-channel scale and shift, so the convolution
    before it can apply them; the copy skips one pass over every activation and lets
    TensorFlow fuse convolution, bias and ReLU. Predictions equal the model's up to
    float rounding (the parity test holds them within 1e-4; issue #18). Layer names,
    the input and the outputs are those of ``model``; layers other than the folded
    pairs are copies with the same weights. Use it for forward passes only: the copy
    is not for training, saving or Grad-CAM. A model without such a pair comes back
    as it is.
    """
    import keras
    from keras import layers

    pairs = _conv_batch_norm_pairs(model)
    if not pairs:
        return model
    folded_norms = {id(bn) for _, bn in pairs.values()}
    identities: set[int] = set()

    def clone(layer: Any) -> Any:
        if id(layer) in folded_norms:
            identity = layers.Identity(name=layer.name)
            identities.add(id(identity))
            return identity
        config = layer.get_config()
        if id(layer) in pairs:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        if id(layer) in identities:  # a batch norm's call arguments (mask, training)
            return layer(args[0])
        return layer(*args, **kwargs)

    copy = keras.models.clone_model(model, clone_function=clone, call_function=call, recursive=True)

    def copy_weights(original: Any, cloned: Any) -> None:
        for layer in original.layers:
            if not layer.weights or id(layer) in folded_norms:
                continue  # input layers, activations, pooling: nothing to copy
            target = cloned.get_layer(layer.name)
            if id(layer) in pairs:
                target.set_weights(list(_folded_weights(*pairs[id(layer)])))
            elif hasattr(layer, "layers"):
                copy_weights(layer, target)
            else:
                target.set_weights(layer.get_weights())

    copy_weights(model, copy)
    return copy


def _leaks_training_default(layer: Any) -> bool:
    """Whether ``layer.call`` defaults ``training`` to a value (Keras' image
    preprocessing layers, ``Resizing`` among them, default it to ``True``)."""
    import inspect

    parameter = inspect.signature(layer.call).parameters.get("training")
    return parameter is not None and parameter.default not in (None, inspect.Parameter.empty)


def _pin_inference_default(model: Any) -> Any:
    """``model`` with every top-level layer that defaults ``training`` to ``True``
    called with an explicit ``training=False`` (a rebuilt copy, same weights), or
    ``model`` itself when there is none to pin.

    Keras 3.15 hands a layer's own ``training`` default on to every later layer of the
    same call (fixed upstream by keras-team/keras#23166, not in the pinned 3.15.1): in
    a model that starts with ``Resizing``, ``model(x)`` without ``training=False`` ran
    the batch norms on the batch's own statistics, overwrote their moving statistics and
    applied the augmentation, so the answer depended on the other images in the batch.
    A value passed explicitly is handed on instead, and ``fit``'s ``training=True``
    still overrides it. :func:`build_model` records it from the start; this pins
    models saved before it did.
    """
    import keras

    def unpinned(layer: Any) -> bool:
        return _leaks_training_default(layer) and any(
            "training" not in node.arguments.kwargs for node in layer._inbound_nodes
        )

    if not any(unpinned(layer) for layer in model.layers):
        return model

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        if _leaks_training_default(layer):
            kwargs.setdefault("training", False)
        return layer(*args, **kwargs)

    copy = keras.models.clone_model(model, call_function=call)
    copy.set_weights(model.get_weights())
    return copy


def load_model(path: str) -> Any:
    """Loads a ``.keras`` file written by this project (custom layers registered).

    A model saved before its ``resize`` layer was called with ``training=False`` comes
    back with it pinned (:func:`_pin_inference_default`), so ``model(x)`` is inference.
    """
    import keras

    register_custom_objects()
    return _pin_inference_default(keras.saving.load_model(path, compile=False))


def model_image_size(model: Any) -> int:
    """The side length the model resizes to (its ``resize`` layer), i.e. its input size."""
    return int(model.get_layer("resize").height)


@dataclass(frozen=True)
class KerasModelFile:
    """A trained model as the bytes of its ``.keras`` file.

    Steps pass this instead of a ``keras.Model``: defining the pipeline, or re-running it
    from cache, then never imports TensorFlow, and packaging copies the file as it is.

    Attributes:
        data: The ``.keras`` file's bytes.
        image_size: The side length the model resizes images to.
    """

    data: bytes
    image_size: int

    @classmethod
    def from_model(cls, model: Any) -> "KerasModelFile":
        """Saves a built model (see :func:`build_model`) to ``.keras`` bytes."""
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.keras"
            model.save(path)
            return cls(data=path.read_bytes(), image_size=model_image_size(model))

    def load(self) -> Any:
        """Rebuilds the ``keras.Model`` (uncompiled, custom layers registered)."""
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.keras"
            path.write_bytes(self.data)
            return load_model(str(path))
