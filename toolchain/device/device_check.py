"""On-device parity in a browser: serve the check page (web/), let a browser run every model file of a
bundle on every backend it offers, and judge the raw outputs it posts back with the checker `portrait
check` uses (check.compare), so a phone, the headless browser and a tensor dump are judged alike.

Flow (one HTTP server in a thread, this module's; the page is web/index.html + web/check.js):
1. the plan: for every .tflite file and backend -- LiteRT.js `wasm` and `webgpu`; MediaPipe Tasks
   Vision ImageSegmenter `cpu` and `gpu` for segmenters -- the page gets the file's URL and, per golden
   image, the input bytes made here exactly as the manifest's contract says (handoff.verify.contract_input),
   or the golden RGB image itself for MediaPipe (which resizes and normalizes by the file's metadata);
2. the browser (`--headless`: this machine's Chromium, browser.py; `--serve`: any browser, a phone)
   loads each file, posts each output (POST /output: raw bytes, dtype and shape in the query), times
   `runs` more runs after those (the warm-up; the median is the latency), and posts the status (POST /job);
3. here each output is compared with its reference: the golden vectors (int8 reference kernels) of files
   that have them; the goldens' float32 reference for the float32 file; else this host's LiteRT XNNPACK
   run of the same file on the same input (float16, dynamic); MediaPipe's
   category mask against the decode (argmax) of that reference, its confidence masks against softmax;
   tolerances from tolerances.toml, with their own sections for GPU backends (float16 arithmetic).

A file that does not load is "no-load" with the runtime's message; it fails only where the manifest
claims the client (`supported`). Exit status (DeviceReport.exit_code): 1 if a supported file fails,
3 if nothing ran, else 0.

Not for: the metrics themselves (check.py), launching the browser (browser.py), the export's gate.
"""

from __future__ import annotations

import html
import io
import json
import platform
import queue
import socket
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import segno

from toolchain import bundle_loader, paths
from toolchain.bundle import read_manifest
from toolchain.errors import InputError, PortraitError
from toolchain.handoff.metadata import file_record
from toolchain.handoff.verify import contract_input
from toolchain.runtime import TfliteRunner

from .browser import HeadlessChromium, find_chromium
from .check import compare
from .goldens import golden_index, load_tensor, tolerances

WEB_DIR = paths.REPO_ROOT / "web"
LITERT, MEDIAPIPE = "litert.js", "mediapipe-tasks-vision"
PACKAGES = {LITERT: "@litertjs/core", MEDIAPIPE: "@mediapipe/tasks-vision"}
# run order: CPU backends first, so a GPU backend that aborts its runtime cannot take CPU verdicts with it
BACKENDS = ((LITERT, "wasm"), (MEDIAPIPE, "cpu"), (LITERT, "webgpu"), (MEDIAPIPE, "gpu"))
GPU_BACKENDS = {"webgpu", "gpu"}
STATUSES = ("pass", "fail", "no-load", "not-run")
SERVED = {"/": "index.html", "/index.html": "index.html", "/check.js": "check.js"}
MIME = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".map": "application/json",
}
AFTER_PAGE_ERROR_S = 10.0  # after an uncaught page error, how long to wait for the page to go on


@dataclass
class BackendResult:
    file: str
    runtime: str  # "litert.js" | "mediapipe-tasks-vision"
    version: str
    backend: str  # "wasm" | "webgpu" | "cpu" | "gpu"
    status: str  # "pass" | "fail" | "no-load" | "not-run"
    message: str
    figures: dict[str, float]
    latency_ms: float | None
    supported: bool  # the manifest claims this client for the file
    latency_runs_ms: list[float] = field(default_factory=list)
    vectors: int = 0  # outputs judged (images x outputs)
    reference: str = ""  # what the outputs were compared with
    software: bool = False  # a GPU backend on a software adapter (SwiftShader): one image, not timed
    phases_ms: dict[str, float] = field(default_factory=dict)  # in the page: load, golden runs, timing
    job_s: float | None = None  # from the page's start of the job to its result, as this server saw it

    @property
    def label(self) -> str:
        return f"{self.file} on {self.runtime} {self.backend}"


@dataclass
class DeviceReport:
    bundle: str
    results: list[BackendResult]
    user_agent: str
    cores: int
    webgpu_adapter: str | None
    not_run_reason: str | None
    webgl_renderer: str | None = None
    model_id: str = ""
    runs: int = 0
    url: str = ""
    wall_s: float = 0.0
    timings_s: dict[str, float] = field(default_factory=dict)  # references, browser start, page run
    host_isa: str = ""
    report_dir: str = ""

    def exit_code(self) -> int:
        """1: a file fails on a backend its manifest supports; 3: nothing ran (never a pass); else 0."""
        if any(r.status == "fail" and r.supported for r in self.results):
            return 1
        if not any(r.status in ("pass", "fail") for r in self.results):
            return 3
        return 0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["exit_code"] = self.exit_code()
        return d


# ---------------------------------------------------------------- bundle and claims


def open_bundle(target: str | Path, workdir: Path, *, staged: bool = False) -> Path:
    """A bundle folder, a `portrait pack` zip (extracted into workdir, SHA256SUMS checked) or a model id
    under PORTRAIT_OUT_DIR, opened by the bundle loader: the manifest's schema and every file's SHA-256
    are checked before a file is served to the page or run here (BundleError names the first damage)."""
    return bundle_loader.open_bundle(target, workdir=workdir, staged=staged).root


def claims(manifest: dict, name: str, runtime: str, backend: str) -> bool:
    """Whether the manifest says the file runs in this client. `clients` entries are either names
    ("LiteRT Interpreter", "MediaPipe Tasks ImageSegmenter": the CPU path; the GPU path where the file's
    `runtimes` list a GPU delegate) or measured records {"runtime", "backend", "status", "claimed"}
    (handoff/clients.py: `claimed`; without it, pass = claimed)."""
    rec = manifest.get("models", {}).get(name, {})
    gpu = backend in GPU_BACKENDS
    for c in rec.get("clients", []) or []:
        if isinstance(c, dict):
            if c.get("runtime") == runtime and c.get("backend") == backend:
                # an exported bundle's entry says whether the manifest hands the file off there
                # (handoff/clients.py); an entry without that flag counts when it passed
                return bool(c["claimed"]) if "claimed" in c else c.get("status") == "pass"
            continue
        if runtime == LITERT and c.startswith("LiteRT") or runtime == MEDIAPIPE and c.startswith("MediaPipe"):
            if not gpu or any("GPU" in r for r in rec.get("runtimes", []) or []):
                return True
    return False


def _record(manifest: dict, name: str) -> dict:
    return manifest["models"][name].get("contract") or file_record(manifest, name)


def _golden_images(bundle: Path, idx: dict) -> list[tuple[str, np.ndarray]]:
    """(source, uint8 [1, h, w, 3]) for each distinct model-stage golden input."""
    mid, seen, out = idx.get("model_id", ""), set(), []
    for v in idx["vectors"]:
        if v.get("stage") != "model":
            continue
        short = v["model_file"].removeprefix(mid + "_").removesuffix(".tflite")
        src = v["name"][len(short) + 1 :]
        if src not in seen:
            seen.add(src)
            out.append((src, load_tensor(bundle / "goldens", v["inputs"]["image"])))
    return out


# ---------------------------------------------------------------- references


@dataclass
class Reference:
    """What one file's outputs are compared with, per image source: {output key: (array, record, tolerance)}."""

    by_source: dict[str, dict[str, tuple[np.ndarray, dict, dict]]]
    what: str
    quant: dict[str, tuple[float, int]]


def _reference(
    bundle: Path, manifest: dict, idx: dict, name: str, images, gpu: bool, tol_all: dict, host_runs: dict
) -> Reference:
    vectors = [v for v in idx["vectors"] if v.get("stage") == "model" and v.get("model_file") == name]
    outs_meta = manifest["models"][name].get("outputs", {})
    quant = {k: (float(o.get("scale") or 0.0), int(o.get("zero_point") or 0)) for k, o in outs_meta.items()}
    by_source: dict[str, dict] = {}
    if vectors:
        mid = idx.get("model_id", "")
        short = name.removeprefix(mid + "_").removesuffix(".tflite")
        for v in vectors:
            src = v["name"][len(short) + 1 :]
            tol = v["tolerance"]
            if gpu:
                tol = tol_all[{"quantized": "model_gpu", "labels": "labels_gpu"}.get(tol["metric"], "float_gpu")]
            by_source[src] = {k: (load_tensor(bundle / "goldens", rec), rec, tol) for k, rec in v["expected"].items()}
        return Reference(by_source, "golden vectors (int8 reference kernels)", quant)
    floats = [v for v in idx["vectors"] if v.get("stage") == "model" and v.get("float_reference")]
    if manifest["models"][name].get("precision") == "float32" and floats:
        # the float32 file against the export's float32 outputs (stored as float16): a reference that does
        # not come from the file under test, so a damaged file cannot agree with itself
        tol = tol_all["float_gpu" if gpu else "float_reference"]
        mid = idx.get("model_id", "")
        for v in floats:
            short = v["model_file"].removeprefix(mid + "_").removesuffix(".tflite")
            src = v["name"][len(short) + 1 :]
            if src not in by_source:
                by_source[src] = {
                    k: (load_tensor(bundle / "goldens", rec).astype(np.float32), {**rec, "dtype": "float32"}, tol)
                    for k, rec in v["float_reference"].items()
                }
        return Reference(by_source, "the goldens' float32 reference outputs (export, stored as float16)", quant)
    record = _record(manifest, name)
    if name not in host_runs:  # one host run per file serves the CPU and the GPU reference
        runner = TfliteRunner(bundle / name, kernels="xnnpack", threads=2)
        host_runs[name] = {src: runner.run(contract_input(record, px), dequantize=False) for src, px in images}
    for src, _ in images:
        outs = host_runs[name][src]
        ref = {}
        for k, arr in outs.items():
            q = quant.get(k, (0.0, 0))
            if q[0] and arr.dtype != np.float32:
                tol = tol_all["model_gpu" if gpu else "model"]
            elif manifest["models"][name].get("precision") == "dynamic":
                tol = tol_all["float_dynamic"]
            else:
                tol = tol_all["float_gpu" if gpu else "float"]
            rec = {"file": f"{src}.{k}", "dtype": arr.dtype.name, "shape": list(arr.shape)}
            if q[0]:
                rec.update(scale=q[0], zero_point=q[1])
            ref[k] = (arr, rec, tol)
        by_source[src] = ref
    return Reference(by_source, "this host's LiteRT (XNNPACK) run of the same file", quant)


def _real(arr: np.ndarray, q: tuple[float, int]) -> np.ndarray:
    if q[0] and arr.dtype in (np.int8, np.uint8, np.int16):
        return (arr.astype(np.float32) - q[1]) * q[0]
    return arr.astype(np.float32)


# ---------------------------------------------------------------- judging


def _worst(acc: dict, metrics: dict) -> None:
    for k, v in metrics.items():
        if not isinstance(v, (int, float)):
            continue
        lower_is_worse = "agreement" in k
        if k not in acc:
            acc[k] = v
        else:
            acc[k] = min(acc[k], v) if lower_is_worse else max(acc[k], v)


def _as_array(raw: bytes, dtype: str, shape: list[int]) -> np.ndarray:
    dt = np.dtype(dtype).newbyteorder("<")
    want = int(np.prod(shape)) * dt.itemsize
    if len(raw) != want:
        raise ValueError(f"{len(raw)} bytes for {dtype} {shape} (expected {want})")
    return np.frombuffer(raw, dtype=dt).reshape(shape).astype(dt.newbyteorder("="))


def judge_litert(manifest: dict, name: str, ref: Reference, posted: dict) -> tuple[list[str], dict, int]:
    """Failures, worst figures and the count of outputs judged for one LiteRT.js job's posted outputs
    ({source: {tensor name: (dtype, shape, bytes)}})."""
    outs_meta = manifest["models"][name].get("outputs", {})
    by_tensor = {o.get("name"): k for k, o in outs_meta.items()}
    fails: list[str] = []
    figs: dict[str, float] = {}
    n = 0
    for src, expected in ref.by_source.items():
        got_all = posted.get(src)
        if not got_all:
            fails.append(f"{src}: no outputs posted")
            continue
        keyed = {}
        for tname, val in got_all.items():
            key = tname if tname in expected else by_tensor.get(tname)
            if key is None and len(got_all) == 1 and len(expected) == 1:
                key = next(iter(expected))
            keyed[key] = (tname, val)
        for key, (exp, rec, tol) in expected.items():
            if key not in keyed:
                fails.append(f"{src}.{key}: not among the outputs posted ({', '.join(got_all)})")
                continue
            tname, (dtype, shape, raw) = keyed[key]
            if np.dtype(dtype) != exp.dtype:
                fails.append(f"{src}.{key}: dtype {dtype}, the reference is {exp.dtype}")
                continue
            try:
                got = _as_array(raw, dtype, shape)
                if got.shape != exp.shape:
                    if got.size != exp.size:
                        raise ValueError(f"shape {list(got.shape)}, the reference is {list(exp.shape)}")
                    got = got.reshape(exp.shape)
            except ValueError as exc:
                fails.append(f"{src}.{key}: {exc}")
                continue
            m, f = compare(exp, got, rec, tol)
            _worst(figs, m)
            fails += [f"{src}.{key}: {x}" for x in f]
            n += 1
    return fails, figs, n


def judge_mediapipe(
    manifest: dict, name: str, ref: Reference, posted: dict, gpu: bool, tol_all: dict, labels: list[str] | None
) -> tuple[list[str], dict, int]:
    """MediaPipe's category mask vs the decode of the reference (argmax over classes; for one channel,
    probability > 0.5, which MediaPipe marks category 0 and the rest 255), its confidence masks vs softmax of
    the reference logits (the probability itself for one channel)."""
    record = _record(manifest, name)
    spec = record["outputs"][0]
    key0 = spec.get("key") or next(iter(manifest["models"][name]["outputs"]))
    tol_cat = tol_all["mediapipe_gpu" if gpu else "mediapipe"]
    tol_conf = tol_all["mediapipe_gpu_confidence" if gpu else "mediapipe_confidence"]
    fails: list[str] = []
    figs: dict[str, float] = {}
    n = 0
    for src, expected in ref.by_source.items():
        got = posted.get(src, {})
        if "category_mask" not in got:
            fails.append(f"{src}: no category mask posted")
            continue
        exp, _, _ = expected.get(key0) or next(iter(expected.values()))
        real = _real(exp, ref.quant.get(key0, (0.0, 0)))[0]
        if spec.get("kind") == "class_index":
            want_cat, probs = real.astype(np.int32), None
        elif real.ndim == 3 and real.shape[-1] > 1:
            want_cat = np.argmax(real, -1).astype(np.int32)
            e = np.exp(real - real.max(-1, keepdims=True))
            probs = e / e.sum(-1, keepdims=True)
        else:
            p = real.reshape(real.shape[:2])
            want_cat, probs = (p > 0.5).astype(np.int32), p[..., None]
        try:
            cat = _as_array(got["category_mask"][2], *got["category_mask"][:2]).astype(np.int32)
            if cat.shape != want_cat.shape:
                raise ValueError(f"category mask {list(cat.shape)}, the model output is {list(want_cat.shape)}")
        except ValueError as exc:
            fails.append(f"{src}: {exc}")
            continue
        if probs is not None and probs.shape[-1] == 1:
            # one channel: MediaPipe marks pixels with probability > 0.5 as category 0, the rest 255 (none)
            cat = (cat == 0).astype(np.int32)
        m, f = compare(want_cat, cat, {"dtype": "int32", "shape": list(cat.shape)}, tol_cat)
        _worst(figs, {f"category_{k}": v for k, v in m.items()})
        fails += [f"{src}.category_mask: {x}" for x in f]
        n += 1
        if probs is not None and "confidence_masks" in got:
            try:
                conf = _as_array(got["confidence_masks"][2], *got["confidence_masks"][:2])
                if conf.shape != probs.shape:
                    raise ValueError(f"confidence masks {list(conf.shape)}, expected {list(probs.shape)}")
            except ValueError as exc:
                fails.append(f"{src}: {exc}")
                continue
            m, f = compare(probs, conf, {"dtype": "float32", "shape": list(conf.shape)}, tol_conf)
            _worst(figs, {f"confidence_{k}": v for k, v in m.items() if "agreement" not in k})
            fails += [f"{src}.confidence_masks: {x}" for x in f]
            n += 1
    want_labels = list(manifest.get("labels") or []) if any(o.get("labels_file") for o in record["outputs"]) else []
    if labels is not None and want_labels and list(labels) != want_labels:
        fails.append(
            f"labels: MediaPipe reads {len(labels)} labels ({', '.join(labels[:3])}...), "
            f"the manifest has {len(want_labels)}"
        )
    return fails, figs, n


# ---------------------------------------------------------------- the server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False


def _handler(state: _Run):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):  # the run prints its own progress
            pass

        def _send(self, body: bytes, ctype: str, status=HTTPStatus.OK):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = urlparse(self.path).path
            if path in ("/", "/index.html"):
                state.events.put(("connected", {"client": self.client_address[0]}, None))
            try:
                body, ctype = state.get(path)
            except KeyError:
                self._send(b"not found", "text/plain", HTTPStatus.NOT_FOUND)
                return
            self._send(body, ctype)

        def do_POST(self):
            u = urlparse(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            q = {k: v[0] for k, v in parse_qs(u.query).items()}
            if u.path == "/output":
                state.events.put(("output", q, raw))
            else:
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {"raw": raw[:200].decode(errors="replace")}
                state.events.put((u.path.strip("/"), body, None))
            self._send(b"{}", "application/json")

    return Handler


class _Run:
    """The state the HTTP handler threads share with the judging loop (events go through a queue)."""

    def __init__(self, bundle: Path, plan: dict, inputs: dict[str, bytes]):
        self.bundle, self.plan, self.inputs = bundle, plan, inputs
        self.events: queue.Queue = queue.Queue()

    def get(self, path: str) -> tuple[bytes, str]:
        if path in SERVED:
            f = WEB_DIR / SERVED[path]
            return f.read_bytes(), MIME[f.suffix]
        if path == "/plan.json":
            return json.dumps(self.plan).encode(), MIME[".json"]
        if path.startswith("/input/"):
            return self.inputs[path], "application/octet-stream"
        if path.startswith("/model/"):
            name = path.removeprefix("/model/")
            if name in self.plan["files"]:
                return (self.bundle / name).read_bytes(), "application/octet-stream"
            raise KeyError(path)
        if path.startswith(("/node_modules/@litertjs/", "/node_modules/@mediapipe/")):
            root = (WEB_DIR / "node_modules").resolve()
            f = (WEB_DIR / path.lstrip("/")).resolve()
            if f.is_file() and str(f).startswith(str(root)):
                return f.read_bytes(), MIME.get(f.suffix, "application/octet-stream")
        raise KeyError(path)


def _package_version(runtime: str) -> str:
    pj = WEB_DIR / "node_modules" / PACKAGES[runtime] / "package.json"
    return json.loads(pj.read_text())["version"] if pj.is_file() else ""


def check_web_runtimes() -> None:
    missing = [p for r, p in PACKAGES.items() if not _package_version(r)]
    if missing:
        raise InputError(
            f"the browser runtimes are not installed: {', '.join(missing)} missing in web/node_modules",
            where=str(WEB_DIR / "node_modules"),
            fix="run `make web` (npm ci --prefix web; needs node and npm: apt-get install nodejs npm)",
        )


def lan_address() -> str:
    """This machine's address on the local network (the interface a default route would use)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the interface
        return s.getsockname()[0]
    except OSError:
        return socket.gethostbyname(socket.gethostname())
    finally:
        s.close()


def _bind(host: str, port: int) -> _Server:
    try:
        return _Server((host, port), BaseHTTPRequestHandler)
    except OSError as exc:
        if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise InputError(
                f"port {port} on {host} is in use",
                where=f"{host}:{port}",
                fix="pick another port (--serve 0.0.0.0:8001) or stop what listens there",
            ) from exc
        raise InputError(f"cannot listen on {host}:{port}: {exc}", fix="check the address (HOST:PORT)") from exc


def _qr_lines(url: str) -> str:
    buf = io.StringIO()
    segno.make(url, error="m").terminal(out=buf, compact=True)
    return buf.getvalue()


# ---------------------------------------------------------------- the run


def _plan(
    bundle: Path,
    manifest: dict,
    names: list[str],
    images,
    runs: int,
    fault: dict | None,
    backends: list[str] | None = None,
):
    """The page's plan and the input bytes it will fetch ({URL path: bytes})."""
    segmenter = manifest.get("task") in ("segmentation", "mask")
    inputs: dict[str, bytes] = {}
    for src, px in images:
        inputs[f"/input/image/{src}.rgb"] = np.ascontiguousarray(px[0], np.uint8).tobytes()
    for name in names:
        rec = _record(manifest, name)
        for src, px in images:
            x = np.ascontiguousarray(contract_input(rec, px))
            inputs[f"/input/{name}/{src}.bin"] = x.astype(x.dtype.newbyteorder("<")).tobytes()
    jobs: list[dict[str, Any]] = []
    for runtime, backend in BACKENDS:
        if runtime == MEDIAPIPE and not segmenter or backends and backend not in backends:
            continue
        for name in names:
            rec = _record(manifest, name)
            job: dict[str, Any] = {
                "id": f"{len(jobs)}",
                "file": name,
                "url": f"/model/{name}",
                "runtime": runtime,
                "backend": backend,
            }
            if runtime == LITERT:
                job["inputs"] = [
                    {
                        "source": src,
                        "url": f"/input/{name}/{src}.bin",
                        "dtype": rec["input"]["dtype"],
                        "shape": list(rec["input"]["shape"]),
                    }
                    for src, _ in images
                ]
            else:
                # a class-index output (the ArgMax variant) has no per-class scores: MediaPipe would read its
                # width as classes and fill hundreds of masks, so only the category mask is asked for
                job["confidence"] = rec["outputs"][0].get("kind") != "class_index"
                job["images"] = [
                    {
                        "source": src,
                        "url": f"/input/image/{src}.rgb",
                        "width": int(px.shape[2]),
                        "height": int(px.shape[1]),
                    }
                    for src, px in images
                ]
            jobs.append(job)
    plan = {
        "bundle": manifest.get("model_id", bundle.name),
        "runs": int(runs),
        "files": names,
        "jobs": jobs,
        "fault": fault,
    }
    return plan, inputs


def default_report_dir(model_id: str) -> Path:
    """export/device/<id>/ beside export/out/ (PORTRAIT_OUT_DIR's parent)."""
    return paths.out_dir().parent / "device" / model_id


def run_device_check(
    bundle: Path,
    *,
    headless: bool = True,
    serve: str | None = None,
    runs: int = 5,
    timeout_s: float = 90,
    report_dir: Path | None = None,
    files: list[str] | None = None,
    progress=print,
    backends: list[str] | None = None,
    fault: dict | None = None,
    staged: bool = False,
) -> DeviceReport:
    """Run every model file of a bundle (folder, zip or id) on every backend of a browser and judge the
    outputs (module docstring). headless: this machine's Chromium; serve="HOST:PORT": wait for any browser
    (a phone) to open the printed URL. timeout_s: how long to wait for the browser to connect, and then
    for each next message from the page (a hung job ends the run after it). files: only these file names;
    backends: only these of wasm, webgpu, cpu, gpu. fault: a test hook, {"file", "backend"}: the page throws an uncaught error in that job.
    staged: the export's own staged folder (its step after the goldens, export._device_check)."""
    if runs < 1:
        raise InputError(f"--runs {runs}: need at least 1", fix="pass --runs 5")
    check_web_runtimes()
    chromium = find_chromium() if serve is None and headless else None  # fail before any work
    t_start = time.monotonic()
    say = progress or (lambda m: None)
    with tempfile.TemporaryDirectory(prefix="portrait-device-") as tmp:
        opened = bundle_loader.open_bundle(bundle, workdir=Path(tmp), staged=staged)
        root = opened.root
        manifest = read_manifest(root)
        mid = manifest.get("model_id", root.name)
        idx = golden_index(opened)
        images = _golden_images(root, idx)
        if not images:
            raise InputError(
                "goldens.json has no model-stage vectors to take inputs from",
                where=str(root / "goldens"),
                fix=f"python -m toolchain.device.goldens --bundle {root}",
            )
        names = sorted(n for n in manifest.get("models", {}) if n.endswith(".tflite") and (root / n).is_file())
        if files:
            unknown = [f for f in files if f not in names]
            if unknown:
                raise InputError(
                    f"not a .tflite file of the bundle: {', '.join(unknown)}",
                    where=str(root),
                    fix="pick from: " + ", ".join(names),
                )
            names = [n for n in names if n in files]
        unknown = sorted(set(backends or []) - {b for _, b in BACKENDS})
        if unknown:
            raise InputError(
                f"unknown backend {', '.join(unknown)}", fix="use wasm, webgpu, cpu (MediaPipe) or gpu (MediaPipe)"
            )
        tol_all = tolerances()
        say(f"device-check {mid}: {len(names)} files, {len(images)} golden images; host references ...")
        refs = {}
        problems: dict[str, str] = {}  # file -> why it cannot be judged: its jobs fail with this
        host_runs: dict[str, dict] = {}
        for n in names:  # every file's SHA-256 was checked by open_bundle
            for gpu in {b in GPU_BACKENDS for _, b in BACKENDS if not backends or b in backends}:
                try:
                    refs[n, gpu] = _reference(root, manifest, idx, n, images, gpu, tol_all, host_runs)
                except (PortraitError, RuntimeError, ValueError) as exc:
                    problems.setdefault(n, f"{n}: this host's LiteRT cannot run it to make the reference: {exc}")
        t_refs = time.monotonic()
        plan, inputs = _plan(root, manifest, names, images, runs, fault, backends)
        versions = {r: _package_version(r) for r in PACKAGES}
        results = {
            j["id"]: BackendResult(
                j["file"],
                j["runtime"],
                versions[j["runtime"]],
                j["backend"],
                "not-run",
                "",
                {},
                None,
                claims(manifest, j["file"], j["runtime"], j["backend"]),
            )
            for j in plan["jobs"]
        }
        state = _Run(root, plan, inputs)
        host, port = ("127.0.0.1", 0) if serve is None else _split_hostport(serve)
        server = _bind(host, port)
        server.RequestHandlerClass = _handler(state)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        shown = lan_address() if host in ("0.0.0.0", "") else ("127.0.0.1" if host == "localhost" else host)
        url = f"http://{shown}:{port}/"
        report = DeviceReport(
            str(bundle), [], "", 0, None, None, model_id=mid, runs=runs, url=url, host_isa=platform.machine()
        )
        browser = None
        try:
            if serve is None and headless:
                browser = HeadlessChromium(url, binary=chromium)
                say(f"headless Chromium ({browser.binary}) on {url}")
            else:
                say(f"open this on the phone (same network): {url}")
                say(_qr_lines(url))
                say(
                    f"WebGPU needs a secure page: over USB, `adb reverse tcp:{port} tcp:{port}` and open "
                    f"http://localhost:{port}/ on the phone (plain http on a LAN address runs wasm, CPU and GPU/WebGL only)"
                )
                say(f"waiting up to {timeout_s:.0f} s for a browser to open it ...")
            _collect(state, plan, results, refs, manifest, tol_all, report, timeout_s, browser, say, problems)
        finally:
            server.shutdown()
            server.server_close()
            if browser is not None:
                browser.close()
        report.results = [results[j["id"]] for j in plan["jobs"]]
        report.wall_s = round(time.monotonic() - t_start, 1)
        report.timings_s = {
            "references": round(t_refs - t_start, 1),
            "browser_start": round(report.timings_s.get("page_env", t_refs) - t_refs, 1),
            "page": round(time.monotonic() - report.timings_s.get("page_env", t_refs), 1),
        }
        out = Path(report_dir) if report_dir else default_report_dir(mid)
        write_report(report, out)
        say(format_table(report))
        return report


def _split_hostport(serve: str) -> tuple[str, int]:
    host, _, port = serve.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--serve {serve!r}: expected HOST:PORT", fix="for example --serve 0.0.0.0:8000")
    return host, int(port)


def _collect(
    state: _Run,
    plan: dict,
    results: dict,
    refs: dict,
    manifest: dict,
    tol_all: dict,
    report: DeviceReport,
    timeout_s: float,
    browser,
    say,
    problems: dict | None = None,
) -> None:
    """The judging loop: events from the page until /done, a page that stops after an error, or the timeout."""
    jobs = {j["id"]: j for j in plan["jobs"]}
    posted: dict[str, dict] = {}
    started: str | None = None
    got_env = False
    deadline = time.monotonic() + timeout_s
    t_wait, shown_wait = time.monotonic(), 0
    t_job = t_wait
    done = 0
    while True:
        if browser is not None and not browser.alive():
            report.not_run_reason = f"Chromium exited (status {browser.proc.returncode}): {browser.log_tail(5)}"
            if started is not None and results[started].status == "not-run":
                r = results[started]
                r.status, r.message = "fail", f"the browser exited during {r.label}: {browser.log_tail(5)}"
            break
        try:
            kind, body, raw = state.events.get(timeout=min(1.0, max(0.01, deadline - time.monotonic())))
        except queue.Empty:
            if time.monotonic() < deadline:
                waited = time.monotonic() - t_wait
                if not got_env and browser is None and int(waited) // 15 > shown_wait:
                    shown_wait = int(waited) // 15
                    say(f"  still waiting for a browser at {report.url} ({waited:.0f} s of {timeout_s:.0f} s)")
                continue
            if not got_env:
                where = f"headless Chromium: {browser.log_tail()}" if browser is not None else f"{report.url} (--serve)"
                if browser is not None:
                    raise PortraitError(
                        f"the browser did not start the check page within {timeout_s:.0f} s",
                        where=where,
                        fix="check Chromium starts (chromium --headless=new about:blank), "
                        "or raise --timeout on a slow machine",
                    ) from None
                raise PortraitError(
                    f"no browser opened the check page within {timeout_s:.0f} s",
                    where=where,
                    fix="open the URL on a phone on the same network (scan the QR code); check a "
                    "firewall lets the port in; or raise --timeout",
                ) from None
            if started is not None and results[started].status == "not-run":
                r = results[started]
                r.status, r.message = "fail", f"no result within {timeout_s:.0f} s: the run hung in {r.label}"
            report.not_run_reason = f"the page sent nothing for {timeout_s:.0f} s (timeout)"
            break
        deadline = time.monotonic() + timeout_s
        if kind == "connected":
            say(f"the check page was opened from {body['client']}")
        elif kind == "env":
            got_env = True
            report.timings_s["page_env"] = time.monotonic()
            report.user_agent, report.cores = body.get("user_agent", ""), int(body.get("cores") or 0)
            report.webgpu_adapter, report.webgl_renderer = body.get("webgpu_adapter"), body.get("webgl_renderer")
            say(
                f"browser: {report.user_agent}; {report.cores} cores; WebGPU adapter: {report.webgpu_adapter}; "
                f"WebGL: {report.webgl_renderer}"
            )
        elif kind == "output":
            posted.setdefault(body["job"], {}).setdefault(body["source"], {})[body["name"]] = (
                body["dtype"],
                [int(s) for s in body["shape"].split(",") if s],
                raw,
            )
        elif kind == "job" and body.get("status") == "started":
            started, t_job = body["job"], time.monotonic()
        elif kind == "job" and body.get("status") == "progress":
            pass  # the page is alive (outputs posted, timing next): the idle timeout starts again
        elif kind == "job":
            jid = body["job"]
            r = results[jid]
            if r.status == "fail" and r.message.startswith("the page threw"):
                continue  # already failed by an uncaught error in this job
            _finish(r, jobs[jid], body, posted.pop(jid, {}), refs, manifest, tol_all, (problems or {}).get(r.file))
            r.job_s = round(time.monotonic() - t_job, 2)
            done += 1
            say(f"[{done}/{len(jobs)}] {r.label}: {_cell(r)}" + (f"  {r.message[:200]}" if r.status != "pass" else ""))
            started = None
        elif kind == "page-error":
            jid = body.get("job")
            msg = str(body.get("message", ""))[:2000]
            if jid in results and results[jid].status == "not-run":
                r = results[jid]
                r.status, r.message = "fail", f"the page threw in {r.label}: {msg}"
                done += 1
                say(f"[{done}/{len(jobs)}] {r.label}: FAIL  {r.message[:200]}")
            else:
                report.not_run_reason = f"the page threw outside a job: {msg}"
                say(f"page error: {msg[:300]}")
                if not got_env:
                    break
            deadline = time.monotonic() + min(timeout_s, AFTER_PAGE_ERROR_S)
        elif kind == "done":
            break
    for r in results.values():
        if r.status == "not-run" and not r.message:
            r.message = report.not_run_reason or "not run"


def _finish(
    r: BackendResult,
    job: dict,
    body: dict,
    posted: dict,
    refs: dict,
    manifest: dict,
    tol_all: dict,
    problem: str | None = None,
) -> None:
    _judge(r, job, body, posted, refs, manifest, tol_all)
    if problem and r.status != "not-run":
        r.status, r.message = "fail", f"{problem}; in {r.label}: {r.status}: {r.message}"


def _judge(r: BackendResult, job: dict, body: dict, posted: dict, refs: dict, manifest: dict, tol_all: dict) -> None:
    status = body.get("status")
    r.latency_ms = body.get("latency_ms")
    r.latency_runs_ms = [round(float(x), 3) for x in body.get("latency_runs_ms") or []]
    r.phases_ms = {k: round(float(v), 1) for k, v in (body.get("phases_ms") or {}).items()}
    if status == "no-load":
        r.message = str(body.get("message", ""))[:2000]
        r.status = "fail" if r.supported else "no-load"
        if r.supported:
            r.message = f"does not load, and the manifest lists this client for it: {r.message}"
        return
    if status == "not-run":
        r.status, r.message = "not-run", str(body.get("message", ""))
        return
    if status != "ran":
        r.status, r.message = "fail", f"the page reports an error in {r.label}: {body.get('message', '')}"[:2000]
        return
    ref = refs.get((r.file, r.backend in GPU_BACKENDS))
    if ref is None:
        r.status, r.message = "fail", "no reference to judge it with"
        return
    r.reference = ref.what
    r.software = bool(body.get("software"))
    if body.get("sources") is not None:  # the golden images the page ran (one on a software GPU)
        ref = Reference({s: v for s, v in ref.by_source.items() if s in body["sources"]}, ref.what, ref.quant)
    try:
        if r.runtime == LITERT:
            fails, figs, n = judge_litert(manifest, r.file, ref, posted)
        else:
            fails, figs, n = judge_mediapipe(
                manifest, r.file, ref, posted, r.backend in GPU_BACKENDS, tol_all, body.get("labels")
            )
    except ValueError as exc:
        fails, figs, n = [str(exc)], {}, 0
    r.figures, r.vectors = figs, n
    r.status = "fail" if fails or n == 0 else "pass"
    r.message = (
        "; ".join(fails[:6]) + (f" (+{len(fails) - 6} more)" if len(fails) > 6 else "")
        if fails
        else ("nothing to judge" if n == 0 else f"{n} outputs within tolerance")
    )
    if r.software:
        r.message += (
            "; software GPU (SwiftShader): one golden image, not timed (a CPU emulation says nothing of a phone GPU)"
        )


# ---------------------------------------------------------------- reports

KEY_FIGURES = ("max_abs_q", "argmax_agreement", "agreement", "max_rel", "category_agreement", "confidence_mean_abs")


def _cell(r: BackendResult) -> str:
    if r.status == "pass":
        figs = " ".join(f"{k}={r.figures[k]:.4g}" for k in KEY_FIGURES if k in r.figures)
        return f"PASS {figs} {r.latency_ms:.1f} ms" if r.latency_ms is not None else f"PASS {figs}"
    return {"fail": "FAIL", "no-load": "no-load", "not-run": "NOT RUN"}[r.status] + (
        f" {r.latency_ms:.1f} ms" if r.latency_ms is not None else ""
    )


def format_table(report: DeviceReport) -> str:
    cols = [(rt, b) for rt, b in BACKENDS if any(r.runtime == rt and r.backend == b for r in report.results)]
    files = list(dict.fromkeys(r.file for r in report.results))
    by = {(r.file, r.runtime, r.backend): r for r in report.results}
    head = ["file"] + [f"{'LiteRT.js' if rt == LITERT else 'MediaPipe'} {b}" for rt, b in cols]
    # a staged bundle (inside the export) has no claims yet: they are assigned from these results
    any_claim = any(r.supported for r in report.results)
    rows = []
    for f in files:
        row = [f]
        for rt, b in cols:
            r = by.get((f, rt, b))
            row.append("" if r is None else ("" if r.supported or not any_claim else "(not claimed) ") + _short(r))
        rows.append(row)
    widths = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]
    lines = [
        f"device check of {report.model_id}: {report.user_agent or 'no browser'}",
        (
            f"cores {report.cores}; WebGPU adapter: {report.webgpu_adapter or 'none'}; "
            f"WebGL: {report.webgl_renderer or 'none'}; host {report.host_isa}; latency = median of {report.runs} "
            f"runs after the golden runs (the warm-up); wall {report.wall_s} s "
            f"({', '.join(f'{k} {v} s' for k, v in report.timings_s.items())})"
        ),
    ]
    if not any_claim:
        lines.append("the manifest claims no client for these files yet (the export records claims from this run)")
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    for r in report.results:
        if r.status in ("fail", "no-load") or (r.status == "not-run" and r.message):
            lines.append(f"  {r.status.upper():7} {r.label}: {r.message[:400]}")
    if report.not_run_reason:
        lines.append(f"  note: {report.not_run_reason}")
    code = report.exit_code()
    lines.append(
        {
            0: "-> PASS (every file passes where its manifest claims the client)",
            1: "-> FAIL (a file fails on a backend its manifest claims)",
            3: "-> NOTHING RAN (not a pass)",
        }[code]
    )
    return "\n".join(lines)


def _short(r: BackendResult) -> str:
    ms = f" {r.latency_ms:.1f}ms" if r.latency_ms is not None else ""
    if r.status == "pass":
        k = next((k for k in ("max_abs_q", "category_agreement", "max_rel", "agreement") if k in r.figures), None)
        return f"pass{ms}" + (f" {k}={r.figures[k]:.3g}" if k else "")
    return {"fail": "FAIL", "no-load": "no-load", "not-run": "not run"}[r.status] + ms


def write_report(report: DeviceReport, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report.report_dir = str(out)
    (out / "device-report.json").write_text(json.dumps(report.as_dict(), indent=1, default=str))
    (out / "device-report.html").write_text(_html(report))


def _html(report: DeviceReport) -> str:
    e = html.escape
    colour = {"pass": "#dfd", "fail": "#fdd", "no-load": "#eee", "not-run": "#ffd"}
    rows = []
    for r in report.results:
        figs = "<br>".join(e(f"{k} {v:.4g}") for k, v in sorted(r.figures.items()))
        lat = f"{r.latency_ms:.1f}" if r.latency_ms is not None else ""
        rows.append(
            f"<tr style='background:{colour[r.status]}'><td>{e(r.file)}</td><td>{e(r.runtime)} {e(r.version)}"
            f"</td><td>{e(r.backend)}</td><td>{'yes' if r.supported else 'no'}</td><td><b>{e(r.status)}</b>"
            f"</td><td>{lat}</td><td style='white-space:nowrap;font-size:12px'>{figs}</td><td>{e(r.message)}</td></tr>"
        )
    lats = [r.latency_ms for r in report.results if r.latency_ms is not None]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>device check {e(report.model_id)}</title>
<style>body{{font:14px system-ui,sans-serif;margin:1em}} td,th{{border:1px solid #ccc;padding:3px 6px;vertical-align:top}}
table{{border-collapse:collapse}} td:last-child{{font-size:12px;max-width:40em}}</style></head><body>
<h1>Device check: {e(report.model_id)}</h1>
<p>Browser: {e(report.user_agent or "none")}<br>Cores: {report.cores}; WebGPU adapter: {e(str(report.webgpu_adapter))};
WebGL renderer: {e(str(report.webgl_renderer))}<br>
Latency: median of {report.runs} runs after the golden runs (the warm-up), input to outputs readable on the CPU{f"; {min(lats):.1f}-{max(lats):.1f} ms" if lats else ""}.
<br>Exit status {report.exit_code()}{(" &mdash; " + e(report.not_run_reason)) if report.not_run_reason else ""}</p>
<p>How to read it: <b>pass</b> = the outputs match the reference within the tolerance named in
toolchain/device/tolerances.toml; <b>fail</b> counts (exit 1) only where the manifest claims the client
(<i>claimed</i> = yes); <b>no-load</b> = the runtime refused the file (its message is shown), not a failure
where the manifest does not claim it; <b>not-run</b> = the backend was absent or the run stopped.</p>
<table><tr><th>file</th><th>runtime</th><th>backend</th><th>claimed</th><th>status</th><th>ms</th><th>figures</th>
<th>message</th></tr>{"".join(rows)}</table></body></html>
"""


def latency_table(report: DeviceReport) -> dict[tuple[str, str, str], float]:
    """(file, runtime, backend) -> median ms, for `portrait bench`."""
    return {(r.file, r.runtime, r.backend): r.latency_ms for r in report.results if r.latency_ms is not None}


__all__ = [
    "BackendResult",
    "DeviceReport",
    "claims",
    "format_table",
    "latency_table",
    "open_bundle",
    "run_device_check",
    "write_report",
]
