"""Per-op cost model: MACs and bytes read from a .tflite flatbuffer, a roofline against a phone profile.

For each op: MACs (multiply-accumulates, or element operations for element-wise ops) and bytes
moved (every input tensor, weights included, plus every output), both from the tensor shapes and
dtypes in the flatbuffer. Its time on a unit is max(MACs / sustained MAC rate, bytes / sustained
bandwidth) + a fixed per-op overhead. An op runs on the NPU when the profile has one and lists the op
(and the op is int8); the rest falls back to the CPU, and every switch between the two costs a
hand-off. Also here: the tensor-arena estimate (peak of live activations, in op order) and the cost
of the CPU stages around the model (preprocess, registration, smoothing, fused stage), whose work
per pixel is counted from their code (STAGE_WORK).

Profiles are data: toolchain/sim/profiles/*.toml, each figure with its source. Not for: measuring time
on this host (simulate.py does that) or judging numerics (check.py).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..sources.tflite_graph import read_tflite

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
FRAME_BUDGET_MS = 1000.0 / 30.0  # 33.3 ms: one frame at 30 fps

# Work of the CPU stages per output pixel, counted from the code (approximate, NEON-vectorised):
#  preprocess: area resize of the RGB frame to the model input: ~4 taps x 3 channels x 2 ops per
#    input pixel, counted per *input* pixel.
#  registration: joint bilateral fill in registration.py: ~45 taps in a 7x7 window (r = 3 at the
#    sample sequences' ToF/RGB focal ratio), each ~14 ops (colour distance, exp, surface test, 2 MACs).
#  smoothing: the uncertainty polynomial and blend (smoothing.py): ~16 ops per model-output pixel,
#    plus the depth blend ~8 ops per RGB pixel.
#  fused: device.py: decode + guided filter (~40 ops) + 5 disc layers of up to 33 rows, a running
#    sum per row and 3 channels (~2 ops x 33 rows x 3 ch x 5 layers / 2 on average) + composite.
STAGE_WORK: dict[str, dict[str, Any]] = {
    "preprocess": {"ops_per_px": 24, "bytes_per_px": 4, "per": "rgb"},
    "registration": {"ops_per_px": 630, "bytes_per_px": 40, "per": "rgb"},
    "smoothing": {"ops_per_px": 8, "bytes_per_px": 16, "per": "rgb"},
    "fused": {"ops_per_px": 560, "bytes_per_px": 64, "per": "rgb"},
}

_ELEMENTWISE = {
    "ADD",
    "SUB",
    "MUL",
    "DIV",
    "MAXIMUM",
    "MINIMUM",
    "RELU",
    "RELU6",
    "LOGISTIC",
    "TANH",
    "HARD_SWISH",
    "LEAKY_RELU",
    "PRELU",
    "QUANTIZE",
    "DEQUANTIZE",
    "SQUARED_DIFFERENCE",
    "RSQRT",
    "SQRT",
    "EXP",
    "ABS",
    "NEG",
    "POW",
}
_MOVES = {
    "CONCATENATION",
    "RESHAPE",
    "PAD",
    "PADV2",
    "STRIDED_SLICE",
    "SLICE",
    "TRANSPOSE",
    "SQUEEZE",
    "GATHER",
    "SPLIT",
    "SPLIT_V",
    "PACK",
    "UNPACK",
    "EXPAND_DIMS",
}


@dataclass
class OpCost:
    index: int
    op: str
    macs: int
    bytes: int  # bytes read (inputs, weights) + written (outputs)
    int8: bool  # all activations int8/uint8 (NPU-eligible)


@dataclass
class Profile:
    name: str
    description: str
    data: dict
    path: Path

    @property
    def npu(self) -> dict:
        return self.data.get("npu", {"present": False})


def load_profile(name_or_path: str | Path) -> Profile:
    """A profile by name (flagship, midrange) or .toml path; checks the fields the model reads."""
    p = Path(name_or_path)
    if not p.suffix:
        p = PROFILES_DIR / f"{name_or_path}.toml"
    if not p.is_file():
        raise InputError(
            f"device profile {str(name_or_path)!r} not found",
            where=str(p),
            fix=f"use one of {', '.join(profile_names())} or a path to a .toml profile",
        )
    try:
        data = tomllib.loads(p.read_text())
        for key in (
            "cpu.int8_gmacs",
            "cpu.fp16_gmacs",
            "cpu.efficiency",
            "memory.bandwidth_gbs",
            "memory.efficiency",
            "memory.budget_mb",
        ):
            sect, field = key.split(".")
            float(data[sect][field])
            if key not in data.get("sources", {}) and not key.endswith("efficiency"):
                raise InputError(
                    f"profile figure {key} has no source",
                    where=str(p),
                    fix=f'add "{key}" = "where the figure comes from" under [sources]',
                )
    except (KeyError, ValueError, TypeError, tomllib.TOMLDecodeError) as e:
        raise InputError(
            f"device profile is malformed ({type(e).__name__}: {e})",
            where=str(p),
            fix="copy the layout of toolchain/sim/profiles/flagship.toml",
        ) from None
    return Profile(data.get("name", p.stem), data.get("description", ""), data, p)


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def _nbytes(t) -> int:
    return int(np.prod(t.shape or (1,))) * np.dtype(t.dtype or np.float32).itemsize


def _elems(t) -> int:
    return int(np.prod(t.shape or (1,)))


def op_costs(tflite_path: str | Path) -> list[OpCost]:
    """MACs and bytes of every op in the flatbuffer, in execution order."""
    g = read_tflite(tflite_path)
    out = []
    for op in g.ops:
        ins = [g.tensors[i] for i in op.inputs if i >= 0]
        outs = [g.tensors[i] for i in op.outputs]
        o = outs[0]
        n_out = _elems(o)
        name = op.name
        if name in ("CONV_2D", "TRANSPOSE_CONV") and len(ins) >= 2:
            w = ins[1] if name == "CONV_2D" else ins[1]
            kh, kw, cin = (w.shape[1], w.shape[2], w.shape[3]) if len(w.shape) == 4 else (1, 1, 1)
            macs = n_out * kh * kw * cin
        elif name == "DEPTHWISE_CONV_2D" and len(ins) >= 2:
            w = ins[1]
            macs = n_out * w.shape[1] * w.shape[2]
        elif name == "FULLY_CONNECTED" and len(ins) >= 2:
            macs = n_out * ins[1].shape[-1]
        elif name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            opt = op.options
            macs = n_out * int(getattr(opt, "filterHeight", 1) or 1) * int(getattr(opt, "filterWidth", 1) or 1)
        elif name in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"):
            macs = n_out * (4 if name == "RESIZE_BILINEAR" else 1)
        elif name in ("MEAN", "SUM", "SOFTMAX", "ARG_MAX", "REDUCE_MAX"):
            macs = sum(_elems(t) for t in ins[:1]) * (3 if name == "SOFTMAX" else 1)
        elif name in _MOVES:
            macs = 0
        else:  # element-wise and anything unknown: one operation per output element
            macs = n_out
        nbytes = sum(_nbytes(t) for t in ins) + sum(_nbytes(t) for t in outs)
        acts = [t for t in ins if t.data is None] + outs
        int8 = all(np.dtype(t.dtype) in (np.int8, np.uint8, np.int32) for t in acts)
        out.append(OpCost(op.index, name, int(macs), int(nbytes), bool(int8)))
    return out


def arena_bytes(tflite_path: str | Path) -> dict:
    """Tensor memory of one inference: weights (constant buffers) and the activation arena, estimated
    as the peak over ops of the bytes of live activations (a tensor lives from the op that writes it to
    the last op that reads it; inputs and outputs for the whole run). A lower bound of what the
    interpreter's planner allocates (no fragmentation, no scratch buffers)."""
    g = read_tflite(tflite_path)
    first, last = {}, {}
    for i in g.inputs:
        first[i] = -1
    for k, op in enumerate(g.ops):
        for t in op.outputs:
            first.setdefault(t, k)
        for t in op.inputs:
            if t >= 0 and g.tensors[t].data is None:
                first.setdefault(t, -1)
                last[t] = k
    for t in g.outputs:
        last[t] = len(g.ops)
    peak = 0
    for k in range(len(g.ops)):
        live = sum(_nbytes(g.tensors[t]) for t, f in first.items() if f <= k <= last.get(t, f))
        peak = max(peak, live)
    weights = sum(_nbytes(t) for t in g.tensors if t.data is not None)
    return {"activations_peak": int(peak), "weights": int(weights), "total": int(peak + weights)}


def estimate_model(costs: list[OpCost], profile: Profile, precision: str = "int8", use_npu: bool = True) -> dict:
    """Roofline time of one inference on the profile; per-unit split and hand-off count.
    use_npu=False: everything on the CPU (XNNPACK), as an app without the NPU delegate runs it."""
    cpu, mem, npu = profile.data["cpu"], profile.data["memory"], profile.npu
    bw = float(mem["bandwidth_gbs"]) * float(mem["efficiency"]) * 1e9  # bytes/s
    cpu_rate = (
        float(cpu["int8_gmacs" if precision.startswith("int8") else "fp16_gmacs"]) * float(cpu["efficiency"]) * 1e9
    )
    npu_rate = float(npu.get("int8_gmacs", 0)) * float(npu.get("efficiency", 0)) * 1e9
    npu_ops = set(npu.get("ops", [])) if use_npu and npu.get("present") and precision.startswith("int8") else set()
    t = {"cpu": 0.0, "npu": 0.0, "handoff": 0.0}
    fallback: dict[str, int] = {}
    prev_unit, handoffs, bound = None, 0, {"compute": 0, "memory": 0}
    for c in costs:
        unit = "npu" if (c.op in npu_ops and c.int8) else "cpu"
        if npu_ops and unit == "cpu":
            fallback[c.op] = fallback.get(c.op, 0) + 1
        rate = npu_rate if unit == "npu" else cpu_rate
        t_compute, t_mem = c.macs / rate, c.bytes / bw
        bound["compute" if t_compute >= t_mem else "memory"] += 1
        overhead = float((npu if unit == "npu" else cpu)["op_overhead_us"]) * 1e-6
        t[unit] += max(t_compute, t_mem) + overhead
        if prev_unit is not None and unit != prev_unit:
            handoffs += 1
        prev_unit = unit
    if npu_ops:
        t["handoff"] = handoffs * float(npu.get("handoff_us", 0)) * 1e-6
    total_ms = 1e3 * sum(t.values())
    return {
        "ms": round(total_ms, 3),
        "cpu_ms": round(1e3 * t["cpu"], 3),
        "npu_ms": round(1e3 * t["npu"], 3),
        "handoff_ms": round(1e3 * t["handoff"], 3),
        "handoffs": handoffs,
        "cpu_fallback_ops": fallback,
        "macs": int(sum(c.macs for c in costs)),
        "bytes": int(sum(c.bytes for c in costs)),
        "ops": len(costs),
        "ops_compute_bound": bound["compute"],
        "ops_memory_bound": bound["memory"],
    }


def estimate_stage(stage: str, pixels: int, profile: Profile) -> float:
    """Milliseconds of a CPU stage (STAGE_WORK) over `pixels` pixels: roofline on fp16 NEON."""
    w = STAGE_WORK[stage]
    cpu, mem = profile.data["cpu"], profile.data["memory"]
    rate = float(cpu["fp16_gmacs"]) * 2 * float(cpu["efficiency"]) * 1e9  # ops/s (a MAC is 2 ops)
    bw = float(mem["bandwidth_gbs"]) * float(mem["efficiency"]) * 1e9
    return 1e3 * (
        max(w["ops_per_px"] * pixels / rate, w["bytes_per_px"] * pixels / bw) + float(cpu["op_overhead_us"]) * 1e-6
    )


def estimate_frame(model_estimate: dict, rgb_pixels: int, profile: Profile) -> dict:
    """Per-stage milliseconds for one frame on the profile, the sequential latency, and the
    throughput when the model (on the NPU) overlaps the CPU stages of the previous frame."""
    stages = {
        "preprocess": estimate_stage("preprocess", rgb_pixels, profile),
        "model": model_estimate["ms"],
        "registration": estimate_stage("registration", rgb_pixels, profile),
        "smoothing": estimate_stage("smoothing", rgb_pixels, profile),
        "fused": estimate_stage("fused", rgb_pixels, profile),
    }
    latency = sum(stages.values())
    cpu_busy = latency - model_estimate["npu_ms"]
    npu_busy = model_estimate["npu_ms"] + model_estimate["handoff_ms"]
    period = max(cpu_busy, npu_busy) if model_estimate["npu_ms"] > 0 else latency
    return {
        "stages_ms": {k: round(v, 3) for k, v in stages.items()},
        "latency_ms": round(latency, 3),
        "fps": round(1e3 / latency, 1),
        "fps_pipelined": round(1e3 / period, 1),
        "misses_budget": latency > FRAME_BUDGET_MS,
    }


def format_op_table(costs: list[OpCost]) -> str:
    """MACs and bytes per op type (for reports)."""
    agg: dict[str, list[int]] = {}
    for c in costs:
        a = agg.setdefault(c.op, [0, 0, 0])
        a[0] += 1
        a[1] += c.macs
        a[2] += c.bytes
    lines = [f"{'op':22} {'count':>5} {'MMACs':>9} {'MB':>8}"]
    for op, (n, m, b) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
        lines.append(f"{op:22} {n:5d} {m / 1e6:9.1f} {b / 1e6:8.2f}")
    return "\n".join(lines)


def gmacs(costs: list[OpCost]) -> float:
    return sum(c.macs for c in costs) / 1e9 if costs else math.nan
