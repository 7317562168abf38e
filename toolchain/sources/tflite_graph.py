"""Float .tflite -> float TF graph, op by op, weights included.

The generic importer shared by every float TFLite model (DeepLab 257, PyDNet++, MediaPipe selfie):
each TFLite operator is re-emitted as the equivalent TF op, so the standard converter can quantize
the result with full-integer ops. One small translator per op (see `_OPS`), each with the same
signature. Not for: quantized .tflite inputs (their int8 math is not re-emitted), control flow.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFormatError, UnsupportedOp
from .float_model import FloatModel, save_pixel_model
from .leaky_relu import leaky_relu

# TFLite TensorType -> numpy dtype (schema.fbs)
_TENSOR_DTYPES = {
    0: np.float32,
    1: np.float16,
    2: np.int32,
    3: np.uint8,
    4: np.int64,
    6: np.bool_,
    7: np.int16,
    9: np.int8,
}
_PADDING = {0: "SAME", 1: "VALID"}


@dataclass
class TfliteTensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: type | None  # None: a tensor type the importer does not read
    data: np.ndarray | None  # constant value, or None for activations
    scale: float | None = None
    zero_point: int | None = None
    scales: np.ndarray | None = None  # per-channel quantization (hybrid int8 weights)
    zero_points: np.ndarray | None = None
    quantized_dimension: int = 0

    def dequantized(self) -> np.ndarray | None:
        """Constant value as float32: float16 cast up, int8/uint8 weights with their scale(s) applied
        (None for an activation)."""
        data = self.data
        if data is None:
            return None
        if self.dtype is np.float16:
            return data.astype(np.float32)
        if self.dtype in (np.int8, np.uint8, np.int16) and self.scales is not None and len(self.scales):
            shape = [1] * data.ndim
            if len(self.scales) > 1:
                shape[self.quantized_dimension] = len(self.scales)
            scale = np.asarray(self.scales, np.float32).reshape(shape)
            zp = np.asarray(
                self.zero_points if self.zero_points is not None and len(self.zero_points) else [0], np.float32
            ).reshape(shape if len(self.scales) > 1 else [1] * data.ndim)
            return (data.astype(np.float32) - zp) * scale
        return data


@dataclass
class TfliteOp:
    index: int
    name: str  # builtin name or custom code
    inputs: list[int]
    outputs: list[int]
    options: Any  # the schema's options object for this op (untyped), or None
    custom_options: bytes | None


@dataclass
class TfliteGraph:
    """The parts of a TFLite flatbuffer an importer needs, decoded once."""

    path: Path
    tensors: list[TfliteTensor]
    ops: list[TfliteOp]
    inputs: list[int]
    outputs: list[int]

    def op_names(self) -> list[str]:
        return [op.name for op in self.ops]

    def tensor(self, i: int) -> TfliteTensor:
        return self.tensors[i]


def read_tflite(path: str | Path) -> TfliteGraph:
    """Decode a .tflite flatbuffer; a corrupt or non-TFLite file is a ModelFormatError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ModelFormatError(f"model file not found: {path}", fix="check the path") from None
    if len(raw) < 8 or raw[4:8] != b"TFL3":
        raise ModelFormatError(
            f"{path.name} is not a TFLite flatbuffer (no TFL3 identifier)",
            where=str(path),
            fix="pass a .tflite file; re-download it if it is truncated",
        )
    # TensorFlow: ~3 s to import, so it loads only when a conversion runs (`portrait --help` stays fast)
    from tensorflow.lite.python import schema_py_generated as schema

    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(raw, 0))
        sg = model.subgraphs[0]
        names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        tensors = []
        for i, t in enumerate(sg.tensors):
            dtype = _TENSOR_DTYPES.get(t.type)
            data: np.ndarray | None = None
            buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
            if buf is not None and buf.data is not None and len(buf.data) and dtype is not None:
                shape = tuple(int(s) for s in (t.shape if t.shape is not None else ()))
                data = np.frombuffer(bytes(buf.data), dtype=dtype).reshape(shape)
            q = t.quantization
            scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) == 1 else None
            zp = int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None and len(q.zeroPoint) == 1 else None
            scales = np.asarray(q.scale, np.float32) if q is not None and q.scale is not None else None
            zps = np.asarray(q.zeroPoint, np.int64) if q is not None and q.zeroPoint is not None else None
            tensors.append(
                TfliteTensor(
                    i,
                    (t.name or b"").decode(),
                    tuple(int(s) for s in (t.shape if t.shape is not None else ())),
                    dtype,
                    data,
                    scale,
                    zp,
                    scales,
                    zps,
                    int(q.quantizedDimension) if q is not None else 0,
                )
            )
        ops = []
        for i, op in enumerate(sg.operators):
            code = model.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            name = names.get(builtin, f"BUILTIN_{builtin}")
            if name == "CUSTOM":
                name = (code.customCode or b"").decode()
            custom = bytes(op.customOptions) if op.customOptions is not None else None
            ops.append(
                TfliteOp(i, name, [int(x) for x in op.inputs], [int(x) for x in op.outputs], op.builtinOptions, custom)
            )
        return TfliteGraph(path, tensors, ops, [int(x) for x in sg.inputs], [int(x) for x in sg.outputs])
    except (IndexError, ValueError, struct.error, TypeError, AttributeError) as exc:
        raise ModelFormatError(
            f"{path.name} is a damaged TFLite flatbuffer ({type(exc).__name__}: {exc})",
            where=str(path),
            fix="re-download the file and check its SHA-256",
        ) from exc


# ---------------------------------------------------------------------------------------------
# Op translators: f(tf, op, args, graph) -> tensor or list of tensors; args are TF tensors (or
# numpy constants for weights), in TFLite input order (None for an absent optional input).


def _activation(tf, x, code: int | None):
    if not code:
        return x
    if code == 1:
        return tf.nn.relu(x)
    if code == 2:
        return tf.clip_by_value(x, -1.0, 1.0)
    if code == 3:
        return tf.nn.relu6(x)
    if code == 4:
        return tf.tanh(x)
    raise UnsupportedOp(f"fused activation code {code} is not supported")


def _conv2d(tf, op, a, g):
    o = op.options
    w = np.transpose(np.asarray(a[1]), (1, 2, 3, 0))  # OHWI -> HWIO
    y = tf.nn.conv2d(
        a[0],
        w,
        strides=[1, o.strideH, o.strideW, 1],
        padding=_PADDING[o.padding],
        dilations=[1, o.dilationHFactor, o.dilationWFactor, 1],
    )
    if len(a) > 2 and a[2] is not None:
        y = tf.nn.bias_add(y, a[2])
    return _activation(tf, y, o.fusedActivationFunction)


def _depthwise(tf, op, a, g):
    o = op.options
    w = np.asarray(a[1])  # 1, H, W, C*M
    cin = g.tensor(op.inputs[0]).shape[-1]
    w = w.reshape(w.shape[1], w.shape[2], cin, w.shape[3] // cin)
    y = tf.nn.depthwise_conv2d(
        a[0],
        w,
        strides=[1, o.strideH, o.strideW, 1],
        padding=_PADDING[o.padding],
        dilations=[o.dilationHFactor, o.dilationWFactor],
    )
    if len(a) > 2 and a[2] is not None:
        y = tf.nn.bias_add(y, a[2])
    return _activation(tf, y, o.fusedActivationFunction)


def _transpose_conv_core(tf, x, w_ohwi, bias, out_shape, strides, padding):
    """Transposed convolution, emitted as ordinary CONV_2Ds over sub-pixel phases, interleaved.

    y[s*q + p] = sum over taps k = c_p + s*d of x[q - d] * W[k], with c_p = p + pad_before: each
    output phase is an ordinary correlation of x. One conv per row phase computes the column phases
    as channel groups; RESHAPE and CONCATENATION interleave them (no DEPTH_TO_SPACE: the reference
    kernels of ai-edge-litert lack its int8 version). Why: the converter's selective quantization
    cannot keep a TRANSPOSE_CONV in float, and int8 TRANSPOSE_CONV was the largest single error in
    the MediaPipe selfie model; as CONV_2Ds, mixed precision can keep these layers in float.
    """
    w = np.transpose(np.asarray(w_ohwi, np.float32), (1, 2, 0, 3))  # OHWI -> kh, kw, out, in
    kh, kw, cout, cin = w.shape
    (sh, sw), (_, in_h, in_w, _) = strides, [int(d) for d in x.shape]
    out_h, out_w = int(out_shape[1]), int(out_shape[2])

    def plan(k, s, size_in, size_out):
        pad = max((size_in - 1) * s + k - size_out, 0) // 2 if padding == "SAME" else 0
        taps = {(p, kk): (kk - (p + pad)) // s for p in range(s) for kk in range(k) if (kk - (p + pad)) % s == 0}
        d_max, d_min = max(taps.values()), min(taps.values())
        q = -(-size_out // s)  # outputs per phase along this axis
        span = d_max - d_min + 1
        return taps, d_max, span, q, d_max, max(q - 1 + span - d_max - size_in, 0)

    ty, dy_max, jh, qh, pt, pb = plan(kh, sh, in_h, out_h)
    tx, dx_max, jw, qw, pl, pr = plan(kw, sw, in_w, out_w)
    kernel = np.zeros((jh, jw, cin, sh * sw * cout), np.float32)
    for (py, ky), dy in ty.items():
        for (px, kx), dx in tx.items():
            phase = py * sw + px
            kernel[dy_max - dy, dx_max - dx, :, phase * cout : (phase + 1) * cout] = w[ky, kx].T
    xp = tf.pad(x, [[0, 0], [pt, pb], [pl, pr], [0, 0]])
    # The bias goes into each phase convolution (tiled over the column phases), not after the
    # interleave: a separate int8 ADD of a small constant has an input/output scale ratio XNNPACK
    # refuses (below 2^-10), which left the selfie's last op outside the delegate.
    phase_bias = None if bias is None else np.tile(np.asarray(bias, np.float32).reshape(-1), sw)
    rows = []
    for py in range(sh):  # channels (px * cout + c) of this row phase -> columns x * sw + px
        k_py = kernel[..., py * sw * cout : (py + 1) * sw * cout]
        y = tf.nn.conv2d(xp, k_py, strides=1, padding="VALID")
        if phase_bias is not None:
            y = tf.nn.bias_add(y, phase_bias)
        rows.append(tf.reshape(y[:, :qh, :qw, :], [-1, qh, qw * sw, cout]))
    y = tf.reshape(tf.concat(rows, axis=2), [-1, qh * sh, qw * sw, cout])  # row q*sh + py = rows[py][q]
    return y[:, :out_h, :out_w, :]


def _transpose_conv(tf, op, a, g):
    o = op.options
    out_shape = g.tensor(op.outputs[0]).shape
    bias = a[3] if len(a) > 3 else None
    y = _transpose_conv_core(tf, a[2], a[1], bias, out_shape, (o.strideH, o.strideW), _PADDING[o.padding])
    return _activation(tf, y, getattr(o, "fusedActivationFunction", 0))


def _conv2d_transpose_bias(tf, op, a, g):
    """MediaPipe custom op: TfLiteTransposeConvParams {padding (1 SAME, 2 VALID), stride_w, stride_h}."""
    if not op.custom_options or len(op.custom_options) < 12:
        raise UnsupportedOp(
            "Convolution2DTransposeBias without its 12-byte options",
            where=f"op #{op.index}",
            fix="the model file may be damaged",
        )
    pad, sw, sh = struct.unpack("<iii", op.custom_options[:12])
    padding = {1: "SAME", 2: "VALID"}.get(pad)
    if padding is None:
        raise UnsupportedOp(f"Convolution2DTransposeBias padding code {pad}", where=f"op #{op.index}")
    out_shape = g.tensor(op.outputs[0]).shape
    return _transpose_conv_core(tf, a[0], a[1], a[2] if len(a) > 2 else None, out_shape, (sh, sw), padding)


def is_global_average_pool(op: TfliteOp, g: TfliteGraph) -> bool:
    """AVERAGE_POOL_2D whose window covers the whole input and yields one value per channel.

    Re-emitted as MEAN over height and width (the same numbers: with the window equal to the
    input, SAME adds no padding): XNNPACK delegates int8 MEAN but not int8 AVERAGE_POOL_2D, and
    each of the selfie's ten squeeze-and-excitation pools split the int8 graph into another
    delegate partition.
    """
    if op.name != "AVERAGE_POOL_2D":
        return False
    o, shape = op.options, g.tensor(op.inputs[0]).shape
    return (
        len(shape) == 4
        and (o.filterHeight, o.filterWidth) == tuple(shape[1:3])
        and tuple(g.tensor(op.outputs[0]).shape[1:3]) == (1, 1)
    )


def _pool(kind):
    def f(tf, op, a, g):
        o = op.options
        if kind == "avg" and is_global_average_pool(op, g):
            return _activation(tf, tf.reduce_mean(a[0], axis=[1, 2], keepdims=True), o.fusedActivationFunction)
        pool = tf.nn.avg_pool2d if kind == "avg" else tf.nn.max_pool2d
        y = pool(
            a[0], ksize=[o.filterHeight, o.filterWidth], strides=[o.strideH, o.strideW], padding=_PADDING[o.padding]
        )
        return _activation(tf, y, o.fusedActivationFunction)

    return f


def _binary(fn_name):
    def f(tf, op, a, g):
        fn = {
            "add": tf.add,
            "mul": tf.multiply,
            "sub": tf.subtract,
            "div": tf.divide,
            "max": tf.maximum,
            "min": tf.minimum,
        }[fn_name]
        y = fn(a[0], a[1])
        return _activation(tf, y, getattr(op.options, "fusedActivationFunction", 0) if op.options else 0)

    return f


def _concat(tf, op, a, g):
    return _activation(tf, tf.concat(list(a), axis=op.options.axis), op.options.fusedActivationFunction)


def _resize(kind):
    def f(tf, op, a, g):
        o = op.options
        size = [int(s) for s in np.asarray(a[1]).reshape(-1)]
        raw = tf.raw_ops.ResizeBilinear if kind == "bilinear" else tf.raw_ops.ResizeNearestNeighbor
        return raw(
            images=a[0], size=size, align_corners=bool(o.alignCorners), half_pixel_centers=bool(o.halfPixelCenters)
        )

    return f


def _strided_slice(tf, op, a, g):
    o = op.options
    begin, end, strides = (np.asarray(x).astype(np.int32) for x in a[1:4])
    if getattr(o, "offset", False):
        end = begin + end
    return tf.strided_slice(
        a[0],
        begin,
        end,
        strides,
        begin_mask=o.beginMask,
        end_mask=o.endMask,
        ellipsis_mask=o.ellipsisMask,
        new_axis_mask=o.newAxisMask,
        shrink_axis_mask=o.shrinkAxisMask,
    )


def _reshape(tf, op, a, g):
    shape = list(g.tensor(op.outputs[0]).shape)
    return tf.reshape(a[0], shape)


def _pad(tf, op, a, g):
    return tf.pad(a[0], np.asarray(a[1]).astype(np.int32))


def _mean(tf, op, a, g):
    return tf.reduce_mean(a[0], axis=[int(x) for x in np.asarray(a[1]).reshape(-1)], keepdims=bool(op.options.keepDims))


def _softmax(tf, op, a, g):
    return tf.nn.softmax(a[0] * op.options.beta if op.options.beta != 1.0 else a[0])


def _leaky_relu(tf, op, a, g):
    return leaky_relu(tf, a[0], op.options.alpha)


def _prelu(tf, op, a, g):
    alpha = a[1]
    return tf.maximum(a[0], 0.0) + alpha * tf.minimum(a[0], 0.0)


def hard_swish_delegable(tf, x):
    """hard-swish(x) = x * relu6(x + 3) / 6, written as (x / 6) * relu6(x + 3): ADD (fused RELU6),
    MUL by a constant, MUL.

    The converter fuses the textbook form back into one HARD_SWISH op, which XNNPACK does not
    delegate in int8: the selfie's eleven int8 HARD_SWISH ops each cut its graph into another
    delegate partition. This order escapes the fusion pattern; all three ops delegate in int8
    and float alike.
    """
    return (x * (1.0 / 6.0)) * tf.nn.relu6(x + 3.0)


def _dequantize(tf, op, a, g):
    # Weights stored as float16 (or int8 with a scale) behind DEQUANTIZE become float32 constants.
    t = g.tensor(op.inputs[0])
    if t.data is None:
        raise UnsupportedOp(
            "DEQUANTIZE of a non-constant tensor (a quantized model?)",
            where=f"op #{op.index} ({t.name})",
            fix="import the float model instead",
        )
    return np.asarray(t.dequantized(), np.float32)


_OPS = {
    "CONV_2D": _conv2d,
    "DEPTHWISE_CONV_2D": _depthwise,
    "TRANSPOSE_CONV": _transpose_conv,
    "Convolution2DTransposeBias": _conv2d_transpose_bias,
    "AVERAGE_POOL_2D": _pool("avg"),
    "MAX_POOL_2D": _pool("max"),
    "ADD": _binary("add"),
    "MUL": _binary("mul"),
    "SUB": _binary("sub"),
    "DIV": _binary("div"),
    "MAXIMUM": _binary("max"),
    "MINIMUM": _binary("min"),
    "CONCATENATION": _concat,
    "RESIZE_BILINEAR": _resize("bilinear"),
    "RESIZE_NEAREST_NEIGHBOR": _resize("nearest"),
    "STRIDED_SLICE": _strided_slice,
    "RESHAPE": _reshape,
    "PAD": _pad,
    "MEAN": _mean,
    "SOFTMAX": _softmax,
    "LEAKY_RELU": _leaky_relu,
    "PRELU": _prelu,
    "DEQUANTIZE": _dequantize,
    "RELU": lambda tf, op, a, g: tf.nn.relu(a[0]),
    "RELU6": lambda tf, op, a, g: tf.nn.relu6(a[0]),
    "LOGISTIC": lambda tf, op, a, g: tf.sigmoid(a[0]),
    "TANH": lambda tf, op, a, g: tf.tanh(a[0]),
    "RSQRT": lambda tf, op, a, g: tf.math.rsqrt(a[0]),  # the inverse-depth output transform (conversions.py)
    "HARD_SWISH": lambda tf, op, a, g: hard_swish_delegable(tf, a[0]),
}

SUPPORTED_OPS = tuple(sorted(_OPS))


def check_supported(graph: TfliteGraph) -> None:
    for op in graph.ops:
        if op.name not in _OPS:
            outs = ", ".join(graph.tensor(i).name for i in op.outputs)
            raise UnsupportedOp(
                f"operator {op.name} is not supported by the float-TFLite importer",
                where=f"{graph.path.name}, op #{op.index} (output {outs})",
                fix="supported: " + ", ".join(SUPPORTED_OPS),
            )
    for i in graph.inputs:
        if graph.tensor(i).dtype is not np.float32:
            raise UnsupportedOp(
                f"input {graph.tensor(i).name!r} is {getattr(graph.tensor(i).dtype, '__name__', 'of an unread type')}, not float32;"
                " this importer takes float models",
                where=str(graph.path),
                fix="import the float version of the model",
            )


def emit(
    graph: TfliteGraph,
    x,
    *,
    output_indices: list[int] | None = None,
    keep_intermediates: bool = False,
    leaky_relu_form: str = "op",
):
    """Run the graph's ops as TF ops on input tensor `x` (NHWC float32).

    Returns the list of output tensors (graph outputs, or `output_indices`), and with
    keep_intermediates the dict tensor-index -> TF tensor as well (for per-layer comparison).
    """
    # TensorFlow: ~3 s to import, so it loads only when a conversion runs (`portrait --help` stays fast)
    import tensorflow as tf

    check_supported(graph)
    values: dict[int, object] = {graph.inputs[0]: x}
    leaky = leaky_relu_pattern(graph)
    split = concat_conv_pattern(graph)
    parts: dict[int, list] = {}  # concat output tensor -> its parts, for a split conv (see below)
    for op in graph.ops:
        if op.index in split:  # CONCATENATION feeding one CONV_2D: kept as parts
            parts[op.outputs[0]] = [values[i] for i in op.inputs]
            continue
        if op.name == "CONV_2D" and op.inputs[0] in parts:
            const = lambda i: values[i] if i in values else graph.tensor(i).dequantized()  # noqa: E731
            bias = const(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
            y = _split_conv(tf, op, parts[op.inputs[0]], const(op.inputs[1]), bias)
            values[op.outputs[0]] = tf.identity(y, name=_tf_name(graph.tensor(op.outputs[0]).name))
            continue
        if op.index in leaky:  # MAXIMUM(x, MUL(x, alpha)) -> LEAKY_RELU: see leaky_relu_pattern
            src, alpha = leaky[op.index]
            values[op.outputs[0]] = tf.identity(
                leaky_relu(tf, values[src], alpha, leaky_relu_form), name=_tf_name(graph.tensor(op.outputs[0]).name)
            )
            continue
        args: list = []
        for i in op.inputs:
            if i < 0:
                args.append(None)
            elif i in values:
                args.append(values[i])
            else:
                t = graph.tensor(i)
                if t.data is None:
                    raise ModelFormatError(
                        f"tensor {t.name!r} is read before it is written", where=f"op #{op.index} {op.name}"
                    )
                args.append(t.dequantized())
        if op.name == "LEAKY_RELU":  # written in the asked form (sources/leaky_relu.py)
            y = leaky_relu(tf, args[0], op.options.alpha, leaky_relu_form)
        else:
            y = _OPS[op.name](tf, op, args, graph)
        ys = y if isinstance(y, (list, tuple)) else [y]
        for idx, val in zip(op.outputs, ys):
            if isinstance(val, np.ndarray):
                values[idx] = val
            else:
                values[idx] = tf.identity(val, name=_tf_name(graph.tensor(idx).name))
    wanted = output_indices or graph.outputs
    outs = [values[i] for i in wanted]
    return (outs, values) if keep_intermediates else outs


def concat_conv_pattern(graph: TfliteGraph) -> set[int]:
    """Channel CONCATENATIONs (no activation) whose output feeds exactly one CONV_2D and nothing else.

    Re-emitted as a sum of convolutions over the parts (conv(concat(a, b), W) = conv(a, Wa) +
    conv(b, Wb)): int8 CONCATENATION forces one scale on all its inputs, which crushes a
    small-range input concatenated with a large-range one (PyDNet++'s decoder joins encoder
    features of range ~1 with upsampled features of range ~1000); int8 ADD rescales each input.
    """
    consumers: dict[int, list[TfliteOp]] = {}
    for op in graph.ops:
        for i in op.inputs:
            consumers.setdefault(i, []).append(op)
    found = set()
    for op in graph.ops:
        if op.name != "CONCATENATION" or op.options.fusedActivationFunction:
            continue
        rank = len(graph.tensor(op.outputs[0]).shape)
        if op.options.axis not in (-1, rank - 1) or op.outputs[0] in graph.outputs:
            continue
        users = consumers.get(op.outputs[0], [])
        if len(users) == 1 and users[0].name == "CONV_2D" and users[0].inputs[0] == op.outputs[0]:
            found.add(op.index)
    return found


def _split_conv(tf, op, part_values, w_ohwi, bias):
    """CONV_2D over a concatenation, as the sum of one convolution per part (see concat_conv_pattern)."""
    o = op.options
    w = np.transpose(np.asarray(w_ohwi), (1, 2, 3, 0))  # HWIO
    y, start = None, 0
    for v in part_values:
        c = int(v.shape[-1])
        term = tf.nn.conv2d(
            v,
            w[:, :, start : start + c, :],
            strides=[1, o.strideH, o.strideW, 1],
            padding=_PADDING[o.padding],
            dilations=[1, o.dilationHFactor, o.dilationWFactor, 1],
        )
        y = term if y is None else y + term
        start += c
    if bias is not None:
        y = tf.nn.bias_add(y, np.asarray(bias))
    return _activation(tf, y, o.fusedActivationFunction)


def leaky_relu_pattern(graph: TfliteGraph) -> dict[int, tuple[int, float]]:
    """MAXIMUM ops that compute max(x, alpha * x) with a constant 0 < alpha < 1: op index ->
    (x tensor, alpha).

    Re-emitted as one leaky ReLU: int8 MAXIMUM shares one scale across its inputs and output, so
    the MUL/MAXIMUM pair clips x's negative side to alpha times its range (PyDNet++ lost half its
    δ1 to this); LEAKY_RELU has its own input and output scales.
    """
    producer = {o: op for op in graph.ops for o in op.outputs}
    found = {}
    for op in graph.ops:
        if op.name != "MAXIMUM" or len(op.inputs) != 2:
            continue
        for a, b in (op.inputs, op.inputs[::-1]):
            mul = producer.get(b)
            if mul is None or mul.name != "MUL" or a not in mul.inputs:
                continue
            other = graph.tensor(mul.inputs[1] if mul.inputs[0] == a else mul.inputs[0])
            if other.data is None or other.data.size != 1 or getattr(mul.options, "fusedActivationFunction", False):
                continue
            alpha = float(np.asarray(other.dequantized()).reshape(-1)[0])
            if 0.0 < alpha < 1.0:
                found[op.index] = (a, alpha)
                break
    return found


def output_key(name: str) -> str:
    """Signature key for an output name (letters, digits and underscores only)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _tf_name(name: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9_.\-/]", "_", name).strip("/") or "t"
    return clean if clean[0].isalnum() else "t" + clean


def import_tflite(
    entry, path, workdir, *, outputs: list[int] | None = None, with_labels: bool = False, leaky_relu_form: str = "op"
):
    """Float .tflite -> FloatModel (SavedModel, pixel input). `outputs`: positions in the graph's
    output list to keep (e.g. [0] for PyDNet++'s finest scale). leaky_relu_form: how leaky ReLUs are
    written (sources/leaky_relu.py; "relu_min" or "prelu" for an int8 file both kernel sets round alike)."""

    graph = read_tflite(path)
    check_supported(graph)
    h, w = entry.input.size
    in_shape = graph.tensor(graph.inputs[0]).shape
    if tuple(in_shape[1:3]) != (h, w):
        raise ModelFormatError(
            f"{Path(path).name} takes input {list(in_shape)}, the registry says {h}x{w}",
            where=str(path),
            fix=f"fix input.size of {entry.id} in models/registry.toml",
        )
    positions = list(outputs) if outputs is not None else list(range(len(graph.outputs)))
    keep = [graph.outputs[i] for i in positions]
    names = [output_key(entry.outputs[i]["name"]) for i in positions]
    out_dir = Path(workdir) / (f"{entry.id}_float" + ("_labels" if with_labels else ""))
    save_pixel_model(
        lambda x: emit(graph, x, output_indices=keep, leaky_relu_form=leaky_relu_form),
        input_hw=(h, w),
        scale=entry.input.scale,
        offset=entry.input.offset,
        output_names=names,
        out_dir=out_dir,
        with_labels=with_labels,
    )
    return FloatModel(
        entry.id,
        out_dir,
        (h, w),
        ["labels"] if with_labels else names,
        Path(path),
        "tflite",
        notes={"ops": sorted(set(graph.op_names()))},
    )


def has_quantized_weights(graph: TfliteGraph) -> bool:
    """True for hybrid (dynamic-range) files: int8 constant weights feeding float ops."""
    return any(
        t.data is not None and t.dtype in (np.int8, np.uint8) and t.scales is not None and len(t.scales)
        for t in graph.tensors
    )


def float_reference_bytes(path: str | Path) -> bytes:
    """The same .tflite with every quantized constant weight replaced by its float32 value.

    A hybrid file runs its convolutions on dynamically quantized activations, so it is not a float
    reference itself; this copy is, and the import is checked against it (the file as-is is
    reported beside, as the source's own quantization noise).
    """
    # TensorFlow: ~3 s to import, so it loads only when a conversion runs (`portrait --help` stays fast)
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    graph = read_tflite(path)
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(Path(path).read_bytes(), 0))
    sg = model.subgraphs[0]
    for t in graph.tensors:
        if t.data is None or t.dtype not in (np.int8, np.uint8) or t.scales is None or not len(t.scales):
            continue
        buf = schema.BufferT()
        buf.data = np.frombuffer(np.ascontiguousarray(t.dequantized(), np.float32).tobytes(), np.uint8)
        model.buffers.append(buf)
        ft = sg.tensors[t.index]
        ft.buffer = len(model.buffers) - 1
        ft.type = 0  # FLOAT32
        ft.quantization = None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
