from pathlib import Path

import keras
import numpy as np
import pytest

from xray.ml.model import (
    build_model,
    fused_batch_normalization,
    geometric_augmentation,
    inference_model,
    load_model,
    model_image_size,
    model_temperature,
    pixel_scaling,
    unfreeze_last_block,
    with_temperature,
)


def test_compact_cnn_takes_raw_uint8_of_any_size() -> None:
    built = build_model(backbone="compact_cnn", image_size=48, weights=None)
    assert built.pretrained is False and built.base_frozen is False
    for shape in [(2, 48, 48, 3), (1, 100, 70, 3)]:
        out = built.model.predict(
            np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8), verbose=0
        )
        assert out.shape == (shape[0], 1) and np.all((out >= 0) & (out <= 1))
    assert model_image_size(built.model) == 48


def test_imagenet_weights_unavailable_falls_back_with_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", offline)
    built = build_model(backbone="mobilenet_v2", image_size=64, weights="imagenet")
    assert built.pretrained is False
    assert built.base_frozen is False  # auto: a random backbone is trained, not frozen
    assert "RANDOM" in caplog.text and "mobilenet_v2" in caplog.text


def test_freeze_and_unfreeze_last_block() -> None:
    built = build_model(
        backbone="vgg16", image_size=32, weights=None, freeze_base=True, augment=False
    )
    assert built.base_frozen and not built.base.trainable
    count = unfreeze_last_block(built.base, "vgg16")
    trainable = [layer.name for layer in built.base.layers if layer.trainable and layer.weights]
    assert count >= 3 and trainable == ["block5_conv1", "block5_conv2", "block5_conv3"]


@pytest.mark.parametrize("backbone", ["vgg16", "mobilenet_v2"])
def test_pixel_scaling_matches_keras_preprocess_input(backbone: str) -> None:
    x = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    app = {"vgg16": keras.applications.vgg16, "mobilenet_v2": keras.applications.mobilenet_v2}[
        backbone
    ]
    mode = {"vgg16": "caffe", "mobilenet_v2": "tf"}[backbone]
    ours = keras.ops.convert_to_numpy(pixel_scaling(mode)(x))
    np.testing.assert_allclose(ours, app.preprocess_input(x.copy()), rtol=1e-5, atol=1e-4)


def test_keras_file_roundtrip(tmp_path: Path) -> None:
    built = build_model(backbone="compact_cnn", image_size=40, weights=None)
    x = np.random.default_rng(2).integers(0, 255, (3, 40, 40, 3), dtype=np.uint8)
    path = tmp_path / "m.keras"
    built.model.save(path)
    again = load_model(str(path))
    np.testing.assert_allclose(
        again.predict(x, verbose=0), built.model.predict(x, verbose=0), atol=1e-6
    )
    norms = [layer for layer in again.get_layer("compact_cnn").layers if "_bn" in layer.name]
    assert len(norms) == 9
    assert {type(layer).__name__ for layer in norms} == {"FusedBatchNormalization"}


def _twin_norms() -> tuple[keras.layers.Layer, keras.layers.Layer]:
    rng = np.random.default_rng(3)
    keras_bn = keras.layers.BatchNormalization(momentum=0.9)
    fused = fused_batch_normalization(momentum=0.9, name="fused")
    for layer in (keras_bn, fused):
        layer.build((None, 6, 5, 4))
    weights = [
        rng.uniform(0.5, 2, 4),  # gamma
        rng.normal(0, 1, 4),  # beta
        rng.normal(0, 1, 4),  # moving mean
        rng.uniform(0.5, 2, 4),  # moving variance
    ]
    keras_bn.set_weights([w.astype("float32") for w in weights])
    fused.set_weights([w.astype("float32") for w in weights])
    return keras_bn, fused


def test_fused_batch_norm_trains_like_keras() -> None:
    """The fused kernel (issue #18's training speed-up) is Keras' BatchNormalization in
    arithmetic: the same outputs, moving statistics and gradients in training, the same
    layer at inference."""
    import tensorflow as tf

    keras_bn, fused = _twin_norms()
    x = tf.constant(np.random.default_rng(4).normal(3, 2, (3, 6, 5, 4)).astype("float32"))
    results = []
    for layer in (keras_bn, fused):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.range(4, dtype=tf.float32)) + tf.reduce_sum(y**2)
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        results.append((y, grads, layer.moving_mean, layer.moving_variance))
    (y1, g1, m1, v1), (y2, g2, m2, v2) = results
    np.testing.assert_allclose(y2, y1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m2, m1, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(v2, v1, rtol=1e-5, atol=1e-6)
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(b), a, rtol=1e-4, atol=1e-4)
    assert not np.allclose(m1, 0)  # the moving statistics did move
    np.testing.assert_allclose(
        fused(x, training=False), keras_bn(x, training=False), rtol=1e-6, atol=1e-6
    )


def test_fused_batch_norm_falls_back_where_the_kernel_does_not_apply() -> None:
    x = np.random.default_rng(5).normal(0, 1, (2, 6, 4)).astype("float32")  # 3-D input
    layer = fused_batch_normalization(momentum=0.9, name="fused_3d")
    reference = keras.layers.BatchNormalization(momentum=0.9)
    np.testing.assert_allclose(
        layer(x, training=True), reference(x, training=True), rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(layer.moving_variance, reference.moving_variance, rtol=1e-6)


def test_unknown_backbone() -> None:
    with pytest.raises(ValueError, match="backbone"):
        build_model(backbone="resnet")


def test_geometric_augmentation_is_the_three_keras_warps_in_one() -> None:
    """One warp with the composed transform equals Keras' rotation, shift and zoom
    applied one after another with the same draws (issue #18), checked on a linear
    ramp, which bilinear interpolation reproduces exactly: the composition's order and
    signs are right. Away from training it is the identity."""
    import tensorflow as tf

    layer = geometric_augmentation(seed=7)
    side = 64
    yy, xx = np.mgrid[0:side, 0:side].astype("float32")
    ramp = np.stack([2 * xx + 3 * yy, 5 * xx - yy + 60, yy], axis=-1)
    images = tf.constant(np.stack([ramp] * 4))
    r, t, z, composed = layer.matrices(images)
    sequential = images
    for m in (r, t, z):
        sequential = keras.ops.image.affine_transform(
            sequential, m, interpolation="bilinear", fill_mode="constant", fill_value=0
        )
    once = keras.ops.image.affine_transform(
        images, composed, interpolation="bilinear", fill_mode="constant", fill_value=0
    )
    inner = slice(side // 4, 3 * side // 4)  # inside the image at every intermediate step
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(once)[:, inner, inner],
        keras.ops.convert_to_numpy(sequential)[:, inner, inner],
        atol=2e-3,
    )
    assert not np.allclose(keras.ops.convert_to_numpy(once), ramp)  # it did move the images
    assert len({tuple(np.round(row, 4)) for row in keras.ops.convert_to_numpy(composed)}) == 4
    np.testing.assert_array_equal(layer(images, training=False), images)


def test_geometric_augmentation_draws_like_the_keras_layers() -> None:
    """The same seeds give the same rotation, shift and zoom as the three Keras layers
    the model used before, so the augmentation's distribution is unchanged."""
    import tensorflow as tf

    images = tf.zeros((3, 32, 32, 3))
    r, t, z, _ = geometric_augmentation(seed=11).matrices(images)
    rotation = keras.layers.RandomRotation(0.04, fill_mode="constant", seed=11)
    shift = keras.layers.RandomTranslation(0.05, 0.05, fill_mode="constant", seed=12)
    zoom = keras.layers.RandomZoom(0.1, fill_mode="constant", seed=13)
    np.testing.assert_allclose(
        r, rotation.get_random_transformation(images)["rotation_matrix"], atol=1e-6
    )
    dx_dy = keras.ops.convert_to_numpy(shift.get_random_transformation(images)["translations"])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(t)[:, [2, 5]], -dx_dy, atol=1e-6)
    assert np.all(np.abs(dx_dy) <= 0.05 * 32 + 1e-6)
    zooms = keras.ops.convert_to_numpy(zoom.get_random_transformation(images)["height_zoom"])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(z)[:, 4], zooms.reshape(-1), atol=1e-6)


def test_acquisition_augmentation_keeps_a_grey_image_grey() -> None:
    """Its noise is one value per pixel in every channel, as the grey X-rays the model
    serves have (R = G = B): a grey training image stays grey, yet it did change."""
    from xray.ml.model import acquisition_augmentation

    grey = np.random.default_rng(6).uniform(0, 255, (2, 40, 40, 1)).astype("float32")
    images = np.repeat(grey, 3, axis=-1)
    out = keras.ops.convert_to_numpy(acquisition_augmentation(seed=3)(images, training=True))
    np.testing.assert_allclose(out[..., 1], out[..., 0], atol=1e-4)
    np.testing.assert_allclose(out[..., 2], out[..., 0], atol=1e-4)
    assert np.abs(out - images).mean() > 1.0


SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"


def _randomize_batch_norms(model: keras.Model, rng: np.random.Generator) -> int:
    """Gives every batch norm layer non-trivial statistics and scale (a fresh layer's
    identity statistics would hide a wrong fold); returns how many there are."""
    norms = [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    for layer in norms:
        c = layer.moving_mean.shape[0]
        layer.moving_mean.assign(rng.normal(0, 0.5, c))
        layer.moving_variance.assign(rng.uniform(0.3, 3.0, c))
        if layer.scale:
            layer.gamma.assign(rng.uniform(0.5, 1.5, c))
        if layer.center:
            layer.beta.assign(rng.normal(0, 0.2, c))
    return len(norms)


def _sample_images(size: int, count: int) -> np.ndarray:
    from xray.ml.preprocessing import prepare_image

    files = sorted((SAMPLE / "NORMAL").glob("*"))[: count // 2]
    files += sorted((SAMPLE / "PNEUMONIA").glob("*"))[: count - len(files)]
    return np.stack([prepare_image(f.read_bytes(), size) for f in files])


@pytest.mark.parametrize(
    ("backbone", "size", "pairs"), [("compact_cnn", 160, 9), ("mobilenet_v2", 96, 52)]
)
def test_inference_model_folds_every_conv_batch_norm_pair(
    backbone: str, size: int, pairs: int
) -> None:
    """Every convolution + batch norm pair (depthwise ones too) is folded, and the copy's
    embedding equals the model's up to float rounding."""
    from xray.ml.guard import embedding_model

    model = build_model(backbone=backbone, image_size=size, weights=None).model
    total = _randomize_batch_norms(model, np.random.default_rng(3))
    fast = inference_model(model)
    layers = list(fast._flatten_layers(include_self=False))
    folded = [layer for layer in layers if isinstance(layer, keras.layers.Identity)]
    left = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(folded) == pairs and len(left) == total - pairs
    images = _sample_images(size, 32)
    reference = embedding_model(model, "pool").predict(images, batch_size=16, verbose=0)
    ours = embedding_model(fast, "pool").predict(images, batch_size=16, verbose=0)
    scale = float(np.abs(reference[1]).max())
    assert scale > 0.1 and np.abs(ours[1] - reference[1]).max() <= 1e-5 * scale
    assert np.abs(ours[0] - reference[0]).max() <= 1e-4
    assert model_image_size(fast) == size and fast.name == model.name


def test_inference_model_parity_on_held_out_xrays_after_training() -> None:
    """Issue #18's parity test: a trained model and its folded copy give the same
    P(PNEUMONIA), |dp| <= 1e-4, on real X-rays it was not trained on."""
    size = 64
    normal = sorted((SAMPLE / "NORMAL").glob("*"))
    pneumonia = sorted((SAMPLE / "PNEUMONIA").glob("*"))
    from xray.ml.preprocessing import prepare_image

    images = np.stack([prepare_image(f.read_bytes(), size) for f in normal + pneumonia])
    labels = np.array([0.0] * len(normal) + [1.0] * len(pneumonia), np.float32)
    order = np.random.default_rng(0).permutation(len(images))
    train, test = order[:200], order[200:]
    keras.utils.set_random_seed(0)
    model = build_model(backbone="compact_cnn", image_size=size, weights=None, augment=False).model
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
    model.fit(images[train], labels[train], epochs=4, batch_size=16, verbose=0)
    reference = model.predict(images[test], verbose=0).reshape(-1)
    ours = inference_model(model).predict(images[test], verbose=0).reshape(-1)
    assert len(test) >= 100 and reference.std() > 0.05  # a model that tells images apart
    assert np.abs(ours - reference).max() <= 1e-4


def test_inference_model_keeps_a_model_without_batch_norm() -> None:
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    assert inference_model(model) is model


def _moving_statistics(model: keras.Model) -> list[np.ndarray]:
    return [
        keras.ops.convert_to_numpy(variable).copy()
        for layer in model._flatten_layers(include_self=False)
        if hasattr(layer, "moving_variance")
        for variable in (layer.moving_mean, layer.moving_variance)
    ]


def _assert_call_is_inference(model: keras.Model, x: np.ndarray) -> None:
    """``model(x)`` without ``training`` is inference: the answer of
    ``training=False``, independent of the rest of the batch, and the moving
    statistics stay as they are."""
    before = _moving_statistics(model)
    plain = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(plain, model(x, training=False), atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x[:1])), plain[:1], atol=1e-6)
    for a, b in zip(before, _moving_statistics(model), strict=True):
        np.testing.assert_array_equal(a, b)


def test_model_call_without_training_argument_is_inference(tmp_path: Path) -> None:
    """Keras 3.15 hands ``Resizing``'s own ``training=True`` default on to the later
    layers of a call (keras-team/keras#23166): ``model(x)``, the usual way to use a
    loaded model, ran the batch norms in training mode. The model built here, and its
    ``.keras`` file, answer ``model(x)`` as inference; training still trains."""
    built = build_model(backbone="compact_cnn", image_size=40, weights=None, seed=1)
    model = built.model
    _randomize_batch_norms(model, np.random.default_rng(6))
    x = np.random.default_rng(7).integers(0, 255, (4, 40, 40, 3), dtype=np.uint8)
    _assert_call_is_inference(model, x)
    path = tmp_path / "m.keras"
    model.save(path)
    again = load_model(str(path))
    assert again.get_layer("resize") is not None
    _assert_call_is_inference(again, x)
    before = _moving_statistics(again)
    again(x, training=True)  # what fit does: the batch norms still learn
    assert not np.allclose(before[0], _moving_statistics(again)[0])


@pytest.mark.parametrize("temperature", [None, 2.0])
def test_load_model_pins_inference_in_a_model_saved_before(
    tmp_path: Path, temperature: float | None
) -> None:
    """A ``.keras`` file saved before ``resize`` recorded ``training=False`` (the
    production model of an earlier release, calibrated or not) comes back from
    :func:`load_model` with ``model(x)`` as inference and the same predictions."""
    built = build_model(backbone="compact_cnn", image_size=40, weights=None, seed=1)
    model = built.model
    _randomize_batch_norms(model, np.random.default_rng(6))
    if temperature is not None:
        model = with_temperature(model, temperature)

    def unpinned(layer: keras.layers.Layer, *args: object, **kwargs: object) -> object:
        if layer.name == "resize":
            kwargs.pop("training", None)  # how build_model called it before
        return layer(*args, **kwargs)

    old = keras.models.clone_model(model, call_function=unpinned)
    old.set_weights(model.get_weights())
    x = np.random.default_rng(8).integers(0, 255, (4, 40, 40, 3), dtype=np.uint8)
    reference = keras.ops.convert_to_numpy(old(x, training=False))
    leaked = keras.ops.convert_to_numpy(old(x))  # the Keras defect this guards against
    assert np.abs(leaked - reference).max() > 1e-3
    old.set_weights(model.get_weights())  # undo the moving statistics it overwrote
    path = tmp_path / "old.keras"
    old.save(path)
    again = load_model(str(path))
    _assert_call_is_inference(again, x)
    assert model_temperature(again) == (temperature or 1.0)
    np.testing.assert_allclose(again.predict(x, verbose=0), reference, atol=1e-6)
    np.testing.assert_allclose(again(x), reference, atol=1e-6)
    fast = inference_model(again)  # what batch inference and the service run
    assert not [
        layer
        for layer in fast._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    np.testing.assert_allclose(fast(x), reference, atol=1e-5)


def test_a_pretrained_backbone_keeps_its_batch_norm_statistics_in_training(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``freeze_base: false`` trains a pretrained backbone end to end with its batch
    norms in inference mode (the Keras transfer-learning guide). Keras 3.15 overrides
    the ``training=False`` the graph records for the backbone with ``fit``'s
    ``training=True`` (keras-team/keras#23364, after 3.15.1), so only frozen batch norm
    layers keep their ImageNet statistics."""
    import xray.ml.model as model_module

    def offline_pretrained(backbone: str, image_size: int, weights: str | None) -> tuple:
        shape = (image_size, image_size, 3)
        return keras.applications.MobileNetV2(
            include_top=False, weights=None, input_shape=shape
        ), True

    monkeypatch.setattr(model_module, "_imagenet_backbone", offline_pretrained)
    built = build_model(
        backbone="mobilenet_v2", image_size=32, weights="imagenet", freeze_base=False, augment=False
    )
    assert built.pretrained and not built.base_frozen
    model = built.model
    _randomize_batch_norms(model, np.random.default_rng(6))
    norms = [
        layer for layer in built.base.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert norms and not any(layer.trainable for layer in norms)
    assert any(layer.trainable for layer in built.base.layers if layer.weights)  # end to end
    before = _moving_statistics(model)
    x = np.random.default_rng(9).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    model(x, training=True)  # what fit does
    for a, b in zip(before, _moving_statistics(model), strict=True):
        np.testing.assert_array_equal(a, b)
