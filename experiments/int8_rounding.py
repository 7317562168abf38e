"""Two int8 rounding edits to an exported file, judged by the export's own parity gate. Neither is kept.

    PORTRAIT_MODELS_DIR=../shared/models PORTRAIT_DATA_DIR=../shared \\
    .venv/bin/python -m experiments.int8_rounding islands export/out/pydnet_pp_mobile
    .venv/bin/python -m experiments.int8_rounding input-grid export/out/deeplabv3_mnv2_pascal_257 \\
        --scales 0.0078740157 0.0078125 0.0079

islands: every int8 LEAKY_RELU of the bundle's int8 file becomes DEQUANTIZE -> float LEAKY_RELU ->
QUANTIZE on the same int8 tensors, so each activation is rounded exactly (round(leaky(x) / s) + z) on
both kernel sets instead of by each kernel's fixed-point requantization. Measured on PyDNet++ (36 leaky
ReLUs; XNNPACK / reference, worst image): δ1 0.952 / 0.957, AbsRel 0.082 / 0.074, blur mean 3.65 / 3.15 px,
against the op's 0.972 / 0.993. Exact rounding is no better than the kernels' own: the loss is in the
activation grids, not in the leaky ReLU's rounding (the reference kernel's 0.993 is its negative-branch
bias happening to help).

input-grid: DeepLab's first ops are the normalization x / 127.5 - 1 (MUL, ADD). On the converter's grid
for [-1, 1] (step 2/255) every pixel value lands exactly half-way between two int8 levels, and XNNPACK
and the reference kernels break that tie differently: the ADD is where the two kernel sets first part
(`toolchain.quantize.kernel_gap`). Here the ADD's output gets another step (zero point 0) with the
first convolution's bias requantized to match, so no value is a tie. Measured (worst image, pixel
agreement / worst-class IoU; the bundle's file: photos 0.9967 / 0.9876 both sets, depth photos XNNPACK
0.9811 / 0.81, reference 0.9488 / 0.81): step 1/127 photos 0.9951 / 0.9930 (XNNPACK / reference), depth
photos 0.9769 / 0.9824; 1/128 photos 0.9921 / 0.9946, depth 0.9435 / 0.9837; 0.0079 photos 0.9949 /
0.9938, depth 0.9809 / 0.9814. The reference kernels' depth-photo figure rises by ~0.03 in every
variant, but the photos fall under their 0.995 budget on one kernel set in every variant, and the
figures swing by +-0.02 for a 1 % change of one step: the hesitant pixels of those photos flip on any
perturbation (their output-grid bound is 0.9856), so no variant is a fix rather than a draw.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

import numpy as np

from toolchain.parity.bundle_parity import parity_model
from toolchain.quantize import flatbuffer
from toolchain.quantize.flatbuffer import FLOAT32, INT8, op_names


def _opcode(model, builtin: int, version: int) -> int:
    for k, c in enumerate(model.operatorCodes):
        if max(c.builtinCode, c.deprecatedBuiltinCode) == builtin and c.version == version:
            return k
    c = flatbuffer.schema().OperatorCodeT()
    c.builtinCode, c.deprecatedBuiltinCode, c.version = builtin, min(builtin, 127), version
    model.operatorCodes.append(c)
    return len(model.operatorCodes) - 1


def float_islands(blob: bytes, op_name: str = "LEAKY_RELU") -> tuple[bytes, int]:
    """Each int8 `op_name` op as DEQUANTIZE -> float op -> QUANTIZE between the same int8 tensors."""
    s = flatbuffer.schema()
    b = s.BuiltinOperator
    model = flatbuffer.read(blob)
    sg = model.subgraphs[0]
    names = op_names(model)
    dq, q, fl = _opcode(model, b.DEQUANTIZE, 2), _opcode(model, b.QUANTIZE, 2), _opcode(model, getattr(b, op_name), 1)
    ops, n = [], 0
    for op, name in zip(sg.operators, names):
        if name != op_name or sg.tensors[op.inputs[0]].type != INT8:
            ops.append(op)
            continue

        def float_copy(t: int, suffix: bytes) -> int:
            f = copy.deepcopy(sg.tensors[t])
            f.type, f.quantization, f.buffer, f.name = FLOAT32, None, 0, sg.tensors[t].name + suffix
            sg.tensors.append(f)
            return len(sg.tensors) - 1

        fi, fo = float_copy(op.inputs[0], b"_f32in"), float_copy(op.outputs[0], b"_f32out")
        first, last = s.OperatorT(), s.OperatorT()
        first.opcodeIndex, first.inputs, first.outputs = dq, [op.inputs[0]], [fi]
        middle = copy.deepcopy(op)
        middle.opcodeIndex, middle.inputs, middle.outputs = fl, [fi], [fo]
        last.opcodeIndex, last.inputs, last.outputs = q, [fo], [op.outputs[0]]
        ops += [first, middle, last]
        n += 1
    sg.operators = ops
    return flatbuffer.write(model), n


def untied_input_grid(blob: bytes, scale: float, tensor: bytes = b"Add_1") -> bytes:
    """The normalization output `tensor` on step `scale`, zero point 0; the convolutions reading it get
    their int32 bias requantized to the new input scale (bias scale = input scale x weight scale)."""
    model = flatbuffer.read(blob)
    sg = model.subgraphs[0]
    names = op_names(model)
    t = next(i for i, x in enumerate(sg.tensors) if x.name == tensor)
    sg.tensors[t].quantization.scale = np.array([scale], np.float32)
    sg.tensors[t].quantization.zeroPoint = np.array([0], np.int64)
    for op, name in zip(sg.operators, names):
        if t in list(op.inputs) and name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            bias = sg.tensors[op.inputs[2]]
            buf = model.buffers[bias.buffer]
            real = np.frombuffer(bytes(buf.data), np.int32) * np.asarray(bias.quantization.scale, np.float64)
            new_scale = np.asarray(sg.tensors[op.inputs[1]].quantization.scale, np.float64) * np.float32(scale)
            buf.data = np.frombuffer(np.round(real / new_scale).astype(np.int32).tobytes(), np.uint8)
            bias.quantization.scale = new_scale.astype(np.float32)
    return flatbuffer.write(model)


def _judge(bundle: Path, quant: Path, out: Path) -> dict:
    mid = json.loads((bundle / "manifest.json").read_text())["model_id"]
    result = parity_model(
        mid,
        float_path=bundle / f"{mid}_float32.tflite",
        quant_path=quant,
        mixed_precision=False,
        per_layer=False,
        out_dir=out,
    )
    return result["parity"]


def _line(label: str, p: dict) -> str:
    parts = []
    for k, figs in p.get("per_kernels", {}).items():
        shown = {f: round(v, 4) for f, v in figs.items() if isinstance(v, float)}
        parts.append(f"{k}: {shown}")
        for set_name, s in (p.get("sets") or {}).items():
            d = (s.get("per_kernels") or {}).get(k) or {}
            parts.append(f"  {set_name} {k}: { ({f: round(v, 4) for f, v in d.items() if isinstance(v, float)}) }")
    return label + "\n  " + "\n  ".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["islands", "input-grid"])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--scales", type=float, nargs="+", default=[1 / 127, 1 / 128, 0.0079])
    a = ap.parse_args(argv)
    manifest = json.loads((a.bundle / "manifest.json").read_text())
    int8 = a.bundle / f"{manifest['model_id']}_int8.tflite"
    with tempfile.TemporaryDirectory() as tmp:
        print(_line("bundle int8", _judge(a.bundle, int8, Path(tmp))))
        if a.what == "islands":
            blob, n = float_islands(int8.read_bytes())
            path = Path(tmp) / "islands.tflite"
            path.write_bytes(blob)
            print(_line(f"{n} float LEAKY_RELU islands", _judge(a.bundle, path, Path(tmp))))
        else:
            for s in a.scales:
                path = Path(tmp) / f"grid_{s}.tflite"
                path.write_bytes(untied_input_grid(int8.read_bytes(), s))
                print(_line(f"input grid step {s:.6g}", _judge(a.bundle, path, Path(tmp))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
