"""Float model + recipe -> TFLite variants (float32, float16, dynamic-range, full-int8) and ONNX.

Each function takes a `FloatModel` (sources/) and writes one file; checks that a conversion did
what it claims (every op int8, ONNX matches TF) live here too. Not for: parity (parity/).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import ExportError
from .sources import SIGNATURE, FloatModel

PRECISIONS = ("float32", "float16", "dynamic", "int8")

# TFLite tensor types that may appear in a full-integer model. int32 carries biases, shapes and
# argmax indices; everything else float is a float op.
_INTEGER_TYPES = {"INT8", "UINT8", "INT32", "INT16", "INT64", "BOOL"}


def _converter(model: FloatModel):
    import tensorflow as tf
    return tf.lite.TFLiteConverter.from_saved_model(str(model.saved_model_dir), signature_keys=[SIGNATURE])


def convert(model: FloatModel, precision: str, out_path: Path, *,
            representative: np.ndarray | None = None, progress: Callable[[str], None] | None = None) -> Path:
    """Convert to one precision and write `out_path`. int8 needs `representative` uint8 pixels."""
    import tensorflow as tf

    conv = _converter(model)
    if precision == "float32":
        pass
    elif precision == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision == "int8":
        if representative is None or len(representative) == 0:
            raise ExportError("int8 conversion needs a representative dataset", fix="see calibrate.py")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
        conv.inference_output_type = tf.int8
        conv.representative_dataset = _representative_gen(representative, progress)
    else:
        raise ExportError(f"unknown precision {precision!r}", fix=f"use one of {PRECISIONS}")
    t0 = time.monotonic()
    try:
        blob = conv.convert()
    except Exception as exc:  # the converter raises many types; all mean the same to a user
        raise ExportError(f"TFLite conversion to {precision} failed for {model.model_id}: {exc}",
                          fix="check the recipe's allowed ops; run with --keep-workdir to inspect") from exc
    out_path.write_bytes(blob)
    if progress:
        progress(f"{precision}: {len(blob) / 1e6:.2f} MB in {time.monotonic() - t0:.1f} s")
    return out_path


def _representative_gen(samples: np.ndarray, progress):
    def gen():
        n = len(samples)
        for i, s in enumerate(samples):
            if progress and (i % max(1, n // 10) == 0 or i == n - 1):
                progress(f"calibration {i + 1}/{n}")
            yield {"image": s[None].astype(np.float32)}
    return gen


def tensor_types(path: Path) -> list[dict]:
    """Per op: name, input and output tensor types (from the flatbuffer)."""
    from .sources.tflite_graph import read_tflite
    g = read_tflite(path)
    names = {np.float32: "FLOAT32", np.float16: "FLOAT16", np.int32: "INT32", np.uint8: "UINT8",
             np.int64: "INT64", np.bool_: "BOOL", np.int16: "INT16", np.int8: "INT8"}
    ops = []
    for op in g.ops:
        ops.append({"op": op.name, "index": op.index,
                    "outputs": [g.tensor(i).name for i in op.outputs],
                    "input_types": [names.get(g.tensor(i).dtype, "?") for i in op.inputs if i >= 0],
                    "output_types": [names.get(g.tensor(i).dtype, "?") for i in op.outputs]})
    return ops


def float_ops(path: Path, allow: list[str] = ()) -> list[dict]:
    """Ops of a model that read or write a non-integer tensor, except those allowed by op name."""
    bad = []
    for op in tensor_types(path):
        types = set(op["input_types"]) | set(op["output_types"])
        if not types <= _INTEGER_TYPES and op["op"] not in allow:
            bad.append(op)
    return bad


def check_all_int8(path: Path, allow: list[str] = ()) -> None:
    bad = float_ops(path, allow)
    if bad:
        listed = "; ".join(f"#{o['index']} {o['op']} ({', '.join(o['outputs'])}: "
                           f"{o['input_types']} -> {o['output_types']})" for o in bad[:8])
        raise ExportError(f"{path.name} is not all-int8: {len(bad)} op(s) still use float tensors: {listed}",
                          where=str(path),
                          fix="allow them by name in the recipe's int8.allow_float_ops if that is intended")


def export_onnx(model: FloatModel, out_path: Path, *, opset: int = 17) -> Path:
    """Float SavedModel -> ONNX with tf2onnx."""
    import tensorflow as tf
    import tf2onnx

    fn = model.load()
    spec = [tf.TensorSpec([1, *model.input_hw, 3], tf.float32, name="image")]
    try:
        tf2onnx.convert.from_function(tf.function(lambda image: fn(image=image)), input_signature=spec,
                                      opset=opset, output_path=str(out_path))
    except Exception as exc:
        raise ExportError(f"ONNX export failed for {model.model_id}: {exc}",
                          fix="set onnx = false in the recipe to skip ONNX, and report the op") from exc
    return out_path


def check_onnx(model: FloatModel, onnx_path: Path, samples: np.ndarray) -> float:
    """Max abs difference between onnxruntime and TF on `samples` (uint8 pixels)."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    worst = 0.0
    for s in samples:
        x = s[None].astype(np.float32)
        ref = model.run(x)
        got = sess.run(None, {in_name: x})
        for name, r in zip(sorted(ref), [ref[k] for k in sorted(ref)]):
            g = _match_output(sess, got, name, r.shape)
            worst = max(worst, float(np.max(np.abs(g.astype(np.float64) - r))))
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
