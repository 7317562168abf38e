"""The device simulator's frame loop: sensor frames -> preprocess -> int8 model -> registration ->
temporal smoothing -> device-precision fused stage -> output frames, timed per stage.

One call, `simulate_sequence(sequence_dir, bundle_dir, ...)`, runs a sample sequence
(device_sim/sequences/<name>) through an exported bundle and returns a JSON-able dict: per frame and
per stage the time measured on this host, per device profile the time estimated by the cost model
(cost.py), peak memory, frames that miss the 33 ms budget, flicker and alpha error with and
without smoothing. It writes PNG frames, a GIF of the sequence and summary.json when `out_dir` is set.

How frames are paired (documented handling of late, dropped and mismatched frames):
- RGB frames drive the loop; their timestamps must increase (else InputError naming the frame).
  A gap of more than 1.5 frame periods counts as dropped RGB frames in the summary.
- A ToF frame is usable for an RGB frame when it has *arrived* by the RGB frame's timestamp plus
  `wait_ms` (arrival = capture timestamp + its delivery delay; `late_tof` injects delays) and its
  capture time is within `max_skew_ms` of the RGB frame's. The nearest usable one is registered.
- No usable ToF frame: the last registered depth is held (its confidence halved per frame) for up to
  `max_hold_frames` frames, then the frame renders mask-only (no depth). Each frame records which.
- No ToF frame pairs with any RGB frame (two clocks, e.g. a boot-time vs a realtime timestamp
  source): InputError, since nothing useful can be simulated.
- An RGB frame whose size differs from meta.json: InputError naming the frame. A sequence with a
  frame missing from its listing or its folder: InputError from load_sequence.

Not for: the math of any stage (toolchain.depth, toolchain.render, smoothing.py) or cost figures
(cost.py); this module wires them and measures.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from .. import paths
from ..bundle import handoff_model
from ..bundle_loader import open_bundle
from ..depth.registration import register_depth
from ..depth.sequence import load_sequence
from ..errors import InputError
from ..images import to_model_input
from ..render.api import render
from ..render.model_output import decode_probability, simulate_model_output
from ..render.photo import output_spec
from ..runtime import TfliteRunner
from . import cost
from .smoothing import COMBINE_WITH_PREVIOUS_RATIO, GATED_RATIO, DepthSmoother, flicker, image_stillness, smooth_mask

SEQUENCES_DIR = paths.SEQUENCES_DIR
PREFERRED_BUNDLES = ("deeplabv3_mnv2_pascal_257", "selfie_segmenter")
STAGES = ("preprocess", "model", "registration", "smoothing", "fused")
PROB_SPEC = {"kind": "probabilities", "dtype": "float32", "layout": "NHWC"}


def find_bundle(out_root: Path | None = None, prefer=PREFERRED_BUNDLES, label: str | None = None) -> Path:
    """The segmentation bundle `make sim` uses: the first of `prefer` with a quantized model that met
    its parity budget; for a sequence of people, the person segmenter comes first when exported."""
    root = Path(out_root or paths.out_dir())
    if label == "person":
        prefer = ("selfie_segmenter", *[m for m in prefer if m != "selfie_segmenter"])
    for mid in prefer:
        b = root / mid
        if (b / "manifest.json").is_file() and open_bundle(b).handoff:  # a damaged bundle is named, not skipped
            return b
    raise InputError(
        "no segmentation bundle with an int8 model to simulate",
        where=str(root),
        fix="run `make export-int8` first (or `portrait export deeplabv3_mnv2_pascal_257`)",
    )


def sample_sequences() -> list[Path]:
    return sorted(p for p in SEQUENCES_DIR.iterdir() if (p / "meta.json").is_file())


@dataclass
class Pairing:
    rgb_index: int
    tof_index: int | None  # ToF frame registered for this RGB frame, None when held or none
    depth: str  # "fresh", "held" or "none"
    skew_ms: float | None  # ToF capture - RGB capture
    held_frames: int = 0


def pair_frames(
    seq,
    *,
    max_skew_ms: float = 16.7,
    wait_ms: float = 5.0,
    max_hold_frames: int = 3,
    drop_tof=(),
    late_tof: dict | None = None,
) -> tuple[list[Pairing], dict]:
    """Pair every RGB frame with a ToF frame by timestamp (rules in the module docstring).
    drop_tof: ToF frame indices that never arrive; late_tof: {index: extra delivery delay, ms}."""
    late_tof = late_tof or {}
    rgb_ts = np.array([f.rgb_timestamp_ns for f in seq.frames], np.int64)
    tof_ts = np.array([f.tof_timestamp_ns for f in seq.frames], np.int64)
    for name, ts in (("RGB", rgb_ts), ("ToF", tof_ts)):
        bad = np.nonzero(np.diff(ts) <= 0)[0]
        if len(bad):
            i = int(bad[0]) + 1
            raise InputError(
                f"{name} timestamps do not increase at frame {i} ({ts[i - 1]} then {ts[i]} ns)",
                where=str(seq.path / "meta.json"),
                fix="timestamps must be capture times from one monotonic clock, in frame order",
            )
    period_ns = 1e9 / float(seq.meta.get("rgb", {}).get("fps", 30.0))
    gaps = np.diff(rgb_ts) / period_ns
    dropped_rgb = int(np.sum(np.maximum(np.rint(gaps) - 1, 0)[gaps > 1.5]))
    arrival = tof_ts + np.array([int(late_tof.get(i, 0.0) * 1e6) for i in range(len(tof_ts))], np.int64)
    present = np.array([i not in set(drop_tof) for i in range(len(tof_ts))])
    out, held, used = [], None, 0
    for i, t in enumerate(rgb_ts):
        ok = present & (arrival <= t + int(wait_ms * 1e6)) & (np.abs(tof_ts - t) <= int(max_skew_ms * 1e6))
        if ok.any():
            j = int(np.argmin(np.where(ok, np.abs(tof_ts - t), np.iinfo(np.int64).max)))
            out.append(Pairing(i, j, "fresh", (tof_ts[j] - t) / 1e6))
            held, used = 0, used + 1
        elif held is not None and held < max_hold_frames:
            held += 1
            out.append(Pairing(i, None, "held", None, held))
        else:
            held = None if held is None or held >= max_hold_frames else held
            out.append(Pairing(i, None, "none", None))
    if used == 0:
        skew = float(np.median(np.abs(tof_ts - rgb_ts))) / 1e6
        raise InputError(
            f"no ToF frame is within {max_skew_ms} ms of any RGB frame (median skew {skew:.1f} ms)",
            where=str(seq.path / "meta.json"),
            fix="put both streams on one clock (Android: SENSOR_INFO_TIMESTAMP_SOURCE) before pairing",
        )
    stats = {
        "rgb_frames": len(rgb_ts),
        "dropped_rgb_frames": dropped_rgb,
        "depth_fresh": sum(p.depth == "fresh" for p in out),
        "depth_held": sum(p.depth == "held" for p in out),
        "depth_none": sum(p.depth == "none" for p in out),
        "max_abs_skew_ms": round(max((abs(p.skew_ms) for p in out if p.skew_ms is not None), default=0.0), 3),
    }
    return out, stats


SIM_NOISE_LOGIT = 1.5  # per-frame noise of the simulated model, logit units ...
SIM_NOISE_CORR_PX = 3.0  # ... spatially correlated over this many model pixels (blotchy, like a real model)


def simulated_model_output(alpha: np.ndarray, size_hw, label_id: int, seed: int):
    """`simulate_model_output` of the true matte plus per-frame, spatially correlated logit noise on
    the subject class: the temporal instability a real model shows on a video (an assumption,
    used to exercise smoothing where the real model does not see the synthetic subject)."""
    logits, spec = simulate_model_output(alpha, size=size_hw, seed=seed, label_id=label_id)
    n = np.random.default_rng(seed + 7).normal(0, 1, size_hw).astype(np.float32)
    n = cv2.GaussianBlur(n, (0, 0), SIM_NOISE_CORR_PX)
    n *= np.float32(SIM_NOISE_LOGIT / max(float(n.std()), 1e-6))
    logits[0, ..., label_id] += n
    return logits, spec


class _Timer:
    def __init__(self):
        self.ms: dict[str, float] = {}

    def __call__(self, stage, fn, *a, **kw):
        t0 = time.perf_counter()
        r = fn(*a, **kw)
        self.ms[stage] = self.ms.get(stage, 0.0) + (time.perf_counter() - t0) * 1e3
        return r


def simulate_sequence(
    sequence_dir: str | Path,
    bundle_dir: str | Path | None = None,
    *,
    profiles=("flagship", "midrange"),
    kernels: str = "xnnpack",
    out_dir: str | Path | None = None,
    smoothing: bool = True,
    compare_smoothing: bool = True,
    mask_source: str = "model",
    precision: str = "int8",
    threads: int = 2,
    max_frames: int | None = None,
    gif: bool = True,
    drop_tof=(),
    late_tof: dict | None = None,
    max_skew_ms: float = 16.7,
    progress=None,
) -> dict:
    """Run one sequence end to end; see the module docstring. Returns the summary dict.

    mask_source: "model" (the bundle's model, the default) or "simulated" (the model output that
      `simulate_model_output` derives from the true matte with per-frame noise: isolates smoothing
      from the model's own errors on synthetic scenes). The model still runs and is timed.
    compare_smoothing: also render the frames the other way (smoothed vs not) to measure flicker
      and alpha error both ways; only the frames of `smoothing` are written.
    """
    seq = load_sequence(sequence_dir)
    opened = open_bundle(bundle_dir if bundle_dir is not None else find_bundle())  # schema + SHA-256 first
    bundle, manifest = opened.root, opened.manifest
    if manifest.get("task") not in ("segmentation", "mask"):
        raise InputError(
            f"{manifest.get('model_id')} is a {manifest.get('task')} model; the simulator needs a segmentation model",
            where=str(bundle),
            fix="pass a deeplab… or selfie_segmenter bundle",
        )
    # the quantized handoff: on XNNPACK (a phone's CPU path) the manifest's handoff_cpu, the fastest file
    # that meets the budget there; on the reference kernels (an NPU's contract) the integer handoff
    model_file = (
        (manifest.get("handoff_cpu") if kernels == "xnnpack" else None) or handoff_model(manifest)
        if precision == "int8"
        else None
    ) or f"{manifest['model_id']}_{precision}.tflite"
    model_path = bundle / model_file
    if model_file not in manifest["models"]:
        raise InputError(f"bundle has no {model_file}", where=str(bundle), fix="run `make export-int8` first")
    if mask_source not in ("model", "simulated"):
        raise InputError(f"mask_source {mask_source!r} is not known", fix="use 'model' or 'simulated'")
    say = progress or (lambda m: None)
    size_hw = tuple(manifest["input"]["size"])
    spec = output_spec(manifest, model_file)
    runner = TfliteRunner(model_path, kernels=kernels, threads=threads)
    pairs, pair_stats = pair_frames(seq, drop_tof=drop_tof, late_tof=late_tof, max_skew_ms=max_skew_ms)
    H, W = int(seq.meta["rgb"]["height"]), int(seq.meta["rgb"]["width"])
    label_id = int(manifest.get("foreground_classes", {}).get(seq.meta.get("kind", "person"), 15))

    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        (out / "frames").mkdir(parents=True, exist_ok=True)
    n = len(pairs) if max_frames is None else min(max_frames, len(pairs))
    variants = [smoothing] + ([not smoothing] if compare_smoothing else [])
    prev_p: dict[bool, Any] = {v: None for v in variants}  # by smoothing on / off
    depth_smoother = DepthSmoother()
    prev_x = None  # previous model-size frame, for the motion gate of the mask smoothing
    last_depth = None
    frames: list[dict] = []
    alphas: dict[bool, list] = {v: [] for v in variants}
    truths: list = []
    composites: list[np.ndarray | None] = []  # None when no GIF is asked for
    buffers_peak, fused_work_bytes = 0, 0
    for k in range(n):
        pr = pairs[k]
        f = seq[pr.rgb_index]
        timer = _Timer()
        rgb = f.rgb()
        if rgb.shape[:2] != (H, W):
            raise InputError(
                f"frame {pr.rgb_index}: RGB is {rgb.shape[1]}x{rgb.shape[0]}, meta.json says {W}x{H}",
                where=str(f.paths["rgb"]),
                fix="every frame of a sequence must have the size in meta.json",
            )
        x = timer("preprocess", to_model_input, rgb, size_hw)
        outs = timer("model", runner.run, x)
        low = outs[sorted(outs)[0]]
        if mask_source == "simulated":
            low, sim_spec = simulated_model_output(f.alpha(), size_hw, label_id, seed=1000 + pr.rgb_index)
        else:
            sim_spec = spec
        depth_m = conf = None
        if pr.depth == "fresh":
            assert pr.tof_index is not None  # a fresh depth frame is a paired ToF frame
            tf = seq[pr.tof_index]
            rng, tconf = tf.tof()
            depth_m, conf, _ = timer(
                "registration", register_depth, rng, tconf, seq.tof_intrinsics, seq.rgb_intrinsics, seq.extrinsics, rgb
            )
            last_depth = (depth_m, conf)
        elif pr.depth == "held" and last_depth is not None:
            depth_m, conf = last_depth[0], last_depth[1] * np.float32(0.5**pr.held_frames)

        t0 = time.perf_counter()
        p_new = decode_probability(low, sim_spec)
        still = image_stillness(x, prev_x)
        prev_x = x
        masks: dict[bool, Any] = {
            v: (
                smooth_mask(p_new, prev_p[v], GATED_RATIO if still is not None else COMBINE_WITH_PREVIOUS_RATIO, still)
                if v
                else p_new
            )
            for v in variants
        }
        for v in variants:
            prev_p[v] = masks[v]
        if smoothing:
            d_s, c_s = depth_smoother.update(depth_m, conf) if pr.depth == "fresh" else (depth_m, conf)
        else:
            d_s, c_s = depth_m, conf
        timer.ms["smoothing"] = (time.perf_counter() - t0) * 1e3

        results = {}
        for v in variants:
            dv, cv = (d_s, c_s) if v == smoothing else ((depth_m, conf) if not v else (d_s, c_s))
            track = k == 0 and v == smoothing
            if track:
                tracemalloc.start()
            if v == smoothing:
                results[v] = timer(
                    "fused",
                    render,
                    rgb,
                    masks[v][..., None],
                    PROB_SPEC,
                    depth_m=dv,
                    confidence=cv,
                    implementation="device",
                )
            else:
                results[v] = render(
                    rgb, masks[v][..., None], PROB_SPEC, depth_m=dv, confidence=cv, implementation="device"
                )
            if track:
                fused_work_bytes = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
            alphas[v].append(results[v].alpha)
        truth = f.alpha()
        truths.append(truth)
        main = results[smoothing]
        held_bytes = (
            sum(a.nbytes for a in (rgb, x, low, p_new, *masks.values(), main.alpha, main.composite) if a is not None)
            + sum(a.nbytes for a in (depth_m, conf) if a is not None) * 2
        )
        buffers_peak = max(buffers_peak, held_bytes)
        total = sum(timer.ms.values())
        rec = {
            "index": pr.rgb_index,
            "rgb_timestamp_ns": f.rgb_timestamp_ns,
            "tof_index": pr.tof_index,
            "depth": pr.depth,
            "skew_ms": pr.skew_ms,
            "host_ms": {s: round(timer.ms.get(s, 0.0), 2) for s in STAGES},
            "host_total_ms": round(total, 2),
            "host_misses_budget": total > cost.FRAME_BUDGET_MS,
            "alpha_mae": round(float(np.mean(np.abs(main.alpha - truth))), 5),
            "warnings": main.warnings,
        }
        frames.append(rec)
        if out is not None:
            cv2.imwrite(
                str(out / "frames" / f"frame_{pr.rgb_index:04d}.png"), cv2.cvtColor(main.composite, cv2.COLOR_RGB2BGR)
            )
        composites.append(main.composite[::2, ::2].copy() if gif else None)
        say(f"frame {pr.rgb_index}: {total:.0f} ms host, depth {pr.depth}")

    # cost model, once per model (every frame costs the same on a fixed-size model)
    costs = cost.op_costs(model_path)
    arena = cost.arena_bytes(model_path)
    est = {}
    for name in profiles:
        prof = cost.load_profile(name)
        m_npu = cost.estimate_model(costs, prof, precision)
        m_cpu = cost.estimate_model(costs, prof, precision, use_npu=False)
        mem_total = arena["total"] + buffers_peak + fused_work_bytes
        est[prof.name] = {
            "profile": str(prof.path),
            "description": prof.description,
            "model": m_npu,
            "model_cpu_only": m_cpu,
            "frame": cost.estimate_frame(m_npu, H * W, prof),
            "frame_cpu_only": cost.estimate_frame(m_cpu, H * W, prof),
            "memory_bytes": mem_total,
            "memory_budget_bytes": int(float(prof.data["memory"]["budget_mb"]) * 2**20),
            "fits_memory": mem_total <= float(prof.data["memory"]["budget_mb"]) * 2**20,
        }

    host_mean = {s: round(float(np.mean([fr["host_ms"][s] for fr in frames])), 2) for s in STAGES}
    quality: dict[str, Any] = {}
    for v in variants:
        quality["smoothed" if v else "raw"] = {
            "flicker": flicker(alphas[v], truths),
            "alpha_mae": float(np.mean([np.mean(np.abs(a - t)) for a, t in zip(alphas[v], truths)])),
        }
    if "smoothed" in quality and "raw" in quality:
        r, s = quality["raw"], quality["smoothed"]
        quality["flicker_reduction"] = r["flicker"] / s["flicker"] if s["flicker"] > 0 else float("inf")
        quality["alpha_mae_change"] = s["alpha_mae"] / r["alpha_mae"] - 1 if r["alpha_mae"] > 0 else 0.0

    summary = {
        "sequence": seq.meta.get("name", seq.path.name),
        "sequence_dir": str(seq.path),
        "bundle": str(bundle),
        "model_file": model_file,
        "kernels": kernels,
        "threads": threads,
        "mask_source": mask_source,
        "smoothing": smoothing,
        "frame_size": [H, W],
        "frames_simulated": n,
        "pairing": pair_stats,
        "host_ms_mean": host_mean,
        "host_total_ms_mean": round(sum(host_mean.values()), 2),
        "host_frames_missing_budget": sum(fr["host_misses_budget"] for fr in frames),
        "memory": {
            "tensor_arena_estimate": arena,
            "frame_buffers_peak_bytes": int(buffers_peak),
            "fused_stage_working_bytes_tracemalloc": int(fused_work_bytes),
        },
        "profiles": est,
        "quality": quality,
        "frames": frames,
    }
    if out is not None:
        if gif and composites:
            ims = [Image.fromarray(c) for c in composites if c is not None]
            ims[0].save(
                out / f"{summary['sequence']}.gif",
                save_all=True,
                append_images=ims[1:],
                duration=int(round(1000 / float(seq.meta["rgb"].get("fps", 30)))),
                loop=0,
            )
        (out / "summary.json").write_text(json.dumps(_clean(summary), indent=1))
        summary["out_dir"] = str(out)
    return _clean(summary)


def _clean(o):
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def format_summary(s: dict) -> str:
    """The table `portrait sim` prints: host ms per stage, estimated ms and fps per profile."""
    lines = [
        f"{s['sequence']}: {s['frames_simulated']} frames {s['frame_size'][1]}x{s['frame_size'][0]}, "
        f"{s['model_file']} ({s['kernels']} kernels, {s['threads']} threads), mask {s['mask_source']}, "
        f"depth fresh/held/none {s['pairing']['depth_fresh']}/{s['pairing']['depth_held']}/{s['pairing']['depth_none']}"
    ]
    head = f"  {'stage':13} {'host ms':>8}"
    names = list(s["profiles"])
    for p in names:
        head += f" {p + ' ms':>14} {p + ' cpu-only':>18}"
    lines.append(head)
    for st in STAGES:
        row = f"  {st:13} {s['host_ms_mean'][st]:8.1f}"
        for p in names:
            e = s["profiles"][p]
            row += f" {e['frame']['stages_ms'][st]:14.2f} {e['frame_cpu_only']['stages_ms'][st]:18.2f}"
        lines.append(row)
    row = f"  {'total':13} {s['host_total_ms_mean']:8.1f}"
    for p in names:
        e = s["profiles"][p]
        row += f" {e['frame']['latency_ms']:14.2f} {e['frame_cpu_only']['latency_ms']:18.2f}"
    lines.append(row)
    row = f"  {'fps':13} {1000 / max(s['host_total_ms_mean'], 1e-9):8.1f}"
    for p in names:
        e = s["profiles"][p]
        row += f" {e['frame']['fps']:14.1f} {e['frame_cpu_only']['fps']:18.1f}"
    lines.append(row)
    lines.append(
        f"  frames over 33 ms: host {s['host_frames_missing_budget']}/{s['frames_simulated']}; "
        + ", ".join(
            f"{p} {'all' if s['profiles'][p]['frame']['misses_budget'] else 'none'}"
            + f" (cpu-only {'all' if s['profiles'][p]['frame_cpu_only']['misses_budget'] else 'none'})"
            for p in names
        )
    )
    mem = s["memory"]
    lines.append(
        f"  memory: arena {mem['tensor_arena_estimate']['activations_peak'] / 1e6:.1f} MB activations + "
        f"{mem['tensor_arena_estimate']['weights'] / 1e6:.1f} MB weights, frame buffers "
        f"{mem['frame_buffers_peak_bytes'] / 1e6:.1f} MB, fused stage working "
        f"{mem['fused_stage_working_bytes_tracemalloc'] / 1e6:.1f} MB; "
        + ", ".join(
            f"{p} {'fits' if s['profiles'][p]['fits_memory'] else 'OVER'} "
            f"{s['profiles'][p]['memory_budget_bytes'] / 2**20:.0f} MB"
            for p in names
        )
    )
    q = s["quality"]
    if "raw" in q and "smoothed" in q:
        lines.append(
            f"  flicker (mean |d alpha| where truth is static): raw {q['raw']['flicker']:.5f}, smoothed "
            f"{q['smoothed']['flicker']:.5f} ({_x(q['flicker_reduction'])} less); alpha MAE vs truth raw "
            f"{q['raw']['alpha_mae']:.4f}, smoothed {q['smoothed']['alpha_mae']:.4f} "
            f"({100 * q['alpha_mae_change']:+.1f}%)"
        )
    for w in sorted({w for fr in s["frames"] for w in fr["warnings"]}):
        lines.append(f"  fused-stage warning on some frames: {w}")
    return "\n".join(lines)


def _x(v) -> str:
    return "n/a (no flicker either way)" if v is None else f"{v:.2f}x"


def simulate_all(sequences=None, bundle_dir=None, *, out_root: str | Path = "export/sim", **kw) -> list[dict]:
    """`make sim`: every sample sequence through the preferred bundle."""
    res = []
    for sq in sequences or sample_sequences():
        sq = Path(sq)
        bundle = Path(bundle_dir) if bundle_dir else find_bundle(label=sequence_label(sq))
        res.append(simulate_sequence(sq, bundle, out_dir=Path(out_root) / sq.name, **kw))
    return res


def sequence_label(sequence_dir: Path) -> str | None:
    """The subject class of a sample sequence (person / cat), from its first frame's metadata."""
    try:
        return json.loads((Path(sequence_dir) / "meta.json").read_text())["frames"][0].get("label")
    except (OSError, KeyError, IndexError, ValueError):
        return None
