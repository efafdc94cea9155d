"""CPU inference engines for the forward pass: Keras/TensorFlow, the batch-norm-folded
copy, XLA, OpenVINO, ONNX Runtime; and the machine's floor for this model.

Issue #18 asks whether a faster CPU engine is worth its weight: kept only if it wins
here (at least 5 % faster than the batch-norm-folded copy that runs now; the copy itself
against Keras) and holds |Δp| <= 1e-4 against Keras. Each engine runs the
default model (``compact_cnn`` at 160 px, untrained weights but random batch norm
statistics, so that a fold is not a no-op; without its random augmentation layers, which
no converter supports) on the same 64-image batch; per-image time and the largest probability
difference to Keras are reported. ``keras_batch_norm_folded`` is
:func:`xray.ml.model.inference_model`, the copy that batch inference and the service
run. OpenVINO and ONNX Runtime convert that folded copy; they are not project
dependencies: install them beside
(``uv pip install --python .venv/bin/python --target DIR openvino``, or ``...
onnxruntime tf2onnx onnx``) and pass ``--openvino DIR`` or ``--onnxruntime DIR``.

The floor (``roofline``): the model's convolutions need a fixed number of
multiply-adds per image; at the best float32 rate this machine reaches (a large matrix
product in TensorFlow, both cores) no engine computing them in float32 can take less
time per image. ``share_of_floor`` says how close each engine comes.

usage: python benchmarks/inference_engines.py [--openvino DIR] [--onnxruntime DIR]
       [--repeats 8] [--passes 3]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import save

IMAGE_SIZE = 160


def per_image_ms(function: object, batch: object, repeats: int) -> float:
    function(batch)  # type: ignore[operator]
    start = time.perf_counter()
    for _ in range(repeats):
        function(batch)  # type: ignore[operator]
    return round((time.perf_counter() - start) / (repeats * len(batch)) * 1000, 3)  # type: ignore[arg-type]


def conv_mflop_per_image(model: object) -> float:
    """Floating-point operations (2 per multiply-add) of the model's convolutions."""
    from keras import layers

    total = 0
    for layer in model._flatten_layers(include_self=False):  # type: ignore[attr-defined]
        if isinstance(layer, layers.Conv2D | layers.DepthwiseConv2D):
            # Conv2D [kh, kw, in, out]; depthwise [kh, kw, in, multiplier]: the same product.
            kh, kw, channels, out = layer.kernel.shape
            _, height, width, _ = layer.output.shape
            total += 2 * height * width * kh * kw * channels * out
    return total / 1e6


def matmul_gflops(side: int = 2048, repeats: int = 10) -> float:
    """The best float32 rate of a large TensorFlow matrix product, all cores (best of 3)."""
    import tensorflow as tf

    a = tf.random.normal([side, side])
    b = tf.random.normal([side, side])
    product = tf.function(lambda a, b: tf.matmul(a, b))
    product(a, b).numpy()
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            out = product(a, b)
        out.numpy()
        best = max(best, 2 * side**3 * repeats / (time.perf_counter() - start) / 1e9)
    return round(best, 1)


def traced(fast: object) -> tuple[Any, list[Any]]:
    """The folded model's forward pass as a TensorFlow function of a uint8 batch, and its
    input signature: what the converters take."""
    import tensorflow as tf

    spec = [tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.uint8, name="image")]
    function = tf.function(lambda x: fast(x, training=False), input_signature=spec)  # type: ignore[operator]
    return function, spec


def openvino_engines(folder: Path, fast: object) -> dict[str, Any]:
    """The folded model converted by OpenVINO (from its traced TensorFlow function),
    compiled for the CPU three ways: float32 for latency (one stream over all cores),
    float32 for throughput (streams in parallel) and OpenVINO's default precision
    (bfloat16 where the CPU has it, as this one does): name -> function of a batch."""
    sys.path.append(str(folder))
    import openvino as ov

    function, _ = traced(fast)
    converted = ov.convert_model(function.get_concrete_function())
    core = ov.Core()
    version = ov.__version__.split("-")[0]
    configs = {
        "f32_latency": {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"},
        "f32_throughput": {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "THROUGHPUT"},
        "default_precision": {"PERFORMANCE_HINT": "LATENCY"},
    }
    engines = {}
    for label, config in configs.items():
        compiled = core.compile_model(converted, "CPU", config)
        engines[f"openvino_{version}_{label}"] = lambda x, c=compiled: c(x)[0]
    return engines


def onnxruntime_engine(folder: Path, fast: object) -> tuple[str, Any]:
    """The folded model converted by tf2onnx and run by ONNX Runtime (all graph
    optimizations, one thread per core): its name and its function of a batch."""
    import os

    sys.path.append(str(folder))
    import onnxruntime as ort
    import tf2onnx

    function, spec = traced(fast)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=spec, opset=17)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = os.cpu_count() or 1
    session = ort.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name

    def run(x: object) -> object:
        return session.run(None, {name: x})[0]

    return f"onnxruntime_{ort.__version__}", run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openvino", type=Path, help="folder where openvino is installed")
    parser.add_argument(
        "--onnxruntime", type=Path, help="folder where onnxruntime, tf2onnx and onnx are installed"
    )
    parser.add_argument("--repeats", type=int, default=8, help="batches per timing")
    parser.add_argument("--passes", type=int, default=3, help="timings per engine (median)")
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
    # Each engine: a function of the batch returning its probabilities.
    keras = tf.function(lambda x: model(x, training=False))
    fast = inference_model(model)
    folded = tf.function(lambda x: fast(x, training=False))
    xla = tf.function(lambda x: model(x, training=False), jit_compile=True)
    runners: dict[str, Any] = {
        "keras_tensorflow": lambda x: keras(x).numpy(),
        "keras_batch_norm_folded": lambda x: folded(x).numpy(),
        "xla_jit_compile": lambda x: xla(x).numpy(),
    }
    if args.openvino:
        runners.update(openvino_engines(args.openvino, fast))
    if args.onnxruntime:
        name, run = onnxruntime_engine(args.onnxruntime, fast)
        runners[name] = run
    reference = runners["keras_tensorflow"](batch).reshape(-1)
    # This machine's speed drifts within minutes: every engine is timed in each of
    # ``--passes`` passes over all of them, and its median counts.
    passes: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.passes):
        for name, run in runners.items():
            passes[name].append(per_image_ms(run, batch, args.repeats))
    engines: dict[str, dict[str, Any]] = {
        name: {
            "ms_per_image": round(statistics.median(passes[name]), 3),
            "ms_per_image_passes": passes[name],
            "max_abs_dp": float(np.abs(np.asarray(run(batch)).reshape(-1) - reference).max()),
        }
        for name, run in runners.items()
    }
    mflop = conv_mflop_per_image(model)
    gflops = matmul_gflops()
    floor_ms = round(mflop / gflops, 3)  # MFLOP / (GFLOP/s) = ms
    base = engines["keras_tensorflow"]["ms_per_image"]
    folded_ms = engines["keras_batch_norm_folded"]["ms_per_image"]
    for result in engines.values():
        result["speed_vs_keras"] = round(base / result["ms_per_image"], 2)  # type: ignore[operator]
        result["speed_vs_folded"] = round(folded_ms / result["ms_per_image"], 2)  # type: ignore[operator]
        result["share_of_floor"] = round(floor_ms / result["ms_per_image"], 2)  # type: ignore[operator]
        result["parity_1e-4"] = "holds" if result["max_abs_dp"] <= 1e-4 else "fails"  # type: ignore[operator]
    save(
        "inference_engines",
        {
            "model": f"compact_cnn at {IMAGE_SIZE} px, untrained, no augmentation layers",
            "batch": 64,
            "roofline": {
                "conv_mflop_per_image": round(mflop, 1),
                "matmul_float32_gflops": gflops,
                "floor_ms_per_image": floor_ms,
            },
            "engines": engines,
            # The fold must beat Keras; any other engine must beat what runs now, the fold
            # (OpenVINO and ONNX Runtime convert it). 5 %: beyond this machine's noise.
            "kept": [
                k
                for k, v in engines.items()
                if k != "keras_tensorflow"
                and v["speed_vs_keras" if k == "keras_batch_norm_folded" else "speed_vs_folded"]
                >= 1.05
                and v["parity_1e-4"] == "holds"
            ],  # type: ignore[operator]
        },
    )


if __name__ == "__main__":
    main()
