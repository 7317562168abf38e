"""Per-layer comparison of a float32 and a quantized .tflite: where does int8 drift, and which
layers are the culprits.

Both files run side by side with every intermediate tensor kept (reference kernels: XNNPACK would
hide the tensors it fuses). Each op's output tensor in the float file is paired with the same
tensor in the quantized file, by name (the exports of one model share tensor names), or, where
names differ (any other import path), by op order, op type and shape. The quantized tensor is
dequantized with its own scale and zero point and compared with the float one.

Figures per layer, pooled over the images:
- rmse and rmse_over_scale: error in float units and in quantization steps of that tensor (a step
  of pure rounding gives ~0.29; far more means clipping or error carried in from above);
- snr_db, cosine, max_abs_error;
- nsr: noise-to-signal power ratio (10^(-snr/10));
- added_nsr: nsr of the output minus the largest nsr among the op's activation inputs, i.e. the
  error this op adds on top of what it inherits;
- output_error_share: added_nsr over the sum of all positive added_nsr. Independent noise sources
  add up in power, so a layer's added noise-to-signal ratio is (to first order, assuming roughly
  unit gain from there to the output) its part of the output's noise-to-signal ratio. This is the
  "error-propagation difference between consecutive layers" estimate: one pass, no reconversion,
  so it works on any pair of files; mixed.py then measures the real effect of keeping the top
  layers float.

Not for: verdicts against budgets (gate.py) or choosing float layers (mixed.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from ..errors import InputError, ModelFormatError
from ..runtime import _to_input_dtype
from ..sources.tflite_graph import read_tflite

# Ops the converter adds around quantized regions; they have no float counterpart.
_CONVERSION_OPS = {"QUANTIZE", "DEQUANTIZE"}
_SEARCH_WINDOW = 8  # how far ahead order-matching looks for the next op of the same type and shape


@dataclass
class LayerPair:
    """One op output present in both files."""

    order: int  # op index in the float file
    op: str  # builtin op name
    name: str  # tensor name in the float file (the name selective quantization takes)
    float_index: int  # tensor index in the float file
    quant_index: int  # tensor index in the quantized file
    shape: tuple[int, ...]
    matched_by: str  # "name" or "order"
    inputs: list[str]  # float tensor names of the op's activation inputs


def match_layers(float_path: Path, quant_path: Path) -> list[LayerPair]:
    """Pair each op output of the float file with its counterpart in the quantized file."""
    fg, qg = read_tflite(float_path), read_tflite(quant_path)
    produced = {o for op in fg.ops for o in op.outputs} | set(fg.inputs)
    q_ops = [op for op in qg.ops if op.name not in _CONVERSION_OPS]
    q_by_name: dict[str, int] = {}
    for op in q_ops:
        for i in op.outputs:
            q_by_name.setdefault(qg.tensor(i).name, i)
    pairs, used, cursor = [], set(), 0
    for op in fg.ops:
        if not op.outputs:
            continue
        ft = fg.tensor(op.outputs[0])
        inputs = [fg.tensor(i).name for i in op.inputs if i >= 0 and i in produced]
        qi, how = q_by_name.get(ft.name), "name"
        if qi is not None and (qi in used or tuple(qg.tensor(qi).shape) != tuple(ft.shape)):
            qi = None
        if qi is None:
            how = "order"
            for k in range(cursor, min(cursor + _SEARCH_WINDOW, len(q_ops))):
                cand = q_ops[k]
                ci = cand.outputs[0] if cand.outputs else None
                if (
                    ci is not None
                    and ci not in used
                    and cand.name == op.name
                    and tuple(qg.tensor(ci).shape) == tuple(ft.shape)
                ):
                    qi = ci
                    break
        if qi is None:
            continue
        used.add(qi)
        pos = next((k for k, q in enumerate(q_ops) if qi in q.outputs), cursor)
        cursor = max(cursor, pos + 1)
        pairs.append(LayerPair(op.index, op.name, ft.name, ft.index, qi, tuple(ft.shape), how, inputs))
    if not pairs:
        raise ModelFormatError(
            f"no layer of {Path(quant_path).name} matches one of {Path(float_path).name}",
            where=str(quant_path),
            fix="compare a quantized file with the float32 file of the same export",
        )
    return pairs


class _Tensors:
    """An interpreter that keeps every intermediate tensor (reference kernels)."""

    def __init__(self, path: Path, kernels: str = "reference"):
        resolver = {
            "reference": OpResolverType.BUILTIN_REF,
            "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        }[kernels]
        self.interp = Interpreter(
            model_path=str(path), experimental_op_resolver_type=resolver, experimental_preserve_all_tensors=True
        )
        self.interp.allocate_tensors()
        self.input = self.interp.get_input_details()[0]
        self.details = {d["index"]: d for d in self.interp.get_tensor_details()}

    def run(self, pixels: np.ndarray) -> None:
        x = np.asarray(pixels)[None] if np.ndim(pixels) == 3 else np.asarray(pixels)
        self.interp.set_tensor(self.input["index"], _to_input_dtype(x, self.input))
        self.interp.invoke()

    def value(self, index: int) -> np.ndarray:
        """The tensor in float units (int8/uint8/int16 dequantized with its per-tensor scale)."""
        v = self.interp.get_tensor(index)
        d = self.details[index]
        scale, zp = d.get("quantization", (0.0, 0))
        if v.dtype in (np.int8, np.uint8, np.int16) and scale:
            return (v.astype(np.float64) - zp) * scale
        return v.astype(np.float64)

    def scale(self, index: int) -> float | None:
        scale, _ = self.details[index].get("quantization", (0.0, 0))
        return float(scale) if scale else None


def compare_layers(float_path: Path, quant_path: Path, images: list[tuple[str, np.ndarray]], *, progress=None) -> dict:
    """Per-layer figures of `quant_path` vs `float_path` over `images` (name, uint8 HxWx3).

    Returns {"layers": [row per matched op, in float-file order], "culprits": [names, worst first],
    "matched": {"name": n, "order": n, "unmatched_float_ops": n}, "kernels": "reference",
    "share_method": ...}.
    """
    if not images:
        raise InputError("per-layer comparison needs at least one image", fix="pass --images or set PORTRAIT_DATA_DIR")
    pairs = match_layers(float_path, quant_path)
    fr, qr = _Tensors(float_path, "reference"), _Tensors(quant_path, "reference")
    acc = {p.name: {"err2": 0.0, "sig2": 0.0, "dot": 0.0, "f2": 0.0, "q2": 0.0, "n": 0, "max": 0.0} for p in pairs}
    for k, (name, img) in enumerate(images):
        fr.run(img)
        qr.run(img)
        for p in pairs:
            f, q = fr.value(p.float_index), qr.value(p.quant_index)
            if f.shape != q.shape:
                continue
            a, e = acc[p.name], q - f
            a["err2"] += float(np.sum(e * e))
            a["sig2"] += float(np.sum(f * f))
            a["dot"] += float(np.sum(f * q))
            a["q2"] += float(np.sum(q * q))
            a["n"] += f.size
            a["max"] = max(a["max"], float(np.max(np.abs(e))) if e.size else 0.0)
        if progress:
            progress(f"layers {k + 1}/{len(images)} {name}")
    rows: list[dict[str, Any]] = []
    for p in pairs:
        a = acc[p.name]
        if not a["n"]:
            continue
        mse = a["err2"] / a["n"]
        scale = qr.scale(p.quant_index)
        nsr = a["err2"] / a["sig2"] if a["sig2"] > 0 else (0.0 if a["err2"] == 0 else float("inf"))
        denom = np.sqrt(a["sig2"] * a["q2"])
        rows.append(
            {
                "order": p.order,
                "op": p.op,
                "name": p.name,
                "shape": list(p.shape),
                "matched_by": p.matched_by,
                "quantized": scale is not None,
                "scale": scale,
                "rmse": float(np.sqrt(mse)),
                "rmse_over_scale": float(np.sqrt(mse) / scale) if scale else None,
                "snr_db": _snr_db(nsr),
                "cosine": float(a["dot"] / denom) if denom > 0 else (1.0 if a["err2"] == 0 else 0.0),
                "max_abs_error": a["max"],
                "nsr": float(nsr),
                "inputs": p.inputs,
            }
        )
    attribute_output_error(rows)
    ranked = sorted((r for r in rows if r["output_error_share"] > 0), key=lambda r: -r["output_error_share"])
    n_float_ops = len(read_tflite(float_path).ops)
    return {
        "layers": rows,
        "culprits": [r["name"] for r in ranked],
        "kernels": "reference",
        "images": [n for n, _ in images],
        "matched": {
            "name": sum(r["matched_by"] == "name" for r in rows),
            "order": sum(r["matched_by"] == "order" for r in rows),
            "unmatched_float_ops": n_float_ops - len(rows),
        },
        "share_method": "added noise-to-signal ratio per op (output NSR minus the largest input NSR), "
        "normalized over all ops; measured on the reference kernels",
    }


def _snr_db(nsr: float) -> float:
    if nsr == 0:
        return float("inf")
    return float(10 * np.log10(1 / nsr)) if np.isfinite(nsr) else float("-inf")


def attribute_output_error(rows: list[dict]) -> None:
    """Set `added_nsr` and `output_error_share` on each row (see the module docstring)."""
    by_name = {r["name"]: r for r in rows}
    for r in rows:
        inherited = max((by_name[i]["nsr"] for i in r["inputs"] if i in by_name), default=0.0)
        added = r["nsr"] - inherited
        r["added_nsr"] = float(added) if np.isfinite(added) else float("inf")
    total = sum(r["added_nsr"] for r in rows if r["added_nsr"] > 0 and np.isfinite(r["added_nsr"]))
    for r in rows:
        a = r["added_nsr"]
        if not np.isfinite(a):
            r["output_error_share"] = 1.0
        else:
            r["output_error_share"] = float(a / total) if a > 0 and total > 0 else 0.0


def format_table(result: dict, top: int | None = None) -> str:
    """The per-layer table as text, worst share first when `top` is given, else file order."""
    rows = result["layers"]
    if top:
        rows = sorted(rows, key=lambda r: -r["output_error_share"])[:top]
    lines = [f"{'#':>4} {'op':18} {'SNR dB':>7} {'cos':>8} {'RMSE/step':>9} {'max abs':>9} {'share %':>7}  layer"]
    for r in rows:
        ros = f"{r['rmse_over_scale']:.2f}" if r["rmse_over_scale"] is not None else "float"
        lines.append(
            f"{r['order']:>4} {r['op'][:18]:18} {r['snr_db']:>7.1f} {r['cosine']:>8.5f} {ros:>9} "
            f"{r['max_abs_error']:>9.3g} {100 * r['output_error_share']:>7.2f}  {r['name'][:60]}"
        )
    return "\n".join(lines)
