"""Latency of exported models: float32 vs int8 with ai-edge-litert (XNNPACK, 2 threads), one run;
and the same files in a browser (`portrait device-check`'s runs: LiteRT.js wasm / WebGPU, MediaPipe
web CPU / GPU), printed beside the native figures as ratios from the same `make bench` run.

Measured in the same process, interleaved, median of repeated invokes after warm-up, so the
ratio compares like with like on this host. Not a test: `make bench` prints and writes JSON.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from . import paths
from .bundle_loader import list_bundles, open_bundle
from .errors import InputError
from .runtime import TfliteRunner

# /proc/cpuinfo flags that decide int8 speed: x86 dot-product instructions (VNNI) and their width;
# ARM dot product (asimddp) and int8 matrix multiply (i8mm)
_ISA_FLAGS = {
    "x86_64": [
        ("avx2", "AVX2"),
        ("avx512f", "AVX-512F"),
        ("avx512_vnni", "AVX512-VNNI"),
        ("avx_vnni", "AVX-VNNI"),
        ("amx_int8", "AMX-INT8"),
    ],
    "aarch64": [("asimd", "NEON"), ("asimddp", "dot product (asimddp)"), ("i8mm", "i8mm"), ("sve", "SVE")],
}


def host_isa(cpuinfo: str | None = None, machine: str | None = None) -> dict:
    """The host's int8-relevant ISA features, read from /proc/cpuinfo (flags / Features line)."""
    machine = machine or platform.machine()
    arch = "aarch64" if machine in ("aarch64", "arm64") else "x86_64"
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags |= set(value.split())
    features = {label: (flag in flags) for flag, label in _ISA_FLAGS[arch]}
    have = [k for k, v in features.items() if v]
    dot = any(v for k, v in features.items() if "VNNI" in k or "dot" in k or "i8mm" in k or "AMX" in k)
    summary = (
        (
            f"{machine}: "
            + (", ".join(have) if have else "no int8 dot-product features found")
            + ("" if dot else " (no int8 dot-product instructions: int8 gains little over float32)")
        )
        if cpuinfo
        else f"{machine}: /proc/cpuinfo not readable, ISA unknown"
    )
    return {"machine": machine, "features": features, "int8_dot_product": dot, "summary": summary}


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
    manifest = open_bundle(bundle).manifest  # a damaged file is named, not timed
    mid = manifest["model_id"]
    row = {"model_id": mid, "threads": threads, "kernels": "xnnpack", "runs": runs, "ms": {}, "bytes": {}}
    row["isa"] = host_isa()["summary"]
    handoff = manifest.get("handoff")
    for precision in ("float32", "float16", "dynamic", "int8", "int8_mixed", "w8a16", "mixed_float"):
        path = Path(bundle) / f"{mid}_{precision}.tflite"
        if path.is_file():
            if precision == "w8a16" and handoff != path.name:
                continue
            # int16 activations do not run on XNNPACK: timed on the built-in CPU kernels it falls back to
            row["ms"][precision] = round(
                time_model(path, threads=threads, runs=runs if precision != "w8a16" else max(3, runs // 10)), 2
            )
            row["bytes"][precision] = path.stat().st_size
    row["handoff"], row["handoff_cpu"] = handoff, manifest.get("handoff_cpu")
    for precision in ("w8a16", "mixed_float"):
        if "float32" in row["ms"] and precision in row["ms"]:
            row[f"{precision}_over_float32_latency"] = round(row["ms"][precision] / row["ms"]["float32"], 3)
    if "float32" in row["ms"] and "int8" in row["ms"]:
        row["int8_over_float32_latency"] = round(row["ms"]["int8"] / row["ms"]["float32"], 3)
        row["int8_over_float32_size"] = round(row["bytes"]["int8"] / row["bytes"]["float32"], 3)
    if "float32" in row["ms"] and "int8_mixed" in row["ms"]:
        row["mixed_over_float32_latency"] = round(row["ms"]["int8_mixed"] / row["ms"]["float32"], 3)
    return row


def bench_all(out_root: Path | None = None, *, threads: int = 2, runs: int = 20) -> list[dict]:
    root = Path(out_root or paths.out_dir())
    bundles = list_bundles(root)  # never an export's staging folder
    if not bundles:
        raise InputError(f"no bundles in {root}", fix="run `make export-int8` first")
    return [bench_bundle(b, threads=threads, runs=runs) for b in bundles]


def format_table(rows: list[dict]) -> str:
    lines = [
        f"{'model':34} {'float32 ms':>10} {'float16 ms':>10} {'dynamic ms':>10} {'int8 ms':>8} "
        f"{'int8/f32 time':>13} {'int8/f32 size':>13} {'mixed ms':>9}  host ISA (int8)"
    ]
    for r in rows:
        ms = r["ms"]

        def cell(k: str, ms: dict = ms) -> str:
            return f"{ms[k]:.1f}" if k in ms else "-"

        lines.append(
            f"{r['model_id']:34} {cell('float32'):>10} {cell('float16'):>10} {cell('dynamic'):>10} "
            f"{cell('int8'):>8} {r.get('int8_over_float32_latency', '-'):>13} "
            f"{r.get('int8_over_float32_size', '-'):>13} {cell('mixed_float' if 'mixed_float' in ms else 'int8_mixed'):>9}"
            f"  {r.get('isa', '')}"
        )
        if "w8a16" in ms:
            lines.append(
                f"{'':34} w8a16 handoff {ms['w8a16']:.1f} ms = {r['w8a16_over_float32_latency']}x float32 "
                f"(built-in CPU kernels: XNNPACK does not run int16 activations)  {r.get('isa', '')}"
            )
        if r.get("handoff_cpu"):
            lines.append(f"{'':34} handoff_cpu: {r['handoff_cpu']}  handoff: {r.get('handoff')}")
    lines.append(
        f"(ai-edge-litert, XNNPACK, {rows[0]['threads']} threads, median of {rows[0]['runs']} runs; "
        f"host: {host_isa()['summary']})"
    )
    return "\n".join(lines)


def stamp(command: str, isa: str) -> dict:
    """When, where and by which command a figures file was written (docs/results.md shows it)."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {"at": now, "command": command, "host_isa": isa, "load_avg_1_5_15min": load}


def write_json(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2))
