"""Which client loads which file, as measured: each file's `clients` in the manifest.

A bundle's files are loaded by native runtimes (ai-edge-litert, MediaPipe Tasks in Python: the
`portrait verify` run at export) and by web runtimes in a browser (LiteRT.js `wasm` and `webgpu`,
MediaPipe Tasks Vision CPU and GPU: `portrait device-check --headless` at export). Each measured pair
(runtime, backend) becomes one entry of models[<file>]["clients"]:

    {"runtime", "version", "backend", "status": pass | fail | no-load | not-run | loaded,
     "message" (the runtime's own words when it fails), "latency_ms", "figures", "claimed"}
    (+ "meant_for": false on a MediaPipe web entry of a file whose contract is not for ImageSegmenter)

`claimed` says the manifest hands the file off for that client: the native clients its contract
names (LiteRT Interpreter always, MediaPipe ImageSegmenter for segmenters' mask files), and on the
web the handoffs: `handoff` and `handoff_cpu` on LiteRT.js wasm and MediaPipe web CPU, `handoff_gpu`
on those and on LiteRT.js WebGPU. A claimed client measured failing is an export failure, as loud as
a parity miss (`claim_failures`); NOT RUN (no node, no Chromium) is recorded and never a pass.

`choose_handoff_gpu` picks the GPU handoff from the same measurement. Not for: running anything
(verify.py, toolchain/device/device_check.py) or rendering (card.py).
"""

from __future__ import annotations

import re

from .metadata import LITERT, MEDIAPIPE_SEGMENTER

LITERT_JS = "litert.js"
MEDIAPIPE_WEB = "mediapipe-tasks-vision"
LITERT_NATIVE = "ai-edge-litert"
MEDIAPIPE_NATIVE = "mediapipe (Python)"
STATUSES = ("pass", "fail", "no-load", "not-run", "loaded")
FAILED = ("fail", "no-load")
GPU_BACKEND = (LITERT_JS, "webgpu")
ENTRY_KEYS = ("runtime", "version", "backend", "status", "message", "claimed")


def handoff_roles(manifest: dict, name: str) -> list[str]:
    """The handoff fields that name this file ("handoff", "handoff_cpu", "handoff_gpu")."""
    return [k for k in ("handoff", "handoff_cpu", "handoff_gpu") if manifest.get(k) == name]


def claimed_web_backends(manifest: dict, name: str) -> set[tuple[str, str]]:
    """(runtime, backend) pairs of the browser runtimes the manifest hands `name` off for."""
    roles = handoff_roles(manifest, name)
    if not roles or not name.endswith(".tflite"):
        return set()
    contract = (manifest["models"][name].get("contract") or {}).get("clients") or []
    out = {(LITERT_JS, "wasm")}
    if MEDIAPIPE_SEGMENTER in contract:
        out.add((MEDIAPIPE_WEB, "cpu"))
    if "handoff_gpu" in roles:
        out.add(GPU_BACKEND)
    return out


def web_entries(device_report, manifest: dict, *, not_run_reason: str | None = None) -> dict[str, list[dict]]:
    """{file: [entry]} from a device-check report (toolchain/device/device_check.DeviceReport), or,
    without one, a NOT RUN entry per web runtime for every .tflite with the reason."""
    out: dict[str, list[dict]] = {}
    names = [n for n in manifest.get("models", {}) if n.endswith(".tflite")]
    reason = not_run_reason or (getattr(device_report, "not_run_reason", None) if device_report is not None else None)
    results = list(getattr(device_report, "results", None) or [])
    if device_report is None or (reason and not results):
        for n in names:
            backends = [(LITERT_JS, "wasm"), (LITERT_JS, "webgpu")]
            if MEDIAPIPE_SEGMENTER in ((manifest["models"][n].get("contract") or {}).get("clients") or []):
                backends += [(MEDIAPIPE_WEB, "cpu"), (MEDIAPIPE_WEB, "gpu")]
            out[n] = [
                {
                    "runtime": rt,
                    "version": None,
                    "backend": be,
                    "status": "not-run",
                    "message": f"device-check NOT RUN: {reason or 'no report'}",
                    "latency_ms": None,
                    "figures": {},
                    "claimed": False,
                }
                for rt, be in backends
            ]
        return out
    where = _where(device_report)
    for r in results:
        out.setdefault(r.file, []).append(
            {
                "runtime": r.runtime,
                "version": r.version,
                "backend": r.backend,
                "status": r.status,
                "message": runtime_words(r.message or ""),
                "latency_ms": None if r.latency_ms is None else round(float(r.latency_ms), 2),
                "figures": {k: float(v) for k, v in (r.figures or {}).items() if isinstance(v, (int, float))},
                "claimed": False,
                "where": where,
                **({"software": True} if getattr(r, "software", False) else {}),
            }
        )
    return out


def runtime_words(message: str, limit: int = 400) -> str:
    """The runtime's own message, without the page's wrapper ("the page reports an error in ...: "),
    the JavaScript stack and MediaPipe's source-location trace: what a reader needs to recognise it."""
    text = str(message)
    text = re.sub(r"^the page reports an error in .*? on \S+ \S+: ", "", text)
    text = re.split(r"\n\s*at |=== Source Location Trace", text)[0]
    return " ".join(text.split())[:limit]


def _where(device_report) -> str:
    ua = getattr(device_report, "user_agent", "") or ""
    browser = next((p for p in ua.split() if p.startswith(("HeadlessChrome/", "Chrome/"))), ua[:60])
    adapter = getattr(device_report, "webgpu_adapter", None)
    return f"{browser}, {getattr(device_report, 'cores', '?')} cores" + (
        f", WebGPU adapter {adapter}" if adapter else ", no WebGPU adapter"
    )


# Files a GPU computes: float activations. A model the WebGPU accelerator cannot take whole (int8,
# int16, dynamic-range hybrid ops) runs on wasm instead (LiteRT.js README: whole-model fallback
# without JSPI, per-op partitioning with it), so its "webgpu" latency is not a GPU's.
GPU_PRECISIONS = ("float32", "float16")
NOT_GPU = "integer or hybrid ops: LiteRT.js runs them on wasm, not on the GPU"


def choose_handoff_gpu(manifest: dict, web: dict[str, list[dict]]) -> dict:
    """The fastest float file (GPU_PRECISIONS) that passes parity on LiteRT.js WebGPU and on every
    other web client a handoff claims (LiteRT.js wasm, MediaPipe web CPU for segmenters); on a
    software adapter, which is judged but not timed, the smallest such file. {"file", "candidates",
    "ranked_by", "measured_with"}, with "reason" when none passes (WebGPU not run, or every file
    failed there)."""
    cands = {}
    for name, entries in web.items():
        if not name.endswith(".tflite"):
            continue
        by = {(e["runtime"], e["backend"]): e for e in entries}
        gpu = by.get(GPU_BACKEND)
        if gpu is None:
            continue
        contract = (manifest["models"][name].get("contract") or {}).get("clients") or []
        precision = manifest["models"][name].get("precision")
        if precision not in GPU_PRECISIONS:
            cands[name] = {
                "webgpu": gpu["status"],
                "latency_ms": gpu.get("latency_ms"),
                "meets": False,
                "missing": [f"{precision}: not a GPU file ({NOT_GPU})"],
            }
            continue
        need = [GPU_BACKEND, (LITERT_JS, "wasm")] + (
            [(MEDIAPIPE_WEB, "cpu")] if MEDIAPIPE_SEGMENTER in contract else []
        )
        missing = [
            f"{rt} {be}: {(by.get((rt, be)) or {}).get('status', 'not measured')}"
            for rt, be in need
            if (by.get((rt, be)) or {}).get("status") != "pass"
        ]
        cands[name] = {
            "webgpu": gpu["status"],
            "latency_ms": gpu.get("latency_ms"),
            "meets": not missing,
            **({"software_gpu": True} if gpu.get("software") else {}),
            **({"missing": missing} if missing else {}),
        }
    best: str | None
    ranked_by: str | None
    ok = [n for n, c in cands.items() if c["meets"]]
    timed = bool(ok) and all(cands[n]["latency_ms"] is not None for n in ok)
    if timed:
        best, ranked_by = min(ok, key=lambda n: cands[n]["latency_ms"]), "latency on WebGPU (median)"
    else:
        # a software adapter (SwiftShader, no GPU on this machine) is judged but not timed: its speed
        # says nothing of a phone's GPU. The smaller file then: a GPU delegate computes in float16
        # either way, and float16 weights halve the bytes it reads
        size = {n: ((manifest.get("files") or {}).get(n) or {}).get("bytes") for n in ok}
        best = (
            min(
                ok,
                key=lambda n: (
                    size[n] is None,
                    size[n] or 0,
                    GPU_PRECISIONS[::-1].index(manifest["models"][n].get("precision")),
                ),
            )
            if ok
            else None
        )
        ranked_by = "file size (WebGPU not timed: software adapter)" if ok else None
    out = {
        "file": best,
        "candidates": cands,
        "ranked_by": ranked_by,
        "measured_with": "LiteRT.js webgpu, `portrait device-check --headless` at export",
    }
    if best is None:
        gpu_any = [c["webgpu"] for c in cands.values()]
        out["reason"] = (
            "WebGPU was not measured (device-check NOT RUN or no WebGPU adapter)"
            if not gpu_any or all(s == "not-run" for s in gpu_any)
            else "no file passed on LiteRT.js WebGPU and the CPU web clients"
        )
    return out


def native_entries(
    verify_report, manifest: dict, *, litert_version: str | None, mediapipe_version: str | None
) -> dict[str, list[dict]]:
    """{file: [entry]} from a `portrait verify` report: ai-edge-litert (the tensor, golden and float
    checks) and MediaPipe Tasks in Python (load, labels, agreement)."""
    out: dict[str, list[dict]] = {}
    for name in manifest.get("models", {}):
        if not name.endswith(".tflite"):
            continue
        checks = [c for c in verify_report.checks if c.file == name]
        lit = [c for c in checks if c.field.startswith(("litert", "goldens", "tensor", "models[].tensors"))]
        run = next((c for c in lit if c.field == "litert.run"), None)
        bad = [c for c in lit if c.status == "FAIL"]
        backend = "reference kernels" if run is not None and "reference" in run.message else "xnnpack"
        status = (
            "no-load"
            if any(c.field == "litert.load" for c in bad)
            else "fail"
            if bad
            else "pass"
            if run is not None and run.status == "pass"
            else "not-run"
        )
        entries = [
            {
                "runtime": LITERT_NATIVE,
                "version": litert_version,
                "backend": backend,
                "status": status,
                "message": "; ".join(f"{c.field}: {c.message}" for c in bad)[:400],
                "latency_ms": None,
                "figures": _figs(lit),
                "claimed": False,
                "where": "export host (portrait verify)",
            }
        ]
        mp = [c for c in checks if c.field.startswith("mediapipe")]
        if mp:
            load_bad = [c for c in mp if c.field == "mediapipe.load" and c.status == "FAIL"]
            bad = [c for c in mp if c.status == "FAIL"]
            if any(c.status == "NOT RUN" for c in mp):
                status = "not-run"
            elif load_bad:
                status = "no-load"
            elif bad:
                status = "fail"
            else:
                status = "loaded" if any(c.status == "info" for c in mp) else "pass"
            entries.append(
                {
                    "runtime": MEDIAPIPE_NATIVE,
                    "version": mediapipe_version,
                    "backend": "cpu",
                    "status": status,
                    "message": "; ".join(f"{c.field}: {c.message}" for c in mp if c.status != "pass" and c.message)[
                        :400
                    ],
                    "latency_ms": None,
                    "figures": _figs(mp),
                    "claimed": False,
                    "where": "export host (portrait verify)",
                }
            )
        out[name] = entries
    return out


def _figs(checks) -> dict:
    out = {}
    for c in checks:
        for k, v in c.figures.items():
            if isinstance(v, float) and k.startswith(("worst_", "mean_", "confidence_")):
                out[k] = v
    return out


def record(manifest: dict, *parts: dict[str, list[dict]]) -> dict:
    """Set models[<file>]["clients"] to the measured entries (native first, then web), each with
    `claimed` from the manifest's contract and handoff fields. Returns the manifest."""
    for name, rec in manifest.get("models", {}).items():
        if not name.endswith(".tflite"):
            continue
        entries = [dict(e) for part in parts for e in part.get(name, [])]
        web_claims = claimed_web_backends(manifest, name)
        contract = (rec.get("contract") or {}).get("clients") or []
        for e in entries:
            if e["runtime"] == LITERT_NATIVE:
                e["claimed"] = LITERT in contract
            elif e["runtime"] == MEDIAPIPE_NATIVE:
                e["claimed"] = MEDIAPIPE_SEGMENTER in contract
            else:
                e["claimed"] = (e["runtime"], e["backend"]) in web_claims
                if e["runtime"] == MEDIAPIPE_WEB and MEDIAPIPE_SEGMENTER not in contract:
                    # measured anyway (the device check runs every file): recorded, but the contract
                    # says this file is not for ImageSegmenter (class indices, not masks)
                    e["meant_for"] = False
        rec["clients"] = entries
    return manifest


def claim_failures(manifest: dict) -> list[str]:
    """ "<file>: <runtime> <backend>: <status>: <message>" for each claimed client measured failing,
    and for each claimed web backend with no entry at all."""
    bad = []
    for name, rec in manifest.get("models", {}).items():
        if not name.endswith(".tflite"):
            continue
        entries = rec.get("clients") or []
        for e in entries:
            if isinstance(e, dict) and e.get("claimed") and e.get("status") in FAILED:
                bad.append(
                    f"{name}: {e['runtime']} {e['backend']}: {e['status']}: {e.get('message') or ''}".rstrip(": ")
                )
        have = {(e.get("runtime"), e.get("backend")) for e in entries if isinstance(e, dict)}
        bad += [
            f"{name}: {rt} {be}: the manifest hands it off there but no measurement is recorded"
            for rt, be in sorted(claimed_web_backends(manifest, name))
            if (rt, be) not in have
        ]
    return bad


def entry_problems(entries) -> list[str]:
    """Shape problems of a models[<file>]["clients"] value (empty when it is a list of measured entries)."""
    if not isinstance(entries, list):
        return [f"clients is {type(entries).__name__}, not a list of measured entries"]
    bad = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            bad.append(
                f"clients[{i}] is {e!r}, not a measured entry (exported before clients were measured: re-export)"
            )
            continue
        missing = [k for k in ENTRY_KEYS if k not in e]
        if missing:
            bad.append(f"clients[{i}] lacks {', '.join(missing)}")
        elif e["status"] not in STATUSES:
            bad.append(f"clients[{i}].status {e['status']!r} is not one of {', '.join(STATUSES)}")
    return bad


def summary(entries) -> str:
    """One cell for the card's file table: "LiteRT.js wasm pass, MediaPipe web GPU no-load, ..."."""
    if not isinstance(entries, list):
        return ""
    return ", ".join(
        f"{label(e)} {e['status'].upper() if e['status'] in FAILED else e['status']}"
        for e in entries
        if isinstance(e, dict)
    )


def label(e: dict) -> str:
    names = {
        LITERT_JS: "LiteRT.js",
        MEDIAPIPE_WEB: "MediaPipe web",
        LITERT_NATIVE: "LiteRT",
        MEDIAPIPE_NATIVE: "MediaPipe Python",
    }
    be = e.get("backend") or ""
    be = be.upper() if be in ("cpu", "gpu") else be
    runtime = str(e.get("runtime"))
    return f"{names.get(runtime, runtime)} {be}".strip()
