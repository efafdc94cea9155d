"""CPU inference engines for the forward pass: Keras/TensorFlow, the batch-norm-folded
copy, XLA, OpenVINO.

Issue #18 asks whether a faster CPU engine is worth its weight: kept only if it wins
here and holds |Δp| <= 1e-4 against Keras. Each engine runs the default model
(``compact_cnn`` at 160 px, untrained weights but random batch norm statistics, so that
a fold is not a no-op; without its random augmentation layers, which no converter
supports) on the same 64-image batch; per-image time and the largest probability
difference to Keras are reported. ``keras_batch_norm_folded`` is
:func:`xray.ml.model.inference_model`, the copy that batch inference and the service
run. OpenVINO is not a project dependency:
install it beside (``pip install --target DIR openvino``) and pass ``--openvino DIR``.

usage: python benchmarks/inference_engines.py [--openvino /tmp/ovpkgs] [--repeats 8]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import save

IMAGE_SIZE = 160


def per_image_ms(function: object, batch: object, repeats: int) -> float:
    function(batch)  # type: ignore[operator]
    start = time.perf_counter()
    for _ in range(repeats):
        function(batch)  # type: ignore[operator]
    return round((time.perf_counter() - start) / (repeats * len(batch)) * 1000, 3)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openvino", type=Path, help="folder where openvino is installed")
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from xray.ml.model import build_model, inference_model

    model = build_model(
        backbone="compact_cnn",
        image_size=IMAGE_SIZE,
        weights=None,
        augment=False,
        augment_acquisition=False,
    ).model
    rng = np.random.default_rng(0)
    for layer in model._flatten_layers(include_self=False):
        if hasattr(layer, "moving_variance"):  # trained-like statistics
            channels = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, channels))
            layer.moving_variance.assign(rng.uniform(0.3, 3.0, channels))
            layer.gamma.assign(rng.uniform(0.5, 1.5, channels))
            layer.beta.assign(rng.normal(0, 0.2, channels))
    batch = rng.integers(0, 255, (64, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    keras = tf.function(lambda x: model(x, training=False))
    reference = keras(batch).numpy().reshape(-1)
    keras_ms = per_image_ms(lambda x: keras(x).numpy(), batch, args.repeats)
    engines: dict[str, dict[str, float | str]] = {}
    fast = inference_model(model)
    folded = tf.function(lambda x: fast(x, training=False))
    engines["keras_batch_norm_folded"] = {
        "ms_per_image": per_image_ms(lambda x: folded(x).numpy(), batch, args.repeats),
        "max_abs_dp": float(np.abs(folded(batch).numpy().reshape(-1) - reference).max()),
    }
    # Keras again, after: this machine's speed drifts, so the ratio uses both runs' mean.
    again = per_image_ms(lambda x: keras(x).numpy(), batch, args.repeats)
    engines["keras_tensorflow"] = {
        "ms_per_image": round((keras_ms + again) / 2, 3),
        "ms_per_image_first": keras_ms,
        "ms_per_image_again": again,
        "max_abs_dp": 0.0,
    }
    xla = tf.function(lambda x: model(x, training=False), jit_compile=True)
    engines["xla_jit_compile"] = {
        "ms_per_image": per_image_ms(lambda x: xla(x).numpy(), batch, args.repeats),
        "max_abs_dp": float(np.abs(xla(batch).numpy().reshape(-1) - reference).max()),
    }
    if args.openvino:
        sys.path.append(str(args.openvino))
        import openvino as ov

        with tempfile.TemporaryDirectory() as tmp:
            model.export(tmp, format="tf_saved_model", verbose=False)
            converted = ov.convert_model(tmp)
        core = ov.Core()
        for precision in ("default", "f32"):
            config = {"PERFORMANCE_HINT": "THROUGHPUT"}
            if precision == "f32":
                config["INFERENCE_PRECISION_HINT"] = "f32"
            compiled = core.compile_model(converted, "CPU", config)
            engines[f"openvino_{ov.__version__.split('-')[0]}_{precision}_precision"] = {
                "ms_per_image": per_image_ms(lambda x, c=compiled: c(x)[0], batch, args.repeats),
                "max_abs_dp": float(np.abs(compiled(batch)[0].reshape(-1) - reference).max()),
            }
    base = engines["keras_tensorflow"]["ms_per_image"]
    for result in engines.values():
        result["speed_vs_keras"] = round(base / result["ms_per_image"], 2)  # type: ignore[operator]
        result["parity_1e-4"] = "holds" if result["max_abs_dp"] <= 1e-4 else "fails"  # type: ignore[operator]
    save(
        "inference_engines",
        {
            "model": f"compact_cnn at {IMAGE_SIZE} px, untrained, no augmentation layers",
            "batch": 64,
            "engines": engines,
            "kept": [
                k
                for k, v in engines.items()
                if k != "keras_tensorflow"
                and v["speed_vs_keras"] > 1.1
                and v["parity_1e-4"] == "holds"
            ],  # type: ignore[operator]
        },
    )


if __name__ == "__main__":
    main()
