"""Timings of the fused stage: baseline, golden, device and a plain copy, measured in the same run.

`run_bench()` renders one synthetic frame per size (a photo-like picture with a subject and a
257x257 model output; no file needed) and reports the median wall time of each implementation and
its ratio to the notebook baseline. golden / device are the default stage (matting edges);
golden_guided is the stage before matting. Targets: golden within 3x the baseline at 4032x3024
(issue 7); golden at 12 MP <= 1500 ms on 2 cores and device within 2x of golden (issue 12).
Not here: quality (quality.py).
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .api import render
from .baseline import notebook_render
from .model_output import simulate_model_output

SIZES = {"12MP": (3024, 4032), "1080p": (1080, 1920)}


def bench_frame(height: int, width: int, seed: int = 0):
    """A deterministic photo-like frame, its true alpha, a depth map and a model output."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    img = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    noise = rng.integers(-6, 7, (height // 4, width // 4, 3), dtype=np.int16)
    img = np.clip(
        img.astype(np.int16) + cv2.resize(noise, (width, height), interpolation=cv2.INTER_NEAREST), 0, 255
    ).astype(np.uint8)
    alpha = np.zeros((height, width), np.float32)
    cv2.ellipse(alpha, (width // 2, height // 2 + height // 6), (width // 5, height // 3), 0, 0, 360, 1, -1)
    img[alpha > 0] = (190, 140, 110)
    depth = np.where(alpha > 0, 1.5, 4.0).astype(np.float32)[::4, ::4]
    low, spec = simulate_model_output(alpha, seed=seed)
    return img, alpha, depth, low, spec


_CPU: dict = {}


def _time(fn, repeats: int, key: str | None = None) -> float:
    """Median wall ms; with `key`, the median process CPU ms is kept in _CPU[key] too (on a shared,
    loaded machine CPU time is the honest figure: wall on an idle machine lies between cpu / threads and cpu)."""
    fn()  # warm-up (allocations, cv2 thread pool, numba caches)
    ts, cs = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
        cs.append(time.process_time() - c0)
    if key:
        _CPU[key] = float(np.median(cs) * 1000)
    return float(np.median(ts) * 1000)


def run_bench(sizes: dict | None = None, repeats: int = 3, device_repeats: int = 3, threads: int | None = None) -> dict:
    """{size: {"baseline_ms", "golden_ms", "golden_depth_ms", "device_ms", "copy_ms", "*_ratio"}}, plus settings."""
    if threads is not None:
        cv2.setNumThreads(threads)
    sizes = SIZES if sizes is None else sizes
    out = {
        "cv2_threads": cv2.getNumThreads(),
        "repeats": repeats,
        "host": host_isa(),
        "python": platform.python_version(),
    }
    for name, (h, w) in sizes.items():
        img, _, depth, low, spec = bench_frame(h, w)
        r: dict[str, Any] = {
            "copy_ms": _time(lambda: img.copy(), repeats),
            "baseline_ms": _time(lambda: notebook_render(img, low, spec), repeats),
            "golden_ms": _time(lambda: render(img, low, spec), repeats, key="golden"),
            "golden_guided_ms": _time(lambda: render(img, low, spec, edges="guided"), repeats),
            "golden_depth_ms": _time(lambda: render(img, low, spec, depth_m=depth), repeats),
            "device_ms": _time(lambda: render(img, low, spec, implementation="device"), device_repeats, key="device"),
            "device_depth_ms": _time(
                lambda: render(img, low, spec, depth_m=depth, implementation="device"), device_repeats
            ),
        }
        for k in ("golden_ms", "golden_guided_ms", "golden_depth_ms", "device_ms", "device_depth_ms", "copy_ms"):
            r[k.replace("_ms", "_ratio")] = r[k] / r["baseline_ms"]
        r["device_vs_golden"] = r["device_ms"] / r["golden_ms"]
        r["golden_cpu_ms"], r["device_cpu_ms"] = _CPU["golden"], _CPU["device"]
        r["load_avg_1min"] = _load()
        r["size"] = f"{w}x{h}"
        out[name] = r
    return out


def _load() -> float:
    try:
        return float(os.getloadavg()[0])
    except OSError:
        return float("nan")


def host_isa() -> str:
    """Machine, CPU model and its widest SIMD extension (latency figures are printed beside it)."""
    model = ""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = next((f for f in ("avx512f", "avx2", "avx", "sse4_2", "asimd", "neon") if f in flags), "")
    return " ".join(x for x in (platform.machine(), model, simd.upper()) if x)


def format_bench(res: dict) -> str:
    lines = [f"host {res.get('host', '?')}; cv2 threads {res['cv2_threads']}, median of {res['repeats']}"]
    for name, r in res.items():
        if not isinstance(r, dict):
            continue
        lines.append(
            f"{name} ({r['size']}): copy {r['copy_ms']:.0f} ms | baseline {r['baseline_ms']:.0f} ms | "
            f"golden {r['golden_ms']:.0f} ms ({r['golden_ratio']:.2f}x) | golden+depth "
            f"{r['golden_depth_ms']:.0f} ms ({r['golden_depth_ratio']:.2f}x) | device {r['device_ms']:.0f} ms "
            f"({r['device_ratio']:.2f}x) | device+depth {r['device_depth_ms']:.0f} ms"
        )
        lines.append(
            f"  CPU time (process, all threads): golden {r['golden_cpu_ms']:.0f} ms, device "
            f"{r['device_cpu_ms']:.0f} ms; load average {r['load_avg_1min']:.1f} on this host during the run"
        )
        lines.append(
            f"  edges: golden before matting (guided) {r['golden_guided_ms']:.0f} ms; matting golden "
            f"{r['golden_ms']:.0f} ms"
            + (
                f" (target <= 1500 ms at 12 MP: {'met' if r['golden_ms'] <= 1500 else 'NOT met'})"
                if name == "12MP"
                else ""
            )
            + "; device / golden "
            f"{r['device_vs_golden']:.2f}x (target <= 2x: {'met' if r['device_vs_golden'] <= 2 else 'NOT met'})"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(format_bench(run_bench()))
