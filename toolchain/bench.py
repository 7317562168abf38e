"""Latency of exported models: float32 vs int8 with ai-edge-litert (XNNPACK, 2 threads), one run.

Measured in the same process, interleaved, median of repeated invokes after warm-up, so the
ratio compares like with like on this host. Not a test: `make bench` prints and writes JSON.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np

from . import paths
from .bundle import read_manifest
from .errors import InputError
from .runtime import TfliteRunner


def time_model(path: Path, *, kernels: str = "xnnpack", threads: int = 2, runs: int = 20, warmup: int = 3) -> float:
    """Median invoke time in milliseconds on a fixed random input."""
    runner = TfliteRunner(path, kernels=kernels, threads=threads)
    shape = tuple(runner.input["shape"])
    x = np.random.default_rng(0).integers(0, 256, size=shape).astype(np.float32)
    for _ in range(warmup):
        runner.run(x, dequantize=False)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        runner.run(x, dequantize=False)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_bundle(bundle: Path, *, threads: int = 2, runs: int = 20) -> dict:
    manifest = read_manifest(bundle)
    mid = manifest["model_id"]
    row = {"model_id": mid, "threads": threads, "kernels": "xnnpack", "runs": runs, "ms": {}, "bytes": {}}
    for precision in ("float32", "float16", "dynamic", "int8", "int8_mixed"):
        path = Path(bundle) / f"{mid}_{precision}.tflite"
        if path.is_file():
            row["ms"][precision] = round(time_model(path, threads=threads, runs=runs), 2)
            row["bytes"][precision] = path.stat().st_size
    if "float32" in row["ms"] and "int8" in row["ms"]:
        row["int8_over_float32_latency"] = round(row["ms"]["int8"] / row["ms"]["float32"], 3)
        row["int8_over_float32_size"] = round(row["bytes"]["int8"] / row["bytes"]["float32"], 3)
    if "float32" in row["ms"] and "int8_mixed" in row["ms"]:
        row["mixed_over_float32_latency"] = round(row["ms"]["int8_mixed"] / row["ms"]["float32"], 3)
    return row


def bench_all(out_root: Path | None = None, *, threads: int = 2, runs: int = 20) -> list[dict]:
    root = Path(out_root or paths.out_dir())
    bundles = sorted(p for p in root.glob("*") if (p / "manifest.json").is_file()) if root.is_dir() else []
    if not bundles:
        raise InputError(f"no bundles in {root}", fix="run `make export-int8` first")
    return [bench_bundle(b, threads=threads, runs=runs) for b in bundles]


def format_table(rows: list[dict]) -> str:
    lines = [f"{'model':34} {'float32 ms':>10} {'float16 ms':>10} {'dynamic ms':>10} {'int8 ms':>8} "
             f"{'int8/f32 time':>13} {'int8/f32 size':>13} {'mixed ms':>9}"]
    for r in rows:
        ms = r["ms"]
        cell = lambda k: f"{ms[k]:.1f}" if k in ms else "-"  # noqa: E731
        lines.append(f"{r['model_id']:34} {cell('float32'):>10} {cell('float16'):>10} {cell('dynamic'):>10} "
                     f"{cell('int8'):>8} {r.get('int8_over_float32_latency', '-'):>13} "
                     f"{r.get('int8_over_float32_size', '-'):>13} {cell('int8_mixed'):>9}")
    lines.append(f"(ai-edge-litert, XNNPACK, {rows[0]['threads']} threads, median of {rows[0]['runs']} runs)")
    return "\n".join(lines)


def write_json(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2))
