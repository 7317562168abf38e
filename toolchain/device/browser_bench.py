"""Browser latencies beside the native ones: each bundle through the headless device check, per file and
backend the browser's median ms and its ratio to the same run's native XNNPACK figure (`portrait bench
--part browser`). Not for: judging parity (device_check.py does that) or native timing (latency.py)."""

from __future__ import annotations

from pathlib import Path

from toolchain import paths
from toolchain.latency import host_isa

from .device_check import BACKENDS, LITERT, run_device_check


def browser_bench(
    rows: list[dict], out_root: Path | None = None, *, runs: int = 5, timeout_s: float = 90, progress=None
) -> list[dict]:
    """Each bundle of `rows` through `portrait device-check --headless` (reports under export/bench/device/):
    per file and backend the browser's median ms and its ratio to this run's native XNNPACK figure."""
    root = Path(out_root or paths.out_dir())
    out = []
    for row in rows:
        mid = row["model_id"]
        report = run_device_check(
            root / mid,
            runs=runs,
            timeout_s=timeout_s,
            progress=progress,
            report_dir=paths.REPO_ROOT / "export" / "bench" / "device" / mid,
        )
        native = {f"{mid}_{p}.tflite": ms for p, ms in row["ms"].items()}
        files: dict[str, dict] = {}
        for r in report.results:
            cell = files.setdefault(r.file, {"native_ms": native.get(r.file)})
            if r.software or r.latency_ms is None:  # not timed: a software GPU, or the file did not run
                cell[f"{'litert.js' if r.runtime == LITERT else 'mediapipe'} {r.backend}"] = {
                    "ms": None,
                    "status": r.status,
                    "software_gpu": r.software,
                    "over_native": None,
                }
            else:
                key = f"{'litert.js' if r.runtime == LITERT else 'mediapipe'} {r.backend}"
                cell[key] = {
                    "ms": round(r.latency_ms, 2),
                    "status": r.status,
                    "software_gpu": r.software,
                    "over_native": round(r.latency_ms / native[r.file], 2) if native.get(r.file) else None,
                }
        out.append(
            {
                "model_id": mid,
                "user_agent": report.user_agent,
                "cores": report.cores,
                "webgpu_adapter": report.webgpu_adapter,
                "webgl_renderer": report.webgl_renderer,
                "runs": runs,
                "native_threads": row["threads"],
                "files": files,
            }
        )
    return out


def format_browser_table(rows: list[dict]) -> str:
    cols = [f"{'litert.js' if rt == LITERT else 'mediapipe'} {b}" for rt, b in BACKENDS]
    lines = [f"{'file':46} {'native ms':>9}  " + "  ".join(f"{c:>24}" for c in cols)]
    for row in rows:
        for f, cell in row["files"].items():
            nat = f"{cell['native_ms']:.1f}" if cell.get("native_ms") else "-"
            parts = []
            for c in cols:
                v = cell.get(c)
                if v is None:
                    parts.append(f"{'-':>24}")
                    continue
                ratio = f" ({v['over_native']}x)" if v["over_native"] is not None else ""
                if v["ms"] is None and not v["software_gpu"]:
                    parts.append(v["status"].rjust(24))  # no-load / fail before timing / not-run
                    continue
                ms = "sw GPU*" if v["ms"] is None else f"{v['ms']:.1f}{ratio}"
                parts.append(f"{ms}{'' if v['status'] == 'pass' else ' ' + v['status']}".rjust(24))
            lines.append(f"{f:46} {nat:>9}  " + "  ".join(parts))
        lines.append(
            f"  ({row['model_id']}: {row['user_agent']}; {row['cores']} cores; WebGPU {row['webgpu_adapter']}; "
            f"WebGL {row['webgl_renderer']})"
        )
    lines.append(
        f"(browser: median of {rows[0]['runs'] if rows else '-'} runs after the golden runs (the warm-up), "
        f"input to outputs on the "
        f"CPU, one thread; (Nx) = browser ms / native XNNPACK ms of this run, {rows[0]['native_threads'] if rows else 2} "
        f"threads; sw GPU* = software GPU (SwiftShader): judged on one image, not timed; "
        f"host: {host_isa()['summary']})"
    )
    return "\n".join(lines)
