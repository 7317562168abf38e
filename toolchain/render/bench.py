"""Timings of the fused stage: baseline, golden, device and a plain copy, measured in the same run.

`run_bench()` renders one synthetic frame per size (a photo-like picture with a subject and a
257x257 model output; no file needed) and reports the median wall time of each implementation and
its ratio to the notebook baseline. Targets (issue): golden within 3x the baseline at 4032x3024.
Not here: quality (quality.py).
"""

from __future__ import annotations

import time

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
    img = np.clip(img.astype(np.int16) + cv2.resize(noise, (width, height), interpolation=cv2.INTER_NEAREST),
                  0, 255).astype(np.uint8)
    alpha = np.zeros((height, width), np.float32)
    cv2.ellipse(alpha, (width // 2, height // 2 + height // 6), (width // 5, height // 3), 0, 0, 360, 1, -1)
    img[alpha > 0] = (190, 140, 110)
    depth = np.where(alpha > 0, 1.5, 4.0).astype(np.float32)[::4, ::4]
    low, spec = simulate_model_output(alpha, seed=seed)
    return img, alpha, depth, low, spec


def _time(fn, repeats: int) -> float:
    fn()                                      # warm-up (allocations, cv2 thread pool)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts) * 1000)


def run_bench(sizes: dict | None = None, repeats: int = 3, device_repeats: int = 1, threads: int | None = None) -> dict:
    """{size: {"baseline_ms", "golden_ms", "golden_depth_ms", "device_ms", "copy_ms", "*_ratio"}}, plus settings."""
    if threads is not None:
        cv2.setNumThreads(threads)
    sizes = SIZES if sizes is None else sizes
    out = {"cv2_threads": cv2.getNumThreads(), "repeats": repeats}
    for name, (h, w) in sizes.items():
        img, _, depth, low, spec = bench_frame(h, w)
        r = {
            "copy_ms": _time(lambda: img.copy(), repeats),
            "baseline_ms": _time(lambda: notebook_render(img, low, spec), repeats),
            "golden_ms": _time(lambda: render(img, low, spec), repeats),
            "golden_depth_ms": _time(lambda: render(img, low, spec, depth_m=depth), repeats),
            "device_ms": _time(lambda: render(img, low, spec, implementation="device"), device_repeats),
            "device_depth_ms": _time(lambda: render(img, low, spec, depth_m=depth, implementation="device"),
                                     device_repeats),
        }
        for k in ("golden_ms", "golden_depth_ms", "device_ms", "device_depth_ms", "copy_ms"):
            r[k.replace("_ms", "_ratio")] = r[k] / r["baseline_ms"]
        r["size"] = f"{w}x{h}"
        out[name] = r
    return out


def format_bench(res: dict) -> str:
    lines = [f"cv2 threads {res['cv2_threads']}, median of {res['repeats']}"]
    for name, r in res.items():
        if not isinstance(r, dict):
            continue
        lines.append(f"{name} ({r['size']}): copy {r['copy_ms']:.0f} ms | baseline {r['baseline_ms']:.0f} ms | "
                     f"golden {r['golden_ms']:.0f} ms ({r['golden_ratio']:.2f}x) | golden+depth "
                     f"{r['golden_depth_ms']:.0f} ms ({r['golden_depth_ratio']:.2f}x) | device {r['device_ms']:.0f} ms "
                     f"({r['device_ratio']:.2f}x) | device+depth {r['device_depth_ms']:.0f} ms")
    return "\n".join(lines)


if __name__ == "__main__":
    print(format_bench(run_bench()))
