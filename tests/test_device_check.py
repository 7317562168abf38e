"""Issue 24, `portrait device-check`: the offline selfie bundle run in headless Chromium (LiteRT.js wasm,
WebGPU where the software adapter starts, MediaPipe web CPU/GPU), judged by `portrait check`'s
checker; a corrupted model, an edited golden and a page that throws each fail naming the file and the
backend within the timeout (a damaged file whose SHA-256 was not re-recorded is refused by the bundle
loader before anything runs); bad input is a clear error. Browser tests skip with the reason when Chromium
or web/node_modules is absent (.ci/run installs both)."""

from __future__ import annotations

import json
import shutil
import socket
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from toolchain.bundle import record_files
from toolchain.cli import main as cli
from toolchain.device import device_check as dc
from toolchain.device.browser import find_chromium
from toolchain.device.check import compare
from toolchain.errors import BundleError, InputError, PortraitError


def _browser_missing() -> str | None:
    try:
        find_chromium()
    except InputError:
        return "Chromium absent (apt-get install chromium)"
    try:
        dc.check_web_runtimes()
    except InputError:
        return "web/node_modules absent: run `make web` (npm ci --prefix web)"
    return None


needs_browser = pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))


def _copy(bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / bundle.name
    shutil.copytree(bundle, dst)
    return dst


def _float32(bundle: Path) -> str:
    return f"{json.loads((bundle / 'manifest.json').read_text())['model_id']}_float32.tflite"


def _claim(bundle: Path, name: str, backend: str = "wasm") -> None:
    """Make the manifest hand `name` off to LiteRT.js `backend`, whatever file the recipe's ladder chose
    as handoff (w8a16 with ../shared's photos, mixed float without): the exit status follows claims."""
    path = bundle / "manifest.json"
    m = json.loads(path.read_text())
    entries = m["models"][name]["clients"]
    hit = [c for c in entries if isinstance(c, dict) and c.get("runtime") == dc.LITERT and c.get("backend") == backend]
    assert hit, entries
    for c in hit:
        c["claimed"] = True
    path.write_text(json.dumps(m, indent=2))


@pytest.fixture(scope="module")
def selfie_report(selfie_bundle, tmp_path_factory):
    if _browser_missing():
        pytest.skip(_browser_missing())
    out = tmp_path_factory.mktemp("device-report")
    report = dc.run_device_check(selfie_bundle, runs=2, timeout_s=120, report_dir=out, progress=print)
    return report, out


@pytest.mark.slow
@needs_browser
def test_headless_selfie_runs_every_file_on_every_backend(selfie_report, selfie_bundle):
    report, out = selfie_report
    m = json.loads((selfie_bundle / "manifest.json").read_text())
    by = {(r.file, r.backend): r for r in report.results}
    files = sorted(n for n in m["models"] if n.endswith(".tflite"))
    assert {f for f, _ in by} == set(files)
    assert {b for _, b in by} == {"wasm", "webgpu", "cpu", "gpu"}
    assert "Chrome" in report.user_agent and report.cores >= 1
    f32 = _float32(selfie_bundle)
    # the float32 file runs on LiteRT.js wasm and matches this host's LiteRT run of it
    r = by[f32, "wasm"]
    assert r.status == "pass" and r.vectors >= 3 and r.latency_ms > 0 and len(r.latency_runs_ms) == 2, r
    assert r.figures["max_rel"] < 1e-3
    # MediaPipe web CPU runs the float32 file and the handoff, category masks agreeing with the references
    for name in (f32, m["handoff"]):
        assert by[name, "cpu"].status == "pass", by[name, "cpu"]
        assert by[name, "cpu"].figures["category_agreement"] >= 0.98
    # WebGPU where the software adapter starts; otherwise reported not run, never passed
    if report.webgpu_adapter:
        assert by[f32, "webgpu"].status == "pass", by[f32, "webgpu"]
    else:
        assert by[f32, "webgpu"].status == "not-run" and "WebGPU" in by[f32, "webgpu"].message
    # every verdict is one of the four, and anything not passing says why (a refused file: the runtime's message)
    for r in report.results:
        assert r.status in dc.STATUSES and (r.status == "pass" or r.message), r
        assert r.status != "no-load" or not r.supported, r  # a claimed client that refuses the file fails
    # the exit status follows the claims: 1 exactly when a claimed file fails
    assert report.exit_code() == (1 if any(r.status == "fail" and r.supported for r in report.results) else 0)
    saved = json.loads((out / "device-report.json").read_text())
    assert saved["user_agent"] == report.user_agent and len(saved["results"]) == len(report.results)
    assert "<table>" in (out / "device-report.html").read_text()


def _corrupt_weights(path: Path) -> None:
    """Negate the largest float32 weight tensor in place: the file still loads, its outputs are wrong."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    raw = bytearray(path.read_bytes())
    best = None
    for d in it.get_tensor_details():
        try:
            a = it.get_tensor(d["index"])
        except ValueError:
            continue
        bigger = a.dtype == np.float32 and a.size > 1000 and (best is None or a.size > best.size)
        if bigger and raw.find(a.tobytes()) >= 0:
            best = a
    off = raw.find(best.tobytes())
    raw[off : off + best.nbytes] = (-best).tobytes()
    path.write_bytes(bytes(raw))


@pytest.mark.slow
@needs_browser
def test_corrupted_model_fails_naming_file_and_backend(selfie_bundle, tmp_path):
    b = _copy(selfie_bundle, tmp_path)
    f32 = _float32(b)
    _claim(b, f32)
    _corrupt_weights(b / f32)
    with pytest.raises(BundleError, match="files.*sha256") as e:  # as copied: the bundle loader names it
        dc.run_device_check(b, runs=1, timeout_s=60, report_dir=tmp_path / "rep", files=[f32], backends=["wasm"])
    assert e.value.file == f32
    record_files(b, f32)  # the damage re-recorded in the manifest: only the outputs can tell now
    t0 = time.monotonic()
    report = dc.run_device_check(
        b, runs=1, timeout_s=60, report_dir=tmp_path / "rep", files=[f32], backends=["wasm"], progress=None
    )
    assert time.monotonic() - t0 < 90
    (r,) = report.results
    assert (r.file, r.backend, r.status) == (f32, "wasm", "fail"), r
    assert "max_rel" in r.message  # the float32 file against the goldens' float reference
    assert report.exit_code() == 1
    assert f"FAIL    {f32} on litert.js wasm" in dc.format_table(report)


@pytest.mark.slow
@needs_browser
def test_edited_golden_fails_naming_file_and_backend(selfie_bundle, tmp_path):
    b = _copy(selfie_bundle, tmp_path)
    m = json.loads((b / "manifest.json").read_text())
    handoff = m["handoff"]
    idx = json.loads((b / "goldens" / "goldens.json").read_text())
    for v in idx["vectors"]:
        if v.get("model_file") == handoff:
            for rec in v["expected"].values():
                p = b / "goldens" / rec["file"]
                a = np.load(p)
                info = np.iinfo(a.dtype) if a.dtype.kind in "iu" else None
                flipped = (info.max + info.min - a.astype(np.int32)).astype(a.dtype) if info else -a
                np.save(p, flipped)  # the opposite decision on every pixel
    record_files(b, "goldens/")  # re-recorded, so the bundle loader lets it through to the comparison
    report = dc.run_device_check(
        b, runs=1, timeout_s=60, report_dir=tmp_path / "rep", files=[handoff], backends=["cpu"], progress=None
    )
    (r,) = report.results
    assert (r.file, r.backend, r.status) == (handoff, "cpu", "fail"), r
    assert "category_mask: agreement" in r.message
    assert f"FAIL    {handoff} on mediapipe-tasks-vision cpu" in dc.format_table(report)


@pytest.mark.slow
@needs_browser
def test_page_that_throws_fails_the_job_and_does_not_hang(selfie_bundle, tmp_path):
    b = _copy(selfie_bundle, tmp_path)
    f32 = _float32(b)
    _claim(b, f32)
    f16 = f32.replace("float32", "float16")
    t0 = time.monotonic()
    report = dc.run_device_check(
        b,
        runs=1,
        timeout_s=45,
        report_dir=tmp_path / "rep",
        files=[f16, f32],
        backends=["wasm"],
        progress=None,
        fault={"file": f32, "backend": "wasm"},
    )
    took = time.monotonic() - t0
    assert took < 45, took  # the page error ends the run, not the timeout
    by = {r.file: r for r in report.results}
    assert by[f32].status == "fail" and "test hook: the page throws" in by[f32].message
    assert f32 in by[f32].message and "wasm" in by[f32].message
    assert report.exit_code() == 1


@pytest.mark.slow
@needs_browser
def test_a_job_that_hangs_fails_after_the_timeout(selfie_bundle, tmp_path):
    b = _copy(selfie_bundle, tmp_path)
    f32 = _float32(b)
    _claim(b, f32)
    t0 = time.monotonic()
    report = dc.run_device_check(
        b,
        runs=1,
        timeout_s=8,
        report_dir=tmp_path / "rep",
        files=[f32],
        backends=["wasm", "cpu"],
        progress=None,
        fault={"file": f32, "backend": "wasm", "kind": "hang"},
    )
    assert time.monotonic() - t0 < 60
    by = {r.backend: r for r in report.results}
    assert by["wasm"].status == "fail" and "no result within 8 s" in by["wasm"].message
    assert f"{f32} on litert.js wasm" in by["wasm"].message
    assert by["cpu"].status == "not-run" and "timeout" in by["cpu"].message  # never reported as passed
    assert report.exit_code() == 1


# ---------------------------------------------------------------- no browser needed


def test_exit_codes_and_claims():
    def res(status, supported=True):
        return dc.BackendResult("a.tflite", dc.LITERT, "2.5.3", "wasm", status, "", {}, None, supported)

    def rep(*rs):
        return dc.DeviceReport("b", list(rs), "", 0, None, None)

    assert rep(res("pass"), res("no-load", False)).exit_code() == 0
    assert rep(res("pass"), res("fail")).exit_code() == 1
    assert rep(res("pass"), res("fail", False)).exit_code() == 0
    assert rep(res("not-run"), res("no-load", False)).exit_code() == 3  # nothing ran: never a pass
    assert rep().exit_code() == 3
    m = {
        "models": {
            "f.tflite": {
                "clients": ["LiteRT Interpreter", "MediaPipe Tasks ImageSegmenter"],
                "runtimes": ["LiteRT XNNPACK delegate (CPU)"],
            },
            "g.tflite": {
                "clients": [
                    {"runtime": dc.LITERT, "backend": "webgpu", "status": "pass"},
                    {"runtime": dc.LITERT, "backend": "wasm", "status": "no-load"},
                ]
            },
        }
    }
    assert dc.claims(m, "f.tflite", dc.LITERT, "wasm") and dc.claims(m, "f.tflite", dc.MEDIAPIPE, "cpu")
    assert not dc.claims(m, "f.tflite", dc.LITERT, "webgpu")  # no GPU delegate in its runtimes
    assert dc.claims(m, "g.tflite", dc.LITERT, "webgpu") and not dc.claims(m, "g.tflite", dc.LITERT, "wasm")


def test_float_metric_is_relative_to_the_range_and_checks_argmax():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(1, 8, 8, 3)).astype(np.float32)
    tol = {"metric": "float", "max_rel_max": 0.01, "argmax_agreement_min": 0.99, "argmax_margin_rel": 0.0}
    m, f = compare(e, e + 1e-4, {}, tol)
    assert not f and m["max_rel"] < 1e-4 and m["argmax_agreement"] == 1.0
    m, f = compare(e, e[..., ::-1].copy(), {}, tol)
    assert any("max_rel" in x for x in f) and any("argmax_agreement" in x for x in f)
    m, f = compare(e, np.full_like(e, np.nan), {}, tol)
    assert any("non-finite" in x for x in f)


def test_bad_input_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="no exported bundle"):
        dc.run_device_check(tmp_path / "nope", progress=None)
    with pytest.raises(InputError, match="HOST:PORT"):
        dc._split_hostport("8000")
    monkeypatch.setenv("PORTRAIT_CHROMIUM", str(tmp_path / "no-chrome"))
    with pytest.raises(InputError, match="PORTRAIT_CHROMIUM"):
        find_chromium()
    monkeypatch.setattr(dc, "WEB_DIR", tmp_path)
    with pytest.raises(InputError, match="make web"):
        dc.check_web_runtimes()


def test_port_in_use_is_named(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        with pytest.raises(InputError, match=f"port {s.getsockname()[1]} .* in use"):
            dc._bind("127.0.0.1", s.getsockname()[1])
    finally:
        s.close()


@needs_browser
def test_phone_never_connects_ends_with_a_clear_message(selfie_bundle, tmp_path, capsys):
    f32 = _float32(selfie_bundle)
    t0 = time.monotonic()
    with pytest.raises(PortraitError, match="no browser opened the check page within 2 s"):
        dc.run_device_check(
            selfie_bundle, serve="127.0.0.1:0", timeout_s=2, files=[f32], backends=["wasm"], report_dir=tmp_path
        )
    assert time.monotonic() - t0 < 30
    out = capsys.readouterr().out
    assert "http://127.0.0.1:" in out and "waiting up to 2 s" in out
    assert "\u2580" in out or "\u2584" in out or "\u2588" in out  # the QR code drawn in the terminal


def test_zip_with_a_wrong_checksum_is_refused(tmp_path):
    root = tmp_path / "b"
    root.mkdir()
    (root / "manifest.json").write_text("{}")
    (root / "m.tflite").write_bytes(b"model")
    (root / "SHA256SUMS").write_text("0" * 64 + "  m.tflite\n")
    z = tmp_path / "b-0.1.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in root.iterdir():
            zf.write(p, f"b/{p.name}")
    with pytest.raises(InputError, match=r"m\.tflite.*differs from the zip's SHA256SUMS"):
        dc.open_bundle(z, tmp_path / "x")
    assert cli(["device-check", str(z)]) == 2


def test_card_dump_recipe_writes_what_portrait_check_reads(selfie_bundle, tmp_path):
    """The model card's Kotlin/Swift dump code, done in Python byte for byte: the .npy payload after the
    10-byte preamble + header, the raw output as <golden name>.bin. `portrait check` passes the model vectors."""
    from toolchain.device.check import check_outputs
    from toolchain.handoff.card import render_card
    from toolchain.runtime import TfliteRunner

    m = json.loads((selfie_bundle / "manifest.json").read_text())
    card = render_card(m, selfie_bundle)
    assert "## Check it on your phone" in card and f"portrait device-check {m['model_id']} --serve" in card
    assert "fun npyPayload" in card and "func npyPayload" in card
    g = selfie_bundle / "goldens"
    idx = json.loads((g / "goldens.json").read_text())
    for v in idx["vectors"]:
        if v["stage"] != "model":
            continue
        b = (g / v["inputs"]["image"]["file"]).read_bytes()
        payload = b[10 + (b[8] | b[9] << 8) :]
        rec_in = v["inputs"]["image"]
        x = np.frombuffer(payload, dtype=rec_in["dtype"]).reshape(rec_in["shape"])
        assert np.array_equal(x, np.load(g / rec_in["file"]))
        y = next(
            iter(
                TfliteRunner(selfie_bundle / v["model_file"], kernels="reference", threads=1)
                .run(x, dequantize=False)
                .values()
            )
        )
        rec = next(iter(v["expected"].values()))
        (tmp_path / rec["file"].replace(".npy", ".bin")).write_bytes(np.ascontiguousarray(y).tobytes())
    results = check_outputs(selfie_bundle, tmp_path)
    assert all(r.passed for r in results if r.stage == "model"), [r.failures for r in results]
    assert any(r.stage == "model" for r in results)


def test_bench_prints_browser_latency_beside_native_as_ratios(monkeypatch, tmp_path):
    """`portrait bench`: the browser's medians beside this run's native XNNPACK figures (a fake device-check)."""
    from toolchain.device import browser_bench as bench

    def fake_check(bundle, **kw):
        rs = [
            dc.BackendResult("m_float32.tflite", dc.LITERT, "2.5.3", "wasm", "pass", "", {}, 30.0, True),
            dc.BackendResult(
                "m_float32.tflite", dc.LITERT, "2.5.3", "webgpu", "pass", "", {}, None, True, software=True
            ),
            dc.BackendResult("m_int8.tflite", dc.LITERT, "2.5.3", "wasm", "no-load", "INT8", {}, None, False),
        ]
        return dc.DeviceReport(str(bundle), rs, "UA", 2, "swiftshader", None, webgl_renderer="SwiftShader")

    monkeypatch.setattr(bench, "run_device_check", fake_check)
    rows = [{"model_id": "m", "threads": 2, "ms": {"float32": 10.0, "int8": 5.0}}]
    res = bench.browser_bench(rows, tmp_path, runs=5)
    cell = res[0]["files"]["m_float32.tflite"]
    assert cell["native_ms"] == 10.0 and cell["litert.js wasm"]["over_native"] == 3.0
    assert cell["litert.js webgpu"]["ms"] is None and cell["litert.js webgpu"]["software_gpu"]
    table = bench.format_browser_table(res)
    assert "30.0 (3.0x)" in table and "sw GPU*" in table and "native XNNPACK ms of this run" in table
    assert res[0]["files"]["m_int8.tflite"]["litert.js wasm"]["status"] == "no-load" and "no-load" in table
