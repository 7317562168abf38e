"""Where do XNNPACK and the reference kernels part ways? Per-op gap of one quantized .tflite.

Every op output tensor is made a graph output (flatbuffer edit), so both kernel sets must
materialise it, and the same image runs through both. Per op: SNR (dB) of XNNPACK against the
reference kernels, max abs error in quantization steps of that tensor, and the SNR drop the op
adds over the worst of its inputs ("added_db"). The op with the largest added drop is where the
kernels disagree; its inputs and type say why.

Not for: float-vs-quantized drift (parity/layers.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from ..runtime import _to_input_dtype
from ..sources.tflite_graph import read_tflite
from . import flatbuffer


def _all_outputs_model(path: Path) -> tuple[bytes, list[dict]]:
    g = read_tflite(path)
    model = flatbuffer.read(Path(path).read_bytes())
    sg = model.subgraphs[0]
    ops, outs = [], list(sg.outputs)
    for op in g.ops:
        for t in op.outputs:
            if t not in outs:
                outs.append(t)
        ops.append(
            {
                "index": op.index,
                "op": op.name,
                "output": int(op.outputs[0]),
                "inputs": [int(i) for i in op.inputs if i >= 0],
            }
        )
    sg.outputs = np.array(outs, np.int32)
    model.signatureDefs = []  # outputs by tensor index, not by signature
    return flatbuffer.write(model), ops


def _run(blob: bytes, kernels: str, image: np.ndarray, threads: int = 2) -> dict[int, tuple[np.ndarray, float]]:

    resolver = {"xnnpack": OpResolverType.AUTO, "reference": OpResolverType.BUILTIN_REF}[kernels]
    it = Interpreter(model_content=blob, num_threads=threads, experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], _to_input_dtype(np.asarray(image)[None], d))
    it.invoke()
    res = {}
    for o in it.get_output_details():
        v = it.get_tensor(o["index"])
        scale, zp = o["quantization"]
        res[o["index"]] = ((v.astype(np.float64) - zp) * scale if scale else v.astype(np.float64), scale)
    return res


def kernel_gap(path: Path, images: list[tuple[str, np.ndarray]], *, threads: int = 2) -> dict:
    """Per-op XNNPACK-vs-reference figures pooled over `images` (a few suffice)."""
    blob, ops = _all_outputs_model(Path(path))
    noise: dict[int, float] = {}
    signal: dict[int, float] = {}
    worst_steps: dict[int, float] = {}
    for _, img in images:
        ref, xnn = _run(blob, "reference", img, threads), _run(blob, "xnnpack", img, threads)
        for op in ops:
            t = op["output"]
            if t not in ref or t not in xnn:
                continue
            (r, scale), (x, _) = ref[t], xnn[t]
            noise[t] = noise.get(t, 0.0) + float(np.sum((x - r) ** 2))
            signal[t] = signal.get(t, 0.0) + float(np.sum(r**2))
            steps = float(np.max(np.abs(x - r)) / scale) if scale else float(np.max(np.abs(x - r)))
            worst_steps[t] = max(worst_steps.get(t, 0.0), steps)

    def snr(t):
        if t not in noise:
            return None
        return float("inf") if noise[t] == 0 else 10 * np.log10(max(signal[t], 1e-30) / noise[t])

    rows = []
    for op in ops:
        s = snr(op["output"])
        if s is None:
            continue
        ins = [snr(i) for i in op["inputs"] if snr(i) is not None]
        worst_in = min(ins) if ins else float("inf")
        added = (
            (worst_in - s)
            if np.isfinite(worst_in) and np.isfinite(s)
            else (0.0 if not np.isfinite(s) else float("inf"))
        )
        rows.append(
            {
                "index": op["index"],
                "op": op["op"],
                "snr_db": s,
                "max_abs_steps": worst_steps[op["output"]],
                "added_db": added,
            }
        )
    ranked = sorted((r for r in rows if r["added_db"] and r["added_db"] > 0), key=lambda r: -r["added_db"])
    return {
        "file": Path(path).name,
        "images": [n for n, _ in images],
        "ops": rows,
        "largest_gaps": ranked[:8],
        "what": "XNNPACK vs reference kernels, same file; every op output made a graph output",
    }


def format_gap(result: dict, top: int = 8) -> str:
    lines = [
        f"{result['file']}: XNNPACK vs reference, per op (largest SNR drops first)",
        f"{'#':>4} {'op':22} {'SNR dB':>8} {'added dB':>9} {'max |diff| steps':>16}",
    ]
    for r in result["largest_gaps"][:top]:
        snr = "inf" if not np.isfinite(r["snr_db"]) else f"{r['snr_db']:.1f}"
        added = "inf" if not np.isfinite(r["added_db"]) else f"{r['added_db']:.1f}"
        lines.append(f"{r['index']:>4} {r['op']:22} {snr:>8} {added:>9} {r['max_abs_steps']:>16.1f}")
    return "\n".join(lines)
