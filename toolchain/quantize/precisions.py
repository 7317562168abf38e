"""The standard precisions: float model + recipe -> TFLite variants (float32, float16, dynamic-range, full-int8) and ONNX.

Each function takes a `FloatModel` (sources/) and writes one file; checks that a conversion did
what it claims (every op int8, ONNX matches TF) live here too. Not for: parity (parity/).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..errors import ExportError
from ..sources import SIGNATURE, FloatModel
from ..sources.tflite_graph import read_tflite
from .calibration import representative_gen, shared_calibration
from .onnx_canonical import canonicalize

PRECISIONS = ("float32", "float16", "dynamic", "int8")

# TFLite tensor types that may appear in a full-integer model. int32 carries biases, shapes and
# argmax indices; everything else float is a float op.
_INTEGER_TYPES = {"INT8", "UINT8", "INT32", "INT16", "INT64", "BOOL"}


def tf_converter(model: FloatModel):
    # TensorFlow: ~3 s to import, so it loads only when a conversion runs (`portrait --help` stays fast)
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(str(model.saved_model_dir), signature_keys=[SIGNATURE])


def convert(
    model: FloatModel,
    precision: str,
    out_path: Path,
    *,
    representative: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Convert to one precision and write `out_path`. int8 needs `representative` uint8 pixels."""
    # TensorFlow: ~3 s to import, so it loads only when a conversion runs (`portrait --help` stays fast)
    import tensorflow as tf

    conv = tf_converter(model)
    if precision == "float32":
        pass
    elif precision == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision == "int8":
        if representative is None or len(representative) == 0:
            raise ExportError("int8 conversion needs a representative dataset", fix="see calibration_set.py")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
        conv.inference_output_type = tf.int8
        conv.representative_dataset = representative_gen(representative, progress)
    else:
        raise ExportError(f"unknown precision {precision!r}", fix=f"use one of {PRECISIONS}")
    t0 = time.monotonic()
    try:
        # only int8 calibrates: one pass with every tensor's true range, shared (calibration.py)
        with shared_calibration(representative, progress):
            blob = conv.convert()
    except Exception as exc:  # the converter raises many types; all mean the same to a user
        raise ExportError(
            f"TFLite conversion to {precision} failed for {model.model_id}: {exc}",
            fix="check the recipe's allowed ops; run with --keep-workdir to inspect",
        ) from exc
    out_path.write_bytes(blob)
    if progress:
        progress(f"{precision}: {len(blob) / 1e6:.2f} MB in {time.monotonic() - t0:.1f} s")
    return out_path


def calibrate_int8(
    model: FloatModel, representative: np.ndarray, *, progress: Callable[[str], None] | None = None
) -> bytes:
    """Run calibration once and return the calibrated float flatbuffer (ranges recorded, nothing
    quantized yet); `quantize_calibrated` then quantizes it with any set of layers kept float,
    in about a second instead of a full conversion."""
    # TensorFlow: ~3 s to import, so it loads only when a conversion runs (`portrait --help` stays fast)
    import tensorflow as tf

    if representative is None or len(representative) == 0:
        raise ExportError("int8 calibration needs a representative dataset", fix="see calibration_set.py")
    conv = tf_converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative_gen(representative, progress)
    conv.experimental_mlir_quantizer = True
    conv._experimental_calibrate_only = True  # the documented QuantizationDebugger route
    try:
        with shared_calibration(representative, progress):  # one true-range pass, reused (calibration.py)
            return conv.convert()
    except Exception as exc:
        raise ExportError(
            f"int8 calibration failed for {model.model_id}: {exc}",
            fix="check the representative set; run with --keep-workdir to inspect",
        ) from exc


def quantize_calibrated(
    calibrated: bytes, out_path: Path, *, float_layers: Sequence[str] = (), output_type: str = "int8"
) -> Path:
    """Full-int8 model (uint8 pixels in, int8 out) from a calibrated flatbuffer, keeping the ops
    whose output tensors are named in `float_layers` in float32 (dequantize/quantize around them).
    This is TFLite's selective quantization (QuantizationDebugOptions.denylisted_nodes).

    output_type "float32": float32 pixels in and float32 out, with no int8 rounding at either end
    (fully_quantize=False; a float-typed output of a fully quantized model is still rounded to int8
    and dequantized, which alone costs PyDNet++ AbsRel 0.054)."""
    # TensorFlow: ~3 s to import, so it loads only when a conversion runs (`portrait --help` stays fast)
    import tensorflow as tf
    from tensorflow.lite.python import convert as tfl_convert

    float_io = output_type == "float32"
    try:
        blob = tfl_convert.mlir_quantize(
            calibrated,
            fully_quantize=not float_io,
            input_data_type=tf.float32 if float_io else tf.uint8,
            output_data_type=tf.float32 if float_io else tf.int8,
            denylisted_nodes=list(float_layers) or None,
        )
    except Exception as exc:
        raise ExportError(
            f"selective quantization failed (float layers {list(float_layers)[:5]}...): {exc}",
            fix="name layers by their output tensor names in the float32 .tflite",
        ) from exc
    out_path.write_bytes(blob)
    return out_path


def convert_selective(
    model: FloatModel,
    out_path: Path,
    representative: np.ndarray,
    *,
    float_layers: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> Path:
    """int8 conversion that keeps the named layers (output tensor names) in float32."""
    return quantize_calibrated(
        calibrate_int8(model, representative, progress=progress), out_path, float_layers=float_layers
    )


def tensor_types(path: Path) -> list[dict]:
    """Per op: name, input and output tensor types (from the flatbuffer)."""
    g = read_tflite(path)
    names: dict[type | None, str] = {
        np.float32: "FLOAT32",
        np.float16: "FLOAT16",
        np.int32: "INT32",
        np.uint8: "UINT8",
        np.int64: "INT64",
        np.bool_: "BOOL",
        np.int16: "INT16",
        np.int8: "INT8",
    }
    ops = []
    for op in g.ops:
        ops.append(
            {
                "op": op.name,
                "index": op.index,
                "outputs": [g.tensor(i).name for i in op.outputs],
                "graph_output": any(i in g.outputs for i in op.outputs),
                "input_types": [names.get(g.tensor(i).dtype, "?") for i in op.inputs if i >= 0],
                "output_types": [names.get(g.tensor(i).dtype, "?") for i in op.outputs],
            }
        )
    return ops


def is_output_edge(op: dict) -> bool:
    """A DEQUANTIZE from an integer tensor straight to a graph output: the interface web runtimes
    read (quantize/conversions.py web_output_bytes), not a float op of the integer core."""
    return (
        op["op"] == "DEQUANTIZE"
        and op.get("graph_output", False)
        and set(op["input_types"]) <= {"INT8", "UINT8", "INT16"}
    )


def float_ops(path: Path, allow: Sequence[str] = ()) -> list[dict]:
    """Ops of a model that read or write a non-integer tensor, except those allowed by op name and
    the output edge (`is_output_edge`)."""
    bad = []
    for op in tensor_types(path):
        types = set(op["input_types"]) | set(op["output_types"])
        if not types <= _INTEGER_TYPES and op["op"] not in allow and not is_output_edge(op):
            bad.append(op)
    return bad


def check_all_int8(path: Path, allow: Sequence[str] = ()) -> None:
    bad = float_ops(path, allow)
    if bad:
        listed = "; ".join(
            f"#{o['index']} {o['op']} ({', '.join(o['outputs'])}: {o['input_types']} -> {o['output_types']})"
            for o in bad[:8]
        )
        raise ExportError(
            f"{path.name} is not all-int8: {len(bad)} op(s) still use float tensors: {listed}",
            where=str(path),
            fix="allow them by name in the recipe's int8.allow_float_ops if that is intended",
        )


def export_onnx(model: FloatModel, out_path: Path, *, float_tflite: Path, opset: int = 17) -> Path:
    """Float model -> ONNX with tf2onnx, from the float32 TFLite file (a frozen, plain graph; the
    result is checked against the TF model by `check_onnx`)."""
    # tf2onnx imports TensorFlow (~3 s): loaded only when ONNX is exported
    import tf2onnx

    try:
        tf2onnx.convert.from_tflite(str(float_tflite), opset=opset, output_path=str(out_path))
    except Exception as exc:
        raise ExportError(
            f"ONNX export failed for {model.model_id}: {exc}",
            fix="set onnx = false in the recipe to skip ONNX, and report the op",
        ) from exc
    canonicalize(out_path)  # the same bytes run after run (tf2onnx is not deterministic): onnx_canonical.py
    return out_path


def check_onnx(model: FloatModel, onnx_path: Path, samples: np.ndarray) -> float:
    """Max abs difference between onnxruntime and TF on `samples` (uint8 pixels)."""
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    worst = 0.0
    for s in samples:
        x = s[None].astype(np.float32)
        ref = model.run(x)
        got = sess.run(None, {in_name: x})
        for name, r in zip(sorted(ref), [ref[k] for k in sorted(ref)]):
            g = _match_output(sess, got, name, r.shape)
            diff = float(np.max(np.abs(g.astype(np.float64) - r)))
            worst = diff if not np.isfinite(diff) else max(worst, diff)
    return worst


def _match_output(sess, got, name, shape):
    names = [o.name for o in sess.get_outputs()]
    for n, g in zip(names, got):
        if name in n:
            return g
    same = [g for g in got if g.shape == shape]
    return same[0] if same else got[0]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
