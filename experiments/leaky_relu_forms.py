"""How do XNNPACK and the reference kernels round one int8 leaky ReLU, written in each importer form?

    .venv/bin/python -m experiments.leaky_relu_forms

One convolution then one leaky ReLU (alpha 0.2), converted to int8 in each form of
toolchain/sources/leaky_relu.py. Every op output is made a graph output (kernel_gap's flatbuffer edit),
the same int8 input runs through both kernel sets, and on the pixels where the convolution's output
agrees between them the activation's output is compared with the exact value (in output steps): mean
error (bias), mean on the negative side, RMS, and the share of values where the two kernel sets differ.
Not the product: a measurement behind the choice in sources/leaky_relu.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from toolchain.quantize.kernel_gap import _all_outputs_model
from toolchain.sources.leaky_relu import FORMS, leaky_relu

ALPHA, C, H = 0.2, 16, 64


def convert(form: str, folder: Path, rng) -> Path:
    import tensorflow as tf  # ~3 s to import; only the conversion needs it

    w = rng.normal(0, 0.3, (1, 1, C, C)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec([1, H, H, C], tf.float32)])
    def f(x):
        return leaky_relu(tf, tf.nn.conv2d(x, w, 1, "SAME"), ALPHA, form)

    rep = [rng.normal(0, 1, (1, H, H, C)).astype(np.float32) for _ in range(30)]
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type, conv.inference_output_type = tf.int8, tf.int8
    conv.representative_dataset = lambda: ([r] for r in rep)
    path = folder / f"{form}.tflite"
    path.write_bytes(conv.convert())
    return path


def run_all(blob: bytes, resolver, x: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
    it = Interpreter(model_content=blob, experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    s, z = d["quantization"]
    it.set_tensor(d["index"], np.clip(np.round(x / s) + z, -128, 127).astype(np.int8))
    it.invoke()
    return {
        o["index"]: (
            (it.get_tensor(o["index"]).astype(np.float64) - o["quantization"][1]) * o["quantization"][0],
            o["quantization"][0],
        )
        for o in it.get_output_details()
    }


def main() -> None:
    rng = np.random.default_rng(0)
    folder = Path(tempfile.mkdtemp(prefix="leaky-forms-"))
    for form in FORMS:
        blob, ops = _all_outputs_model(convert(form, folder, rng))
        x = rng.normal(0, 1, (1, H, H, C)).astype(np.float32)
        ref, xnn = run_all(blob, OpResolverType.BUILTIN_REF, x), run_all(blob, OpResolverType.AUTO, x)
        conv_t, out_t = ops[[o["op"] for o in ops].index("CONV_2D")]["output"], ops[-1]["output"]
        cin = ref[conv_t][0]
        same = cin == xnn[conv_t][0]
        exact = np.where(cin > 0, cin, ALPHA * cin)
        step = ref[out_t][1]
        neg = (cin < 0)[same]
        for name, res in (("reference", ref), ("xnnpack", xnn)):
            e = ((res[out_t][0] - exact) / step)[same]
            print(
                f"{form:9} {name:9}: mean {e.mean():+.3f} steps, negative side {e[neg].mean():+.3f}, "
                f"rms {np.sqrt((e**2).mean()):.3f}"
            )
        differ = np.mean((ref[out_t][0] != xnn[out_t][0])[same])
        print(f"{form:9} ops {[o['op'] for o in ops]}: kernel sets differ on {differ:.1%} of values")


if __name__ == "__main__":
    main()
