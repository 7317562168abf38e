"""Weight splitting: a convolution W becomes conv(x, W_hi) + conv(x, W_lo), both with int8 weights.

W_hi is W rounded to the converter's own per-channel int8 grid (scale_o = max|w_o| / 127, so the
converter reproduces it exactly) and W_lo = W - W_hi is the rounding residual, quantized on its own
per-channel grid (max|lo_o| / 127 <= scale_o / 2). The pair carries the weights to within
scale_o / 508 instead of scale_o / 2: about 15-bit weights, with int8 weight kernels only, so the
file stays integer-only (no float op, no new op type: one more CONV_2D / DEPTHWISE_CONV_2D and an
ADD per split layer). Known in the literature as weight/bit splitting (e.g. Liu et al. 2021,
"Post-training Quantization with Multiple Points: Mixed Precision without Mixed Precision").

Why: with int16 activations the weights' int8 rounding is the largest error left. On the selfie
segmenter, rounding one 16x16 1x1 convolution alone flips 6% of the mask on an ambiguous photo.

`split_weights` rewrites a float .tflite with the chosen layers split; the ladder's w8a16 rung uses
it when the recipe sets `[ladder] w8a16 = { split_weights = "all" }`. Cost: each split layer's MACs
twice, and its weights stored twice.

Not for: choosing the rung (ladder.py) or the 16x8 conversion itself (conversions.py).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from . import flatbuffer
from .graphedit import Editable, from_matrix, round_nearest, weight_matrix

_ADD_CODE = 0  # BuiltinOperator.ADD
_ACT = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3, "TANH": 4}


def _add_opcode(ed: Editable) -> int:
    schema = flatbuffer.schema()
    for i, code in enumerate(ed.model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == _ADD_CODE:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = _ADD_CODE, _ADD_CODE, 1
    ed.model.operatorCodes.append(code)
    return len(ed.model.operatorCodes) - 1


def _new_tensor(ed: Editable, like: int, name: str, value: np.ndarray | None = None) -> int:
    schema = flatbuffer.schema()
    t = copy.deepcopy(ed.sg.tensors[like])
    t.name = name.encode() if isinstance(t.name, bytes) else name
    buf = schema.BufferT()
    if value is not None:
        value = np.ascontiguousarray(value, np.float32)
        t.shape = np.asarray(value.shape, dtype=np.int32)
        buf.data = np.frombuffer(value.tobytes(), np.uint8)
    ed.model.buffers.append(buf)
    t.buffer = len(ed.model.buffers) - 1
    ed.sg.tensors.append(t)
    return len(ed.sg.tensors) - 1


def _name(ed: Editable, t: int) -> str:
    n = ed.sg.tensors[t].name
    return n.decode() if isinstance(n, bytes) else str(n)


def split_weights(float_path: Path, out_path: Path, layers: list[int] | None = None) -> dict:
    """Write `out_path`: `float_path` with the convolutions at op indices `layers` (all float-weight
    convolutions when None) split into W_hi + W_lo. Float outputs are unchanged up to float
    summation order. Returns {"split": [op indices], "skipped": {op index: why}}."""
    schema = flatbuffer.schema()
    ed = Editable(float_path)
    convs = {c.op_index: c for c in ed.convs()}
    chosen = sorted(convs) if layers is None else sorted(set(layers))
    add_code = _add_opcode(ed)
    inserts: list[tuple[int, list]] = []
    done, skipped = [], {}
    for i in chosen:
        c = convs.get(i)
        if c is None:
            skipped[i] = "not a float-weight convolution"
            continue
        if c.activation not in _ACT:
            skipped[i] = f"fused activation {c.activation} cannot move to the ADD"
            continue
        w = ed.get(c.w)
        m = weight_matrix(w, c.kind)
        hi = round_nearest(m)
        lo = (m - hi).astype(np.float32)
        if not np.any(lo):
            skipped[i] = "weights already on the int8 grid"
            continue
        op = ed.sg.operators[i]
        base = _name(ed, c.y)
        ed.set(c.w, from_matrix(hi, c.kind, w.shape))
        w_lo = _new_tensor(ed, c.w, f"{_name(ed, c.w)}/split_lo", from_matrix(lo, c.kind, w.shape))
        y_hi = _new_tensor(ed, c.y, f"{base}/split_hi")
        y_lo = _new_tensor(ed, c.y, f"{base}/split_lo")
        ins = list(op.inputs)
        lo_ins = [ins[0], w_lo]
        if c.b is not None:
            b = ed.get(c.b)
            lo_ins.append(_new_tensor(ed, c.b, f"{_name(ed, c.b)}/split_lo", np.zeros_like(b)))
        op.outputs = np.asarray([y_hi], dtype=np.int32)
        act = op.builtinOptions.fusedActivationFunction
        op.builtinOptions.fusedActivationFunction = 0
        lo_op = copy.deepcopy(op)
        lo_op.inputs = np.asarray(lo_ins, dtype=np.int32)
        lo_op.outputs = np.asarray([y_lo], dtype=np.int32)
        add = schema.OperatorT()
        add.opcodeIndex = add_code
        add.inputs = np.asarray([y_hi, y_lo], dtype=np.int32)
        add.outputs = np.asarray([c.y], dtype=np.int32)
        add.builtinOptionsType = schema.BuiltinOptions.AddOptions
        add.builtinOptions = schema.AddOptionsT()
        add.builtinOptions.fusedActivationFunction = act
        inserts.append((i, [lo_op, add]))
        done.append(i)
    for i, ops in sorted(inserts, reverse=True):  # from the back, so earlier indices stay valid
        ed.sg.operators[i + 1 : i + 1] = ops
    ed.write(out_path)
    return {"split": done, "skipped": {str(k): v for k, v in skipped.items()}}
