"""Activation ranges chosen to minimise quantization error, written into a calibrated flatbuffer.

`quantize.calibrate_int8` records each activation tensor's min/max over the calibration set;
`quantize.quantize_calibrated` turns those into int8 scales. A min/max range spends its 256 levels
on the rare extremes: the selfie model's first convolution spans -81..76 because of a few pixels,
so every ordinary value rounds to steps of 0.6. Here each tensor's range is re-chosen on the
calibration set's actual values (the calibrated model is still float, so it runs as is):

- "minmax": the calibration pass's true min/max (calibration.py), unchanged (the baseline);
- "mse": the (min, max) pair, each shrunk by a factor on a grid, that minimises the mean squared
  error between the tensor and its int8 fake-quantized copy (clipping + rounding);
- "percentile": the 0.01th / 99.99th percentiles.

Ranges are only ever shrunk (never widened), zero stays inside them, and tensors whose range the
int8 kernels fix (sigmoid/softmax outputs) or whose values are exact (the uint8 pixel input) are
left alone. Not for: weights (their per-channel scales are the converter's, see adaround.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from ..errors import InputError
from . import flatbuffer
from .flatbuffer import FLOAT32, is_constant, op_names

_FIXED_RANGE_OPS = {"LOGISTIC", "SOFTMAX", "TANH", "ARG_MAX", "ARG_MIN"}
_GRID = np.linspace(0.15, 1.0, 18)  # shrink factors tried for each end of a range


def fake_quant(x: np.ndarray, lo: float, hi: float, bits: int = 8) -> np.ndarray:
    """x through an asymmetric `bits` quantizer of range [lo, hi] (zero point nudged as TFLite does)."""
    levels = 2**bits - 1
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / levels if hi > lo else 1.0
    zp = np.round(-lo / scale)
    q = np.clip(np.round(x / scale) + zp, 0, levels)
    return (q - zp) * scale


def mse_range(values: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """The shrunk (lo, hi) with the smallest fake-quantization MSE on `values`."""
    v = values.astype(np.float32)
    best, best_err = (lo, hi), float(np.mean((fake_quant(v, lo, hi) - v) ** 2))
    for a in _GRID if lo < 0 else [1.0]:
        for b in _GRID if hi > 0 else [1.0]:
            err = float(np.mean((fake_quant(v, lo * a, hi * b) - v) ** 2))
            if err < best_err * (1 - 1e-9):
                best, best_err = (lo * a, hi * b), err
    return best


def percentile_range(values: np.ndarray, lo: float, hi: float, q: float = 0.01) -> tuple[float, float]:
    p_lo, p_hi = np.percentile(values, [q, 100 - q])
    return (max(lo, float(min(p_lo, 0.0))), min(hi, float(max(p_hi, 0.0))))


# Where a saturating op's input stops mattering: past +-L its output is within e^-L (LOGISTIC) or
# 2e^-2L (TANH) of its limit, under a sixteenth of an int8 output step (1/256 and 1/128).
SATURATION = {"LOGISTIC": 8.0, "TANH": 4.0}
# ops that only move or select values (and MAX_POOL_2D, which commutes with a clamp): a clamp before
# them equals a clamp after them
_EXACT_MOVES = {
    "RESHAPE",
    "STRIDED_SLICE",
    "SLICE",
    "CONCATENATION",
    "SQUEEZE",
    "EXPAND_DIMS",
    "TRANSPOSE",
    "DEPTH_TO_SPACE",
    "SPACE_TO_DEPTH",
    "GATHER",
    "MAX_POOL_2D",
    "SPLIT",
    "PACK",
    "UNPACK",
}


def saturation_limits(model) -> dict[int, float]:
    """tensor index -> L for every float tensor whose every use ends, through value-moving ops only,
    in a saturating op (SATURATION): values beyond +-L give that op the same output, so the tensor's
    quantization range can stop at +-L. The selfie segmenter's logits span -1146..376 on the
    calibration set; min/max gave them an int8 step of 6 logits, so every pixel within 3 logits of
    the 0.5 threshold came out as exactly 0.5, 0.0025 or 0.997."""
    sg = model.subgraphs[0]
    opname = op_names(model)
    consumers: dict[int, list[int]] = {}
    for i, op in enumerate(sg.operators):
        for t in op.inputs:
            consumers.setdefault(int(t), []).append(i)
    outputs = set(int(t) for t in sg.outputs)
    memo: dict[int, float | None] = {}

    def limit(t: int) -> float | None:  # the largest L any use needs; None if some use is not saturating
        if t in memo:
            return memo[t]
        memo[t] = None  # a cycle (none in a TFLite graph) would stay unclamped
        uses = consumers.get(t, [])
        if t in outputs or not uses:
            return None
        need = 0.0
        for i in uses:
            name = opname[i]
            if name in SATURATION and int(sg.operators[i].inputs[0]) == t:
                need = max(need, SATURATION[name])
                continue
            if name not in _EXACT_MOVES:
                return None
            outs = [limit(int(o)) for o in sg.operators[i].outputs]
            known = [o for o in outs if o is not None]
            if len(known) < len(outs):
                return None
            need = max([need, *known])
        memo[t] = need
        return need

    found = {}
    for t, ten in enumerate(sg.tensors):
        if ten.type == FLOAT32 and not is_constant(model, ten):
            lim = limit(t)
            if lim:
                found[t] = lim
    return found


def clamp_saturated(calibrated: bytes) -> tuple[bytes, list[tuple[str, tuple[float, float], tuple[float, float]]]]:
    """The calibrated flatbuffer with each recorded range cut to +-L where `saturation_limits` allows
    it, and the tensors cut: [(name, old range, new range)]. A range wholly beyond +-L becomes that
    end point (the quantizer then widens it to take in zero, as for any range)."""
    model = flatbuffer.read(calibrated)
    sg = model.subgraphs[0]
    cut = []
    for t, lim in saturation_limits(model).items():
        q = sg.tensors[t].quantization
        if q is None or q.min is None or len(q.min) != 1 or q.max is None:
            continue
        lo, hi = float(q.min[0]), float(q.max[0])
        new_lo, new_hi = min(max(lo, -lim), lim), max(min(hi, lim), -lim)  # [20, 30] -> [8, 8]: always saturated
        if (new_lo, new_hi) != (lo, hi):
            q.min, q.max = [new_lo], [new_hi]
            cut.append(((sg.tensors[t].name or b"").decode(errors="replace"), (lo, hi), (new_lo, new_hi)))
    if not cut:
        return calibrated, []
    return flatbuffer.write(model), cut


RANGE_METHODS: dict[str, Callable[[np.ndarray, float, float], tuple[float, float]] | None] = {
    "minmax": None,
    "mse": mse_range,
    "percentile": percentile_range,
}


def recorded_ranges(calibrated: bytes) -> dict[int, tuple[float, float]]:
    """tensor index -> (min, max) the calibration recorded (activations only)."""
    sg = flatbuffer.read(calibrated).subgraphs[0]
    out = {}
    for i, t in enumerate(sg.tensors):
        q = t.quantization
        if q is not None and q.min is not None and len(q.min) == 1 and q.max is not None:
            out[i] = (float(q.min[0]), float(q.max[0]))
    return out


def searchable_tensors(calibrated: bytes) -> list[int]:
    """Activation tensors whose range may be re-chosen (see the module docstring)."""
    model = flatbuffer.read(calibrated)
    sg = model.subgraphs[0]
    fixed = set(int(i) for i in sg.inputs)
    for op, name in zip(sg.operators, op_names(model)):
        if name in _FIXED_RANGE_OPS:
            fixed.update(int(o) for o in op.outputs)
    return [i for i in recorded_ranges(calibrated) if i not in fixed]


def sample_activations(
    calibrated: bytes,
    representative: np.ndarray,
    tensors: list[int],
    *,
    images: int = 8,
    per_image: int = 4096,
    seed: int = 0,
) -> dict[int, np.ndarray]:
    """Run the calibrated (still float) model on up to `images` samples and keep a random subset
    of each tensor's values plus each image's two extremes. The extremes weigh more in the sample
    than in the tensor, which makes the MSE search clip more cautiously: a clipped extreme can cost
    the output more than its share of squared error. Per-tensor MSE is not the output's error, and
    it does not help every model: `python -m experiments.ptq_measure` measures it against min/max (README)."""
    interp = Interpreter(
        model_content=calibrated,
        num_threads=2,
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    rng = np.random.default_rng(seed)
    picks = np.linspace(0, len(representative) - 1, min(images, len(representative))).round().astype(int)
    kept: dict[int, list[np.ndarray]] = {t: [] for t in tensors}
    for k in picks:
        interp.set_tensor(inp["index"], representative[k][None].astype(np.float32))
        interp.invoke()
        for t in tensors:
            v = interp.get_tensor(t).reshape(-1)
            take = v if v.size <= per_image else v[rng.integers(0, v.size, per_image)]
            kept[t].append(np.concatenate([take, [v.min(), v.max()]]))
    return {t: np.concatenate(v) for t, v in kept.items()}


def search_ranges(
    calibrated: bytes,
    representative: np.ndarray,
    *,
    method: str = "mse",
    images: int = 8,
    progress: Callable[[str], None] | None = None,
) -> tuple[bytes, dict]:
    """The calibrated flatbuffer with re-chosen activation ranges, and a record of what changed:
    {"method", "tensors", "changed", "median_width_ratio", "widest_cut": [(name, old, new), ...]}."""
    if method not in RANGE_METHODS:
        raise InputError(f"unknown range method {method!r}", fix=f"use one of {sorted(RANGE_METHODS)}")
    if representative is None or len(representative) == 0:
        raise InputError("range search needs calibration samples", fix="see calibration_set.py")
    fn = RANGE_METHODS[method]
    record: dict[str, Any] = {"method": method, "tensors": 0, "changed": 0}
    if fn is None:
        return calibrated, record
    tensors = searchable_tensors(calibrated)
    ranges = recorded_ranges(calibrated)
    values = sample_activations(calibrated, representative, tensors, images=images)
    model = flatbuffer.read(calibrated)
    sg = model.subgraphs[0]
    ratios, cuts = [], []
    for n, t in enumerate(tensors):
        lo, hi = ranges[t]
        new_lo, new_hi = fn(values[t], lo, hi)
        new_lo, new_hi = max(new_lo, lo), min(new_hi, hi)  # only ever shrink
        if (new_lo, new_hi) != (lo, hi):
            q = sg.tensors[t].quantization
            q.min, q.max = [float(new_lo)], [float(new_hi)]
            record["changed"] += 1
        if hi > lo:
            ratios.append((new_hi - new_lo) / (hi - lo))
            cuts.append(((sg.tensors[t].name or b"").decode(), (lo, hi), (new_lo, new_hi), ratios[-1]))
        if progress and n % 25 == 0:
            progress(f"range search ({method}) {n + 1}/{len(tensors)}")
    record["tensors"] = len(tensors)
    record["median_width_ratio"] = float(np.median(ratios)) if ratios else 1.0
    record["widest_cut"] = [
        (c[0], [round(x, 4) for x in c[1]], [round(x, 4) for x in c[2]]) for c in sorted(cuts, key=lambda c: c[3])[:5]
    ]
    return flatbuffer.write(model), record
