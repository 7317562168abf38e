"""Conversions the precision ladder needs beyond `quantize.convert`: int8 weights with int16
activations (16x8), the client contract on the input (uint8 pixels), and output transforms
computed inside the graph (PyDNet++: depth -> inverse depth).

Not for: choosing a rung (ladder.py) or judging parity (parity/gate.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import ExportError, RecipeError
from ..sources import INPUT_NAME, SIGNATURE, FloatModel
from . import flatbuffer
from .calibration import representative_gen, shared_calibration
from .precisions import tf_converter

# TFLite schema TensorType / BuiltinOperator values used by the surgery below
_FLOAT32, _INT32, _UINT8, _INT16, _INT8 = 0, 2, 3, 7, 9
_DEQUANTIZE, _CAST, _QUANTIZE = 6, 53, 114


def convert_16x8(
    model,
    out_path: Path,
    representative: np.ndarray,
    *,
    output: str = "int16",
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Whole model with int8 weights and int16 activations
    (EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8, no float fallback), then
    `uint8_input` so the file takes uint8 pixels like every int8 rung. output "int16" keeps the
    converter's int16 output; "int8" requantizes it (MediaPipe's segmenter refuses int16 outputs)."""
    if output not in ("int16", "int8"):
        raise ExportError(f"16x8 output must be int16 or int8, got {output!r}")
    # TensorFlow: ~3 s to import, so it loads only when a conversion runs (`portrait --help` stays fast)
    import tensorflow as tf

    if representative is None or len(representative) == 0:
        raise ExportError("16x8 conversion needs a representative dataset", fix="see calibration_set.py")
    conv = tf_converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    conv.inference_input_type = tf.int16  # the converter allows only float32/int16 here; see uint8_input
    conv.inference_output_type = tf.int16
    conv.representative_dataset = representative_gen(representative, progress)
    # One calibration pass instead of two. With the new quantizer on (the default), TF 2.21's
    # `_quantize` first calibrates for the MLIR quantizer, then, for int16 activations only, discards
    # that and calls `calibrate_and_quantize`, which calibrates again. int16 is quantized by that
    # second path either way, so turning the flag off changes nothing but the time (PyDNet++ at
    # 448x640: half of a ~450 s conversion) and the io tensors' names, restored below.
    conv.experimental_new_quantizer = False
    t0 = time.monotonic()
    try:
        with shared_calibration(representative, progress):  # the ranges of the w8a8 pass when the graph is the same
            blob = conv.convert()
    except Exception as exc:
        raise ExportError(
            f"16x8 conversion failed for {model.model_id}: {exc}",
            fix="an op without an int16 kernel: re-emit it from supported ops in the importer "
            "(hard-swish is emitted unfused for this rung)",
        ) from exc
    blob, fixed = rescale_shared_biases(blob)
    if progress and fixed:
        progress(
            f"16x8: {len(fixed)} convolution(s) given their own bias (the converter had them share "
            f"another layer's, on that layer's scale): {', '.join(fixed)}"
        )
    blob = uint8_input_bytes(_io_names_unsuffixed(blob, "_int16"))
    out_path.write_bytes(int8_output_bytes(blob) if output == "int8" else blob)
    if progress:
        progress(f"16x8 ({output} output): {len(blob) / 1e6:.2f} MB in {time.monotonic() - t0:.1f} s")
    return out_path


_BIAS_INPUT = {3: 2, 4: 2, 9: 2, 67: 3}  # CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED: input 2; TRANSPOSE_CONV: 3
_INT_RANGE = {_INT32: (-(2**31), 2**31 - 1), 4: (-(2**63), 2**63 - 1)}  # INT32, INT64 bias tensors


def _bias_uses(model) -> list[tuple[int, int, np.ndarray]]:
    """(op index, bias tensor, the scale its bias must have: input scale x weight scale per
    channel) for every quantized convolution / fully-connected op with an integer bias."""
    sg = model.subgraphs[0]
    out = []
    for i, op in enumerate(sg.operators):
        code = model.operatorCodes[op.opcodeIndex]
        pos = _BIAS_INPUT.get(max(code.builtinCode, code.deprecatedBuiltinCode))
        ins = [int(t) for t in op.inputs]
        if pos is None or pos >= len(ins) or ins[pos] < 0:
            continue
        x, w, b = (sg.tensors[ins[j]] for j in ((2 if pos == 3 else 0), 1, pos))
        if b.type not in _INT_RANGE or not all(_scaled(t.quantization) for t in (x, w, b)):
            continue
        n = int(np.prod(b.shape))
        want = float(np.asarray(x.quantization.scale)[0]) * np.asarray(w.quantization.scale, np.float64)
        out.append((i, ins[pos], np.broadcast_to(want, (n,)).copy()))
    return out


def _tname(t) -> str:
    """A TensorT's name as str (the object API gives bytes)."""
    return t.name.decode(errors="replace") if isinstance(t.name, bytes) else str(t.name)


def _scaled(q) -> bool:
    return q is not None and q.scale is not None and len(q.scale) > 0


def _bias_scale(t, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(t.quantization.scale, np.float64), (n,))


def bias_scale_mismatches(blob: bytes) -> list[str]:
    """Ops whose integer bias is on another scale than input scale x weight scale, i.e. whose bias
    the kernel reads wrongly: "op N (tensor name): off by up to X" for each. Empty for a sound file."""
    model = flatbuffer.read(blob)
    sg = model.subgraphs[0]
    bad = []
    for i, b, want in _bias_uses(model):
        have = _bias_scale(sg.tensors[b], len(want))
        if not np.allclose(have, want, rtol=1e-5, atol=0):
            name = _tname(sg.tensors[b])
            ratio = np.max(np.abs(have / want - 1))
            bad.append(f"op {i} ({name}): bias scale off by up to {ratio:.0%}")
    return bad


def rescale_shared_biases(blob: bytes) -> tuple[bytes, list[str]]:
    """Give every convolution that shares an integer bias tensor on another op's scale a bias of
    its own, requantized onto its input scale x weight scale.

    TF's old quantizer (the 16x8 path) quantizes a bias tensor once, for its first user. When the
    float graph shares one bias constant between convolutions (the converter merges equal
    constants: the selfie segmenter's two transposed-conv phases both add 0.533), the others read
    it on the wrong scale. Measured on the selfie's w8a16 file: the odd output rows' logits came out
    0.22-0.30 low, 8x the error of the even rows. Returns the new bytes and the ops changed."""
    schema = flatbuffer.schema()

    model = flatbuffer.read(blob)
    sg = model.subgraphs[0]
    fixed = []
    for i, b, want in _bias_uses(model):
        t = sg.tensors[b]
        have = _bias_scale(t, len(want))
        if np.allclose(have, want, rtol=1e-5, atol=0):
            continue
        dtype = np.int32 if t.type == _INT32 else np.int64
        q = np.frombuffer(bytes(model.buffers[t.buffer].data), dtype).astype(np.float64)
        real = q * have  # the value its first user reads
        lo, hi = _INT_RANGE[t.type]
        new_q = np.clip(np.round(real / want), lo, hi).astype(dtype)
        buf = schema.BufferT()
        buf.data = np.frombuffer(new_q.tobytes(), np.uint8)
        model.buffers.append(buf)
        clone = schema.TensorT()
        clone.shape, clone.type, clone.buffer = list(t.shape), t.type, len(model.buffers) - 1
        base = _tname(t)
        clone.name = f"{base}_op{i}".encode()
        qp = schema.QuantizationParametersT()
        qp.scale, qp.zeroPoint = [float(v) for v in want], [0] * len(want)
        qp.quantizedDimension = 0
        clone.quantization = qp
        sg.tensors.append(clone)
        ins = [int(v) for v in sg.operators[i].inputs]
        ins[ins.index(b)] = len(sg.tensors) - 1
        sg.operators[i].inputs = np.asarray(ins, dtype=np.int32)
        fixed.append(f"op {i} ({base})")
    if not fixed:
        return bytes(blob), []
    return flatbuffer.write(model), fixed


def _io_names_unsuffixed(blob: bytes, suffix: str) -> bytes:
    """The model's input and output tensors renamed without `suffix` (the old quantizer's io-type
    pass appends "_int16"), so the file reads the same as with the new quantizer's naming."""

    model = flatbuffer.read(blob)
    sg = model.subgraphs[0]
    changed = False
    for i in list(sg.inputs) + list(sg.outputs):
        t = sg.tensors[int(i)]
        name = _tname(t)
        if name.endswith(suffix):
            t.name, changed = name[: -len(suffix)].encode(), True
    return flatbuffer.write(model) if changed else bytes(blob)


def uint8_input(path: Path) -> Path:
    """Rewrite `path` in place so that it takes uint8 pixels (scale 1, zero point 0); see
    `uint8_input_bytes`."""
    path = Path(path)
    path.write_bytes(uint8_input_bytes(path.read_bytes()))
    return path


def uint8_input_bytes(blob: bytes) -> bytes:
    """The client contract: every integer handoff takes RGB pixels 0..255 as uint8.

    An int8 input (e.g. zero point -128 from selective quantization) gets a QUANTIZE uint8 -> int8
    in front; an int16 input (16x8) gets CAST uint8 -> int16 (the pixel value, scale 1) and a
    QUANTIZE int16 -> int16 requantization onto the network's input scale. Both are integer ops
    on every kernel set. A file that already takes uint8 with scale 1 and zero point 0, or a float
    input, is returned unchanged."""
    schema = flatbuffer.schema()

    model = flatbuffer.read(blob)
    sg = model.subgraphs[0]
    if len(sg.inputs) != 1:
        raise ExportError(
            f"expected one model input, found {len(sg.inputs)}", fix="the pixel contract assumes a single image input"
        )
    old = int(sg.inputs[0])
    t_old = sg.tensors[old]
    if t_old.type in (_FLOAT32,):
        return bytes(blob)
    q = t_old.quantization
    if t_old.type == _UINT8 and q is not None and _q1(q):
        return bytes(blob)
    if t_old.type not in (_INT8, _INT16, _UINT8):
        raise ExportError(f"cannot give a uint8 pixel input to a model whose input type is {t_old.type}")

    def new_tensor(name, ttype, scale, zp):
        t = schema.TensorT()
        t.shape = np.array(t_old.shape, np.int32)
        t.shapeSignature = None if t_old.shapeSignature is None else np.array(t_old.shapeSignature, np.int32)
        t.type, t.name = ttype, name.encode() if isinstance(name, str) else name
        buf = schema.BufferT()
        model.buffers.append(buf)
        t.buffer = len(model.buffers) - 1
        qp = schema.QuantizationParametersT()
        qp.scale, qp.zeroPoint = np.array([scale], np.float32), np.array([zp], np.int64)
        t.quantization = qp
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    old_name = _tname(t_old)
    t_old.name = (old_name + "_quantized").encode()
    pixel = new_tensor(old_name, _UINT8, 1.0, 0)
    ops = []
    if t_old.type == _INT16:
        cast = new_tensor(old_name + "_int16_pixels", _INT16, 1.0, 0)
        ops.append((_CAST, [pixel], [cast]))
        ops.append((_QUANTIZE, [cast], [old]))
    else:
        ops.append((_QUANTIZE, [pixel], [old]))
    new_ops = []
    for code, ins, outs in ops:
        op = schema.OperatorT()
        op.opcodeIndex = _opcode(model, schema, code)
        op.inputs, op.outputs = np.array(ins, np.int32), np.array(outs, np.int32)
        new_ops.append(op)
    sg.operators = new_ops + list(sg.operators)
    sg.inputs = np.array([pixel], np.int32)
    for sig in model.signatureDefs or []:
        for tm in sig.inputs or []:
            if tm.tensorIndex == old:
                tm.tensorIndex = pixel
    return flatbuffer.write(model)


def _edge_outputs(blob: bytes, edge) -> bytes:
    """Append one op after each graph output that `edge(t_old, schema)` maps to (tensor, opcode, version),
    renaming the old output `<name>_<old type>` and pointing the outputs and signatures at the new tensor.
    `edge` returns None for an output it leaves alone; a file with no such output comes back unchanged."""
    schema = flatbuffer.schema()
    model = flatbuffer.read(blob)
    sg = model.subgraphs[0]
    new_outputs, renamed = [], {}
    for old in [int(i) for i in sg.outputs]:
        t_old = sg.tensors[old]
        made = edge(t_old, schema)
        if made is None:
            new_outputs.append(old)
            continue
        t, code, version = made
        t.shape = np.array(t_old.shape, np.int32)
        t.shapeSignature = None if t_old.shapeSignature is None else np.array(t_old.shapeSignature, np.int32)
        t.name = t_old.name
        t_old.name = _tname(t_old).encode() + (b"_int8" if t_old.type == _INT8 else b"_int16")
        model.buffers.append(schema.BufferT())
        t.buffer = len(model.buffers) - 1
        sg.tensors.append(t)
        idx = len(sg.tensors) - 1
        op = schema.OperatorT()
        op.opcodeIndex = _opcode(model, schema, code, version)
        op.inputs, op.outputs = np.array([old], np.int32), np.array([idx], np.int32)
        sg.operators = list(sg.operators) + [op]
        new_outputs.append(idx)
        renamed[old] = idx
    if not renamed:
        return bytes(blob)
    sg.outputs = np.array(new_outputs, np.int32)
    for sig in model.signatureDefs or []:
        for tm in sig.outputs or []:
            if tm.tensorIndex in renamed:
                tm.tensorIndex = renamed[tm.tensorIndex]
    return flatbuffer.write(model)


def _quantization(scale: float, zero_point: int, schema):
    qp = schema.QuantizationParametersT()
    qp.scale = np.array([scale], np.float32)
    qp.zeroPoint = np.array([zero_point], np.int64)
    return qp


def int8_output_bytes(blob: bytes) -> bytes:
    """Every int16 graph output gets a QUANTIZE int16 -> int8 after it (symmetric: the int16 range
    +-32767 * s maps onto +-127, zero point 0), an integer op on every kernel set."""

    def edge(t_old, schema):
        if t_old.type != _INT16:
            return None
        t = schema.TensorT()
        t.type = _INT8
        t.quantization = _quantization(float(t_old.quantization.scale[0]) * 32767.0 / 127.0, 0, schema)
        return t, _QUANTIZE, None

    return _edge_outputs(blob, edge)


def web_output_bytes(blob: bytes) -> bytes:
    """The output edge web runtimes can read, around the same integer core.

    LiteRT.js (@litertjs/core 2.5) maps only FLOAT32, INT32 and UINT8 signature tensors to typed
    arrays: a model with an int8 or int16 input or output does not load ("Element type INT8 is not
    supported", src/datatypes.ts getDataType, called for every signature tensor), while its kernels
    run int8 and int16 layers inside. So:
    - an int8 output gets QUANTIZE int8 -> uint8 on the same scale, zero point + 128: an integer op
      that maps every value exactly (the file stays integer-only);
    - an int16 output gets DEQUANTIZE -> float32 (real values, exact): uint8 would throw away the
      16 bits the recipe kept them for. It is the graph's one float op, at the output edge
      (ladder.op_counts counts it as an edge op, not a float op of the core).
    Other outputs are left alone; a file without int8/int16 outputs is returned unchanged."""

    def edge(t_old, schema):
        t = schema.TensorT()
        if t_old.type == _INT8:
            t.type = _UINT8
            q = t_old.quantization
            t.quantization = _quantization(float(q.scale[0]), int(q.zeroPoint[0]) + 128, schema)
            return t, _QUANTIZE, 2
        if t_old.type == _INT16:
            t.type = _FLOAT32
            return t, _DEQUANTIZE, 3  # DEQUANTIZE v3: int16 (and float16) input
        return None

    return _edge_outputs(blob, edge)


def web_output(path: Path) -> Path:
    """Rewrite `path` in place with `web_output_bytes`."""
    path = Path(path)
    blob = path.read_bytes()
    new = web_output_bytes(blob)
    if new != blob:
        path.write_bytes(new)
    return path


def _q1(q) -> bool:
    scale = list(q.scale) if q.scale is not None else []
    zp = list(q.zeroPoint) if q.zeroPoint is not None else [0]
    return len(scale) == 1 and float(scale[0]) == 1.0 and int(zp[0]) == 0


def _opcode(model, schema, code: int, version: int | None = None) -> int:
    """The operator-code index of `code`, added when absent; `version` raises an existing one's."""
    for i, oc in enumerate(model.operatorCodes):
        if max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode)) == code:
            if version is not None and int(oc.version) < version:
                oc.version = version
            return i
    oc = schema.OperatorCodeT()
    oc.builtinCode, oc.deprecatedBuiltinCode = code, min(code, 127)
    # QUANTIZE v2: int8/uint8 requantization (int16 is handled by v1+ kernels)
    oc.version = version if version is not None else 1 if code == _CAST else 2
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


# ---- output transforms inside the graph ------------------------------------------------------

TRANSFORMS = ("inverse",)


def transform_settings(recipe: dict) -> dict | None:
    """The recipe's [output_transform] (None when absent), validated."""
    cfg = recipe.get("output_transform")
    if not cfg:
        return None
    kind = cfg.get("kind")
    if kind not in TRANSFORMS:
        raise RecipeError(
            f"output_transform.kind must be one of {TRANSFORMS}, got {kind!r}", where=recipe.get("_path", "recipe")
        )
    floor = float(cfg.get("floor", 0.1))
    if not floor > 0:
        raise RecipeError("output_transform.floor must be > 0", where=recipe.get("_path", "recipe"))
    return {
        "kind": kind,
        "floor": floor,
        "meaning": cfg.get("meaning", ""),
        "formula": f"y = 1 / max(x, {floor:g}), computed as rsqrt(max(x, {floor:g}))^2",
    }


def apply_output_transform(model, settings: dict | None, workdir: Path):
    """A FloatModel whose outputs are transformed inside the graph (before any integer output).

    "inverse": y = rsqrt(max(x, floor))^2 = 1 / max(x, floor). Written with RSQRT and MUL because
    TFLite has int8 and int16 kernels for both, while DIV has no 16x8 kernel."""
    if not settings:
        return model
    # TensorFlow: ~3 s to import, so it loads only when a conversion runs (`portrait --help` stays fast)
    import tensorflow as tf

    loaded = tf.saved_model.load(str(model.saved_model_dir))
    fn = loaded.signatures[SIGNATURE]
    floor = tf.constant(settings["floor"], tf.float32)
    h, w = model.input_hw

    def serve(image):
        outs = fn(**{INPUT_NAME: image})
        res = {}
        for k, v in outs.items():
            r = tf.math.rsqrt(tf.maximum(v, floor))
            res[k] = r * r
        return res

    module = tf.Module()
    module.base = loaded
    module.serve = tf.function(serve, input_signature=[tf.TensorSpec([1, h, w, 3], tf.float32, name=INPUT_NAME)])
    out_dir = Path(workdir) / (Path(model.saved_model_dir).name + f"_{settings['kind']}")
    tf.saved_model.save(module, str(out_dir), signatures={SIGNATURE: module.serve})
    return FloatModel(
        model.model_id,
        out_dir,
        model.input_hw,
        list(model.output_names),
        model.source_path,
        model.source_format,
        notes={**model.notes, "output_transform": settings},
    )
