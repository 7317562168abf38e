"""Issue 24 items 3 and 4: each file's `clients` is what was measured (verify + device-check), the GPU
handoff is chosen from the WebGPU measurement, and a handoff that fails a client it is handed off for
stops the export. Fast tests use a fake device-check report (no browser); the real headless run of the
offline selfie bundle is in tests/test_handoff.py."""

from __future__ import annotations

import json

import pytest
from builders import tiny_segmenter_project

from toolchain import export as export_mod
from toolchain.device.device_check import BackendResult, DeviceReport
from toolchain.errors import ExportError
from toolchain.export import export_model
from toolchain.handoff import client, clients
from toolchain.handoff import verify as verify_mod
from toolchain.handoff.metadata import LITERT, MEDIAPIPE_SEGMENTER
from toolchain.recipes import merge_defaults

BACKENDS = (
    ("litert.js", "wasm"),
    ("mediapipe-tasks-vision", "cpu"),
    ("litert.js", "webgpu"),
    ("mediapipe-tasks-vision", "gpu"),
)


def _manifest(**handoffs) -> dict:
    seg = {"contract": {"clients": [LITERT, MEDIAPIPE_SEGMENTER]}, "clients": []}
    return {
        "model_id": "m",
        "models": {
            f"m_{p}.tflite": {"precision": p, **json.loads(json.dumps(seg))}
            for p in ("float32", "float16", "int8", "w8a16")
        },
        **handoffs,
    }


def _report(outcome) -> DeviceReport:
    """outcome(file, runtime, backend) -> (status, latency_ms, message)."""
    results = []
    for f in ("m_float32.tflite", "m_float16.tflite", "m_int8.tflite", "m_w8a16.tflite"):
        for rt, be in BACKENDS:
            status, ms, msg = outcome(f, rt, be)
            results.append(
                BackendResult(
                    f, rt, "9.9.9", be, status, msg, {"max_rel": 0.001} if status == "pass" else {}, ms, False
                )
            )
    return DeviceReport("b", results, "Mozilla/5.0 HeadlessChrome/156.0.0.0", 2, "google / swiftshader", None)


def _measured(f, rt, be):
    if "int8" in f or "w8a16" in f:  # the findings, before the uint8 output edge
        if rt == "litert.js":
            return "no-load", None, "Element type INT8 is not supported."
        if be == "gpu":
            return "fail", None, "TensorsDequantizationCalculator: Unsupported input tensor type: Float32"
        return "pass", 300.0, ""
    ms = {"wasm": 30.0, "cpu": 25.0, "webgpu": 400.0 if "float32" in f else 300.0, "gpu": 900.0}[be]
    return "pass", ms, ""


def test_handoff_gpu_is_the_fastest_file_passing_on_webgpu_and_the_cpu_web_clients():
    m = _manifest(handoff="m_w8a16.tflite", handoff_cpu="m_float32.tflite")
    web = clients.web_entries(_report(_measured), m)
    choice = clients.choose_handoff_gpu(m, web)
    assert choice["file"] == "m_float16.tflite"  # 300 ms on WebGPU beats float32's 400 ms
    assert choice["ranked_by"] == "latency on WebGPU (median)"
    assert choice["candidates"]["m_float32.tflite"]["meets"]
    assert not choice["candidates"]["m_int8.tflite"]["meets"]
    assert "not a GPU file" in choice["candidates"]["m_int8.tflite"]["missing"][0]

    def float16_webgpu_fails(f, rt, be):
        return (
            ("fail", 300.0, "max_rel 0.2 > 0.05")
            if f == "m_float16.tflite" and be == "webgpu"
            else _measured(f, rt, be)
        )

    choice = clients.choose_handoff_gpu(m, clients.web_entries(_report(float16_webgpu_fails), m))
    assert choice["file"] == "m_float32.tflite"
    assert choice["candidates"]["m_float16.tflite"]["missing"] == ["litert.js webgpu: fail"]

    def slow_wasm(f, rt, be):  # float16 passes on WebGPU but fails on wasm: not a GPU handoff
        if f == "m_float16.tflite" and be == "wasm":
            return "fail", 30.0, "max_rel 0.2 > 0.001"
        return _measured(f, rt, be)

    assert clients.choose_handoff_gpu(m, clients.web_entries(_report(slow_wasm), m))["file"] == "m_float32.tflite"

    def int8_fast_on_webgpu(f, rt, be):  # an integer file "passing" on WebGPU ran on wasm: never the GPU handoff
        if f == "m_int8.tflite":
            return "pass", 5.0, ""
        return _measured(f, rt, be)

    choice = clients.choose_handoff_gpu(m, clients.web_entries(_report(int8_fast_on_webgpu), m))
    assert (
        choice["file"] == "m_float16.tflite" and "not a GPU file" in choice["candidates"]["m_int8.tflite"]["missing"][0]
    )

    def software_gpu(f, rt, be):  # SwiftShader: judged, not timed -> the smaller passing float file
        return ("pass", None, "software GPU") if be == "webgpu" else _measured(f, rt, be)

    m["files"] = {"m_float32.tflite": {"bytes": 4000}, "m_float16.tflite": {"bytes": 2000}}
    choice = clients.choose_handoff_gpu(m, clients.web_entries(_report(software_gpu), m))
    assert choice["file"] == "m_float16.tflite" and choice["ranked_by"].startswith("file size")

    def no_gpu(f, rt, be):
        return ("not-run", None, "no WebGPU adapter") if be in ("webgpu", "gpu") else _measured(f, rt, be)

    choice = clients.choose_handoff_gpu(m, clients.web_entries(_report(no_gpu), m))
    assert choice["file"] is None and "WebGPU was not measured" in choice["reason"]


def test_a_claimed_client_measured_failing_is_named_with_the_runtime_message():
    m = _manifest(handoff="m_w8a16.tflite", handoff_cpu="m_float32.tflite")
    clients.record(m, clients.web_entries(_report(_measured), m))
    bad = clients.claim_failures(m)
    assert bad == ["m_w8a16.tflite: litert.js wasm: no-load: Element type INT8 is not supported."]
    by = {(e["runtime"], e["backend"]): e for e in m["models"]["m_w8a16.tflite"]["clients"]}
    assert by["litert.js", "wasm"]["claimed"] and by["mediapipe-tasks-vision", "cpu"]["claimed"]
    assert not by["litert.js", "webgpu"]["claimed"] and not by["mediapipe-tasks-vision", "gpu"]["claimed"]
    assert by["mediapipe-tasks-vision", "gpu"]["message"].startswith("TensorsDequantizationCalculator")
    # m_int8 fails the same way but is not handed off: recorded, not an export failure
    assert not any(e["claimed"] for e in m["models"]["m_int8.tflite"]["clients"])
    # once the GPU handoff is chosen, it claims WebGPU too
    m["handoff_gpu"] = "m_float16.tflite"
    clients.record(m, clients.web_entries(_report(_measured), m))
    assert ("litert.js", "webgpu") in clients.claimed_web_backends(m, "m_float16.tflite")
    assert [b for b in clients.claim_failures(m) if "float16" in b] == []


def test_no_browser_is_recorded_not_run_never_passed():
    m = _manifest(handoff="m_int8.tflite")
    web = clients.web_entries(None, m, not_run_reason="Chromium not found")
    clients.record(m, web)
    entries = m["models"]["m_int8.tflite"]["clients"]
    assert {e["status"] for e in entries} == {"not-run"} and len(entries) == 4
    assert all("Chromium not found" in e["message"] for e in entries)
    assert clients.claim_failures(m) == []  # NOT RUN is not a failure ...
    assert clients.choose_handoff_gpu(m, web)["file"] is None  # ... and never a pass
    assert not any(e["status"] == "pass" for e in entries)


def test_clients_that_are_names_not_measurements_fail_verify():
    m = _manifest(handoff="m_int8.tflite")
    m["models"]["m_int8.tflite"]["clients"] = [LITERT, MEDIAPIPE_SEGMENTER]
    report = verify_mod.VerifyReport("b")
    verify_mod._check_clients(m, "m_int8.tflite", report)
    assert report.failures and "re-export" in report.failures[0].message


# ---------------------------------------------------------------- the export, with a fake browser


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    if client.client_python() is None:
        pytest.skip("MediaPipe client environment absent: run `make client-env` (export writes metadata with it)")
    d = tmp_path_factory.mktemp("clients_tiny")
    reg, images = tiny_segmenter_project(d)
    return d, reg, images


def _export(tiny, out, monkeypatch, tmp_path, outcome):
    d, reg, images = tiny
    monkeypatch.setenv("PORTRAIT_MODELS_DIR", str(d / "models"))
    monkeypatch.setenv("PORTRAIT_CACHE_DIR", str(tmp_path.parent / "clients_cache"))
    seen = {}

    def fake_device_check(staged, say):
        names = sorted(n for n in json.loads((staged / "manifest.json").read_text())["models"] if n.endswith(".tflite"))
        seen["names"] = names
        results = [
            BackendResult(
                f, rt, "9.9.9", be, *outcome(f, rt, be)[:1], outcome(f, rt, be)[2], {}, outcome(f, rt, be)[1], False
            )
            for f in names
            for rt, be in BACKENDS
        ]
        return DeviceReport(str(staged), results, "HeadlessChrome/156", 2, "swiftshader", None), None

    monkeypatch.setattr(export_mod, "_device_check", fake_device_check)
    recipe = merge_defaults(
        {
            "label_variant": False,
            "onnx": False,
            "calibration": {"samples": 12, "sources": ["skimage"]},
            "import_check": {"max_abs_diff": 1e-3},
            "parity": {"pixel_agreement_min": 0.5, "classes": []},
        }
    )
    return export_model("tiny", out_root=out, recipe=recipe, images_folder=images, registry=reg, quiet=True), seen


def _all_pass(f, rt, be):
    return "pass", {"wasm": 20.0, "cpu": 20.0, "webgpu": 50.0 if "float16" in f else 80.0, "gpu": 90.0}[be], ""


def test_export_records_measured_clients_and_the_gpu_handoff(tiny, tmp_path, monkeypatch):
    result, seen = _export(tiny, tmp_path / "out", monkeypatch, tmp_path, _all_pass)
    b = result.bundle
    m = json.loads((b / "manifest.json").read_text())
    assert m["handoff_gpu"] == "tiny_float16.tflite" == result.figures["handoff_gpu"]
    assert m["device_check"]["status"] == "ran" and m["device_check"]["webgpu_adapter"] == "swiftshader"
    h = m["models"][m["handoff"]]
    assert h["contract"]["clients"] == [LITERT, MEDIAPIPE_SEGMENTER]  # meant for
    by = {(e["runtime"], e["backend"]): e for e in h["clients"]}  # measured
    assert (
        by["ai-edge-litert", "reference kernels"]["status"] == "pass"
        and by["ai-edge-litert", "reference kernels"]["claimed"]
    )
    assert by["mediapipe (Python)", "cpu"]["status"] == "pass" and by["mediapipe (Python)", "cpu"]["version"]
    assert by["litert.js", "wasm"]["claimed"] and by["litert.js", "wasm"]["version"] == "9.9.9"
    assert not by["litert.js", "webgpu"]["claimed"]
    assert h["outputs"][next(iter(h["outputs"]))]["dtype"] == "uint8"  # the output edge LiteRT.js reads
    gpu = {(e["runtime"], e["backend"]): e for e in m["models"]["tiny_float16.tflite"]["clients"]}
    assert gpu["litert.js", "webgpu"]["claimed"] and "latency_ms" not in gpu["litert.js", "webgpu"]
    # browser latencies differ run to run: in the run record beside the bundles, not in the manifest
    run = json.loads((b.parent / "runs" / "tiny.json").read_text())
    assert run["models.tiny_float16.tflite.clients.litert.js webgpu.latency_ms"] == 50.0, run
    card = (b / "README.md").read_text()
    assert "## Clients, measured" in card and "GPU (WebGPU) handoff: `tiny_float16.tflite`" in card
    report = verify_mod.verify(b)
    assert report.passed, report.format()
    assert [c for c in report.checks if c.field == "models[].clients" and c.status == "pass"]


def test_export_whose_handoff_does_not_load_in_a_claimed_client_fails_loudly(tiny, tmp_path, monkeypatch):
    out = tmp_path / "out"

    def int8_refused(f, rt, be):
        if rt == "litert.js" and "int8" in f:
            return "no-load", None, "Element type INT8 is not supported."
        return _all_pass(f, rt, be)

    with pytest.raises(ExportError) as err:
        _export(tiny, out, monkeypatch, tmp_path, int8_refused)
    msg = str(err.value)
    assert "tiny_int8.tflite: litert.js wasm: no-load: Element type INT8 is not supported." in msg
    assert not (out / "tiny").exists()  # nothing handed off


def test_export_without_a_browser_says_not_run_and_succeeds(tiny, tmp_path, monkeypatch):
    d, reg, images = tiny
    monkeypatch.setenv("PORTRAIT_MODELS_DIR", str(d / "models"))
    monkeypatch.setenv("PORTRAIT_CACHE_DIR", str(tmp_path.parent / "clients_cache"))
    monkeypatch.setattr(export_mod, "_device_check", lambda staged, say: (None, "node not found on PATH"))
    recipe = merge_defaults(
        {
            "label_variant": False,
            "onnx": False,
            "calibration": {"samples": 12, "sources": ["skimage"]},
            "import_check": {"max_abs_diff": 1e-3},
            "parity": {"pixel_agreement_min": 0.5, "classes": []},
        }
    )
    b = export_model(
        "tiny", out_root=tmp_path / "out", recipe=recipe, images_folder=images, registry=reg, quiet=True
    ).bundle
    m = json.loads((b / "manifest.json").read_text())
    assert m["handoff_gpu"] is None and m["device_check"] == {"status": "not run", "reason": "node not found on PATH"}
    web = [e for e in m["models"][m["handoff"]]["clients"] if e["runtime"] in ("litert.js", "mediapipe-tasks-vision")]
    assert web and {e["status"] for e in web} == {"not-run"}
    card = (b / "README.md").read_text()
    assert "NOT RUN (node not found on PATH)" in card


def test_mediapipe_web_runs_of_a_class_index_file_are_recorded_not_meant_for_it():
    m = _manifest(handoff="m_int8.tflite")
    m["models"]["m_w8a16.tflite"]["contract"]["clients"] = [LITERT]  # e.g. the ArgMax labels variant
    clients.record(m, clients.web_entries(_report(_measured), m))
    by = {(e["runtime"], e["backend"]): e for e in m["models"]["m_w8a16.tflite"]["clients"]}
    assert by["mediapipe-tasks-vision", "cpu"]["meant_for"] is False and "meant_for" not in by["litert.js", "wasm"]
