"""The model card: README.md of a bundle, rendered from the manifest (the handoff records in
models[<file>]["contract"]) and, at export, the `portrait verify` report. Text only: the loading
snippets are written for a reader to copy, and are not compiled here.

Not for: deciding anything (the manifest is the record; this is one view of it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from . import client, clients
from .metadata import MEDIAPIPE_SEGMENTER, contract_input, file_record


def write_card(bundle: Path, report=None) -> Path:
    bundle = Path(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    path = bundle / "README.md"
    path.write_text(render_card(manifest, bundle, report))
    return path


def _why(manifest: dict, name: str) -> str:
    rec = manifest["models"][name]
    parts = []
    if name == manifest.get("handoff"):
        parts.append("**the handoff**: the integer-only file that met the parity budget")
    if name == manifest.get("handoff_cpu"):
        parts.append("**CPU handoff**: the fastest XNNPACK file that met the parity budget")
    if name == manifest.get("handoff_gpu"):
        parts.append("**GPU handoff**: the fastest file that met the parity budget on WebGPU (LiteRT.js)")
    rung = rec.get("rung")
    step = next((r for r in manifest.get("ladder") or [] if isinstance(r, dict) and r.get("file") == name), None)
    if step is not None:
        figs = step.get("worse_of_both") or {}
        shown = ", ".join(
            f"{k} {figs[k]:.4f}"
            for k in ("pixel_agreement", "worst_class_iou", "iou", "mean_abs_diff")
            if isinstance(figs.get(k), float)
        )
        parts.append(
            f"ladder rung {step.get('label') or rung}: "
            + (
                "met the budget"
                if step.get("met")
                else "missed the budget (" + "; ".join(step.get("failures") or []) + ")"
            )
            + (f"; {shown}" if shown else "")
        )
    elif rung:
        parts.append(
            f"ladder rung {rung}"
            + (": same quantization as that rung, ArgMax inside" if rec.get("precision") == "int8_labels" else "")
        )
    if not parts:
        p = rec.get("precision")
        parts.append(
            "the float32 model as ONNX, checked against TF in onnxruntime"
            if name.endswith(".onnx")
            else {
                "float32": "the float reference every other file is compared with",
                "float16": "float16 weights, float32 compute: half the size, for GPU delegates",
                "dynamic": "int8 weights, float activations (dynamic range): small, CPU only",
                "int8": "full-integer int8 (not the handoff: see the parity figures)",
                "int8_labels": "int8 with ArgMax inside: one class index per pixel, no logits",
                "int8_mixed": "int8 with some layers kept float (mixed precision)",
            }.get(p, p or "")
        )
    return "; ".join(parts)


def _example(manifest: dict, bundle: Path, name: str, record: dict) -> str:
    """One pixel in -> one value out, read from the golden vectors of the file (or the float reference)."""
    gpath = bundle / "goldens" / "goldens.json"
    if not gpath.is_file():
        return "(no golden vectors in this bundle to take a worked example from)"
    idx = json.loads(gpath.read_text())
    vec = next((v for v in idx["vectors"] if v.get("stage") == "model" and v.get("model_file") == name), None)
    float_ref = False
    if vec is None and manifest["models"][name].get("precision") == "float32":
        vec = next((v for v in idx["vectors"] if v.get("stage") == "model" and "float_reference" in v), None)
        float_ref = vec is not None
    ran = None
    if vec is None:  # no golden vector for this file: run it (LiteRT, XNNPACK) on the first golden input
        vec = next((v for v in idx["vectors"] if v.get("stage") == "model"), None)
        if vec is None:
            return "(no golden inputs in this bundle to take a worked example from)"
        ran = _run_once(
            bundle / name, record, np.load(bundle / "goldens" / vec["inputs"]["image"]["file"], allow_pickle=False)
        )
    x = np.load(bundle / "goldens" / vec["inputs"]["image"]["file"], allow_pickle=False)[0]
    h, w = x.shape[:2]
    r, c = h // 2, w // 2
    rgb = [int(v) for v in x[r, c]]
    if ran is not None:
        key, (arr, rec) = next(iter(ran.items()))
        y = arr[0][r, c]
    else:
        outs = vec["float_reference"] if float_ref else vec["expected"]
        key, rec = next(iter(outs.items()))
        y = np.load(bundle / "goldens" / rec["file"], allow_pickle=False)[0][r, c]
    spec = record["outputs"][0]
    labels = manifest.get("labels") or []
    feed = ("uint8 bytes" if record["input"]["dtype"] == "uint8" else "float32 values") + f" {rgb}"
    lines = [
        f"Golden input image of `{vec['name']}` ({w}x{h})"
        + (", this file run on it with LiteRT" if ran is not None else "")
        + f", pixel (row {r}, column {c}):",
        f"- in: RGB {rgb} -> feed the {feed} (no normalization: it is inside the model)",
    ]
    y = np.asarray(y, dtype=np.float32 if float_ref else None)
    scale, zp = rec.get("scale"), rec.get("zero_point")
    if spec["kind"] == "class_index":
        k = int(y)
        lines.append(f"- out `{key}`: {k} -> class {labels[k] if k < len(labels) else k!r}")
    elif y.ndim == 1 and y.size > 1:
        real = (y.astype(np.float32) - zp) * scale if scale else y.astype(np.float32)
        k = int(np.argmax(real))
        e = np.exp(real - real.max())
        raw = (
            f"raw {y.dtype.name} {int(y[k])}, real = ({int(y[k])} - ({zp})) * {scale:.6g} = {real[k]:.3f}"
            if scale
            else f"{real[k]:.3f}"
        )
        lines.append(
            f"- out `{key}`: {y.size} logits; the largest is channel {k} ({raw}) -> class "
            f"{labels[k] if k < len(labels) else k!r}, softmax probability {e[k] / e.sum():.3f}"
        )
    else:
        v = y.reshape(-1)[0]
        real = (float(v) - zp) * scale if scale else float(v)
        raw = (
            f"raw {y.dtype.name} {int(v)}, real = ({int(v)} - ({zp})) * {scale:.6g} = {real:.3f}"
            if scale
            else f"{real:.3f}"
        )
        what = labels[-1] if labels else "foreground"
        lines.append(
            f"- out `{key}`: {raw} -> probability of {what!r}"
            + (f" ({what} at > 0.5)" if spec.get("range") == [0.0, 1.0] else "")
        )
    return "\n".join(lines)


def _run_once(path: Path, record: dict, x: np.ndarray) -> dict:
    """{output key: (raw array, {"scale", "zero_point"})} of one LiteRT (XNNPACK) run, fed as the contract says."""
    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], contract_input(record, x))
    interp.invoke()
    by_tensor = {o["tensor_name"]: o["key"] for o in record["outputs"]}
    out = {}
    for od in interp.get_output_details():
        scale, zp = od.get("quantization", (0.0, 0))
        out[by_tensor.get(od["name"], od["name"])] = (
            interp.get_tensor(od["index"]),
            {"scale": scale, "zero_point": zp},
        )
    return out


def _snippets(manifest: dict, name: str, record: dict) -> str:
    h, w = record["input"]["shape"][1:3]
    is_u8 = record["input"]["dtype"] == "uint8"
    stem = name.removesuffix(".tflite")
    spec = record["outputs"][0]
    out_shape = spec.get("shape") or []
    n_out = int(np.prod(out_shape)) if out_shape else 0
    out_dtype = manifest["models"][name]["outputs"][spec["key"]]["dtype"]
    bytes_per = {"float32": 4, "int8": 1, "uint8": 1, "int32": 4, "int64": 8}.get(out_dtype, 4)
    parts = []
    if MEDIAPIPE_SEGMENTER in record["clients"]:
        one = spec.get("range") == [0.0, 1.0]
        parts.append(f"""Kotlin, MediaPipe Tasks (com.google.mediapipe:tasks-vision):

```kotlin
val options = ImageSegmenter.ImageSegmenterOptions.builder()
    .setBaseOptions(BaseOptions.builder().setModelAssetPath("{name}").build())
    .setRunningMode(RunningMode.IMAGE)
    .setOutputCategoryMask(true)
    .setOutputConfidenceMasks(true)
    .build()
val segmenter = ImageSegmenter.createFromOptions(context, options)
val result = segmenter.segment(BitmapImageBuilder(bitmap).build())  // any size: MediaPipe resizes to {w}x{h}
val categories = result.categoryMask().get()   // one byte per pixel{": 0 where the person probability > 0.5, 255 elsewhere" if one else ": class index = line of labels.txt"}
val confidence = result.confidenceMasks().get()  // {"one float mask: the probability" if one else "one float mask per class (softmax)"}
```""")
    in_bytes = h * w * 3 * (1 if is_u8 else 4)
    put = (
        "input.put(r.toByte()); input.put(g.toByte()); input.put(b.toByte())"
        if is_u8
        else "input.putFloat(r.toFloat()); input.putFloat(g.toFloat()); input.putFloat(b.toFloat())"
    )
    deq = ""
    if out_dtype in ("int8", "uint8") and manifest["models"][name]["outputs"][spec["key"]].get("scale"):
        q = manifest["models"][name]["outputs"][spec["key"]]
        deq = f"\n// {out_dtype} output: real = (q - ({q['zero_point']})) * {q['scale']:.8g}"
    parts.append(f"""Kotlin, LiteRT Interpreter (com.google.ai.edge.litert:litert, org.tensorflow.lite API):

```kotlin
val interpreter = Interpreter(FileUtil.loadMappedFile(context, "{name}"))
val scaled = Bitmap.createScaledBitmap(bitmap, {w}, {h}, true)   // stretch to {w}x{h}
val input = ByteBuffer.allocateDirect({in_bytes}).order(ByteOrder.nativeOrder())
val px = IntArray({w * h}); scaled.getPixels(px, 0, {w}, 0, 0, {w}, {h})
for (p in px) {{ val r = (p shr 16) and 0xFF; val g = (p shr 8) and 0xFF; val b = p and 0xFF
    {put} }}   // RGB {"bytes 0..255" if is_u8 else "floats 0..255"}, no normalization
val output = ByteBuffer.allocateDirect({n_out * bytes_per}).order(ByteOrder.nativeOrder())  // {out_dtype} {out_shape}
interpreter.run(input, output){deq}
```""")
    parts.append(f"""Swift, LiteRT (TensorFlowLiteSwift pod / LiteRT Swift package):

```swift
let interpreter = try Interpreter(modelPath: Bundle.main.path(forResource: "{stem}", ofType: "tflite")!)
try interpreter.allocateTensors()
// rgb: {h}x{w} pixels, row-major, R G B {"bytes (UInt8) 0..255" if is_u8 else "Float32 values 0..255"}, no normalization
try interpreter.copy({"Data(rgb)" if is_u8 else "rgb.withUnsafeBufferPointer { Data(buffer: $0) }"}, toInputAt: 0)
try interpreter.invoke()
let out = try interpreter.output(at: 0)          // {out_dtype} {out_shape}
{"let q = out.quantizationParameters!            // real = (Float(v) - Float(q.zeroPoint)) * q.scale" if deq else "// out.data holds the values in the tensor's type"}
```""")
    return "\n\n".join(parts)


def _loads_in(entries) -> str:
    """The clients measured to run the file (pass, or loaded where not judged)."""
    if not isinstance(entries, list):
        return ""
    mine = [e for e in entries if isinstance(e, dict) and e.get("meant_for") is not False]
    ok = [clients.label(e) for e in mine if e.get("status") in ("pass", "loaded")]
    bad = [clients.label(e) for e in mine if e.get("status") in clients.FAILED]
    return ", ".join(ok) + (f"; **not**: {', '.join(bad)}" if bad else "")


def _cell(e: dict | None) -> str:
    if e is None:
        return ""
    st = e["status"]
    if e.get("meant_for") is False:
        return f"not for this client ({st})"
    text = {
        "pass": "pass",
        "loaded": "loads (not judged)",
        "fail": "**FAIL**",
        "no-load": "**does not load**",
        "not-run": "not run",
    }.get(st, st)
    if st == "pass" and e.get("latency_ms") is not None:
        text += f", {e['latency_ms']:.0f} ms"
    elif st == "pass" and e.get("software"):
        text += " (software GPU, not timed)"
    return text + (" *" if e.get("claimed") else "")


def _clients_section(manifest: dict) -> list[str]:
    """Which file loads in which client, as measured at export (models[<file>]["clients"])."""
    files = {
        n: r.get("clients")
        for n, r in manifest.get("models", {}).items()
        if n.endswith(".tflite") and isinstance(r.get("clients"), list)
    }
    cols: list[str] = []
    for entries in files.values():
        for e in entries:
            if isinstance(e, dict) and clients.label(e) not in cols:
                cols.append(clients.label(e))
    if not cols:
        return []
    order = [clients.LITERT_NATIVE, clients.MEDIAPIPE_NATIVE, clients.LITERT_JS, clients.MEDIAPIPE_WEB]
    first: dict[str, tuple] = {}
    for entries in files.values():
        for e in entries:
            if isinstance(e, dict):
                rank = order.index(e["runtime"]) if e["runtime"] in order else 9
                gpu = e["backend"] in ("webgpu", "gpu")
                first.setdefault(clients.label(e), (rank >= 2, gpu, rank))  # native, web CPU, web GPU
    cols.sort(key=lambda c: first[c])
    lines = [
        "## Clients, measured",
        "",
        "Each file was loaded and run in each client at export, fed as the contract below says, and its "
        "outputs judged with `portrait check`'s checker: the native runtimes by `portrait verify`, the "
        "browser runtimes by `portrait device-check --headless`. `*` marks a client the file is handed off "
        "for: a handoff that fails there stops the export.",
        "",
        "| file | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for n, entries in files.items():
        by = {clients.label(e): e for e in entries if isinstance(e, dict)}
        lines.append(f"| `{n}` | " + " | ".join(_cell(by.get(c)) for c in cols) + " |")
    versions: dict[str, str] = {}
    for entries in files.values():
        for e in entries:
            if isinstance(e, dict) and e.get("version"):
                versions.setdefault(e["runtime"], e["version"])
    lines += ["", "Runtimes: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."]
    dc = manifest.get("device_check") or {}
    if dc.get("status") == "ran":
        lines.append(
            f"Browser: {dc.get('user_agent')}, {dc.get('cores')} cores, WebGPU adapter "
            f"{dc.get('webgpu_adapter') or 'none'}; latency is the median after a warm-up run."
        )
    elif dc:
        lines.append(
            f"Browser runtimes: NOT RUN ({dc.get('reason')}); that is not a pass. Run "
            "`portrait device-check --headless <bundle>` where node and Chromium are installed."
        )
    bad = [
        (n, e)
        for n, entries in files.items()
        for e in entries
        if isinstance(e, dict) and e.get("status") in clients.FAILED and e.get("meant_for") is not False
    ]
    if bad:
        lines += ["", "Where a file does not load or fails, in the runtime's own words:", ""]
        for n, e in bad:
            msg = " ".join(str(e.get("message") or "").split())[:400]
            lines.append(
                f"- `{n}` in {clients.label(e)} ({e['runtime']} {e.get('version') or ''}): "
                f"{'does not load' if e['status'] == 'no-load' else 'fails'}: {msg or '(no message)'}"
            )
    lines.append("")
    return lines


def bound_lines(p: dict) -> list[str]:
    """Card lines for bound-relative budgets (parity/bound.py): each judged figure next to its bound, per
    kernel set, for the main images and each further image set ([parity.sets.*])."""
    out = []
    blocks = [("these images", p.get("bound"), p.get("per_kernels") or {})]
    for name, s in (p.get("sets") or {}).items():
        if s.get("skipped"):
            out.append(f"- {name}: not judged ({s['skipped']})")
            continue
        absolute = ", ".join(f"{k} {v}" for k, v in (s.get("budgets") or {}).items())
        fails = s.get("failures") or []
        verdict = "PASS" if not fails else ("FAIL: " if s.get("gates", True) else "NOT MET (reported, not gating): ")
        out.append(
            f"- {name} ({len(s.get('images') or [])} images)"
            + (f", absolute budgets {absolute}" if absolute else "")
            + f": {verdict}{'; '.join(fails)}"
        )
        blocks.append((name, s.get("bound"), s.get("per_kernels") or {}))
    for where, b, per_kernels in blocks:
        if not b:
            continue
        out.append(
            f"- output-grid bound on {where} ({b['grid']}: float's own output rounded onto this file's output "
            "grid, the best any file with this output contract can do):"
        )
        for fig, margin in b["relative_to_bound"].items():
            best = b["figures"].get(fig)
            vals = ", ".join(f"{k} {f[fig]:.4f}" for k, f in per_kernels.items() if isinstance(f.get(fig), float))
            if isinstance(best, float):
                out.append(f"  - {fig}: bound {best:.4f}, budget within {margin} of it; this file: {vals}")
    return out


def render_card(manifest: dict, bundle: Path, report=None) -> str:
    mid = manifest["model_id"]
    models = manifest.get("models", {})
    records = {n: (r.get("contract") or file_record(manifest, n)) for n, r in models.items() if n.endswith(".tflite")}
    sizes = {n: (manifest.get("files", {}).get(n) or {}).get("bytes") for n in models}
    src = manifest.get("source") or {}
    lines = [
        f"# {mid}",
        "",
        manifest.get("description", ""),
        "",
        f"Version {next(iter(records.values()))['version'] if records else manifest.get('toolchain_version')}"
        f" · license {src.get('license')} · upstream {src.get('url')} (SHA-256 {str(src.get('sha256'))[:16]}...)",
        "",
        "This card is generated from `manifest.json` (the record); the same record is written as TFLite "
        "metadata inside each `.tflite`. `portrait verify <this folder or zip>` checks that the three agree "
        "and that each file does what it says.",
        "",
        "## Files",
        "",
        "| file | precision / rung | why | size | clients |",
        "|---|---|---|---|---|",
    ]
    for n, r in models.items():
        nbytes = sizes.get(n)
        size = f"{nbytes / 1e6:.2f} MB" if nbytes else ""
        lines.append(f"| `{n}` | {r.get('precision')} | {_why(manifest, n)} | {size} | {_loads_in(r.get('clients'))} |")
    gpu = manifest.get("handoff_gpu_choice") or {}
    lines += [
        "",
        "Handoff: "
        + (f"`{manifest['handoff']}`" if manifest.get("handoff") else "none (no quantized file met its budget)")
        + (f"; CPU (XNNPACK) handoff: `{manifest['handoff_cpu']}`" if manifest.get("handoff_cpu") else "")
        + (
            f"; GPU (WebGPU) handoff: `{manifest['handoff_gpu']}`"
            if manifest.get("handoff_gpu")
            else f"; GPU handoff: none ({gpu['reason']})"
            if gpu.get("reason")
            else ""
        ),
        "",
    ]
    lines += _clients_section(manifest)
    lines += ["## Input / output contract", ""]
    for n, rec in records.items():
        inp = rec["input"]
        lines += [
            f"### `{n}`",
            "",
            f"- input `{inp['name']}`: {inp['description']}",
            f"- metadata: NormalizationOptions mean {inp['norm_mean']} std {inp['norm_std']} (pixel units), "
            f"colour space {inp['color_space']}"
            + (f", segmenter activation {rec['segmenter_activation']}" if rec.get("segmenter_activation") else ""),
        ]
        for o in rec["outputs"]:
            lines.append(
                f"- output `{o['key']}` {o.get('shape')}: {o['description']}"
                + (f"; range {o['range']}" if o.get("range") else "")
                + (f"; labels: `{o['labels_file']}` ({o['labels_type']})" if o.get("labels_file") else "")
            )
        if MEDIAPIPE_SEGMENTER not in rec["clients"]:
            lines.append(
                f"- clients: {', '.join(rec['clients'])} only (MediaPipe Tasks ImageSegmenter expects "
                "per-class masks, not class indices)"
                if rec["outputs"][0]["kind"] == "class_index"
                else f"- clients: {', '.join(rec['clients'])}"
            )
        lines += ["", _example(manifest, bundle, n, rec), ""]
    lines += ["## Parity and what was checked", ""]
    p = manifest.get("parity") or {}
    if p:
        figs = ", ".join(
            f"{k} {p[k]:.4f}"
            for k in (
                "pixel_agreement",
                "worst_class_iou",
                "edge_band_agreement",
                "iou",
                "mean_abs_diff",
                "delta1",
                "abs_rel",
                "blur_mean_px",
                "blur_p99_px",
            )
            if isinstance(p.get(k), float)
        )
        ka = p.get("kernel_agreement") or {}
        n_img = len(p["images"]) if isinstance(p.get("images"), list) else p.get("images", "the")
        kern = (
            "both kernel sets (XNNPACK and reference, the worse of the two)"
            if p.get("kernels") == "both"
            else f"the {p.get('kernels')} kernels"
        )
        lines.append(
            f"- handoff vs float32 on {n_img} images, judged on {kern}: "
            f"{figs} ({'PASS' if p.get('passed') else 'FAIL: ' + '; '.join(p.get('failures', []))})"
        )
        lines += bound_lines(p)
        if ka:
            lines.append(
                "- XNNPACK vs reference kernels: "
                + ", ".join(f"{k} {v:.4f}" for k, v in ka.items() if isinstance(v, float))
            )
    mp = manifest.get("mixed_precision") or {}
    if mp:
        lines.append(f"- mixed precision: {mp.get('message')}")
    for rung in manifest.get("ladder") or []:
        if isinstance(rung, dict):
            lines.append(
                f"- ladder rung {rung.get('label') or rung.get('rung')} (`{rung.get('file')}`): "
                + ("met" if rung.get("met") else "missed: " + "; ".join(rung.get("failures") or []))
                + f"; {rung.get('float_ops', '?')} float ops, {rung.get('int16_ops', 0)} int16 ops"
            )
    for name, c in ((manifest.get("handoff_cpu_choice") or {}).get("candidates") or {}).items():
        if c.get("budgets"):  # the recipe's [parity.handoff_cpu] budgets judged this candidate
            lines.append(
                f"- CPU handoff candidate `{name}` on {c.get('judged_on')} "
                f"({', '.join(f'{k} {v}' for k, v in c['budgets'].items())}): "
                + ("met" if c.get("meets") else "missed: " + "; ".join(c.get("failures") or []))
            )
    mw = manifest.get("measured_with") or {}
    lines.append(f"- measured with {mw.get('interpreter')}, converter {mw.get('converter')}, host {mw.get('host')}")
    if report is not None:
        lines += ["", "`portrait verify` at export (every file fed as this contract says):", ""]
        for c in report.checks:
            if (
                c.field in ("mediapipe.agreement", "litert.vs_float32", "goldens", "metadata", "litert.run")
                and c.file in records
            ):
                figs = ", ".join(f"{k} {v:.5g}" if isinstance(v, float) else f"{k} {v}" for k, v in c.figures.items())
                lines.append(
                    f"- `{c.file}` {c.field}: {c.status}"
                    + (f" ({figs})" if figs else "")
                    + (f" — {c.message}" if c.message and c.status != "pass" else "")
                )
        try:
            mpv = client.version()
        except Exception:  # the card must not fail the export over a version string
            mpv = None
        lines.append(
            f"- runtimes: ai-edge-litert reference kernels (goldens, float comparison); "
            f"MediaPipe Tasks ImageSegmenter {('mediapipe ' + mpv) if mpv else '(NOT run)'} on CPU (XNNPACK)"
        )
    lines += ["", "## Loading", ""]
    show = [
        n
        for n in (
            manifest.get("handoff"),
            manifest.get("handoff_cpu"),
            manifest.get("handoff_gpu"),
            f"{mid}_float32.tflite",
        )
        if isinstance(n, str) and n in records
    ]
    show = list(dict.fromkeys(show))
    for n in show:
        lines += [f"### `{n}`", "", _snippets(manifest, n, records[n]), ""]
    if not show:
        lines.append("(no .tflite file in this bundle)")
    lines += ["", _device_check_sections(manifest, bundle)]
    return "\n".join(lines).rstrip() + "\n"


def _device_check_sections(manifest: dict, bundle: Path) -> str:
    """How to check the files on a phone: in its browser (`portrait device-check`) and, in a native app,
    by dumping tensors for `portrait check` (code that writes exactly the files check.py reads)."""
    mid = manifest["model_id"]
    first = ""
    gpath = bundle / "goldens" / "goldens.json"
    if gpath.is_file():
        vec = next((v for v in json.loads(gpath.read_text())["vectors"] if v.get("stage") == "model"), None)
        if vec is not None:
            key, rec = next(iter(vec["expected"].items()))
            first = (
                f" For example vector `{vec['name']}`: feed `goldens/{vec['inputs']['image']['file']}` to "
                f"`{vec['model_file']}` and write output `{key}` as `{rec['file'].removesuffix('.npy')}.bin` "
                f"({rec['dtype']} {rec['shape']})."
            )
    return f"""## Check it on your phone

In the phone's browser, no app needed (the computer and the phone on the same network):

```
portrait device-check {mid} --serve 0.0.0.0:8000     # or the zip: portrait device-check {mid}-<version>.zip --serve ...
```

It prints a URL and a QR code; open it on the phone. The page loads every `.tflite` of this bundle in
LiteRT.js (`wasm` = XNNPACK on the phone's CPU, `webgpu` = its GPU) and, for segmenters, in MediaPipe
Tasks Vision's ImageSegmenter (CPU and GPU delegates); feeds each file the golden images exactly as
the contract above says (those runs are the warm-up); times 5 more runs; and posts the raw outputs back. The computer
judges them with the same checker and tolerances as `portrait check` (goldens for integer files; for
float files this computer's LiteRT run of the same file; GPU backends with float16 tolerances) and
writes `device-report.json` and `device-report.html` (default `export/device/{mid}/`).
`--headless` runs the same page in the computer's Chromium.

Reading the report: one row per file, one column per backend. **pass** with its worst figure
(`max_abs_q`: int8 steps from the golden; `max_rel`: fraction of the output range; `category_agreement`:
MediaPipe's mask vs the decoded reference) and the median latency; **FAIL** with what was off;
**no-load** with the runtime's own message where the runtime refuses the file. A file fails the check
(exit status 1) only on a backend this manifest lists for it (`clients`); exit status 3 means nothing
could run, which is never a pass. The report names the browser, its core count and the WebGPU adapter.

## Check your native app (tensor dump)

`portrait check --bundle <this folder> --device-outputs <folder>` reads, for each model vector of
`goldens/goldens.json`, the raw output the app computed from that vector's input: a file named like the
golden (`.npy`, or `.bin` with raw little-endian bytes in C order; dtype and shape from goldens.json),
not dequantized.{first} The code below writes exactly that folder; copy it off the phone
(`adb pull /sdcard/Android/data/<app>/files/device_outputs`, or the app container in Xcode) and run the command.

```kotlin
// Android, LiteRT Interpreter (org.tensorflow.lite API); goldens/ and the .tflite files copied to `dir`
fun npyPayload(f: File): ByteArray {{            // NumPy format 1.0: 10-byte preamble + header, then C-order data
    val b = f.readBytes(); val hl = (b[8].toInt() and 0xFF) or ((b[9].toInt() and 0xFF) shl 8)
    return b.copyOfRange(10 + hl, b.size)
}}
val out = File(context.getExternalFilesDir(null), "device_outputs").apply {{ mkdirs() }}
val vectors = JSONObject(File(dir, "goldens/goldens.json").readText()).getJSONArray("vectors")
for (i in 0 until vectors.length()) {{
    val v = vectors.getJSONObject(i)
    if (v.getString("stage") != "model") continue
    Interpreter(File(dir, v.getString("model_file"))).use {{ interp ->
        val x = npyPayload(File(dir, "goldens/" + v.getJSONObject("inputs").getJSONObject("image").getString("file")))
        val input = ByteBuffer.allocateDirect(x.size).order(ByteOrder.nativeOrder()).put(x).rewind()
        val y = ByteBuffer.allocateDirect(interp.getOutputTensor(0).numBytes()).order(ByteOrder.LITTLE_ENDIAN)
        interp.run(input, y)                      // raw output: int8 stays int8 (not dequantized)
        val file = v.getJSONObject("expected").let {{ e -> e.getJSONObject(e.keys().next()).getString("file") }}
        File(out, file.removeSuffix(".npy") + ".bin").writeBytes(ByteArray(y.rewind().remaining()).also {{ y.get(it) }})
    }}
}}
```

```swift
// iOS, LiteRT (TensorFlowLiteSwift); goldens/ and the .tflite files in the app bundle folder `dir`
func npyPayload(_ url: URL) throws -> Data {{
    let d = try Data(contentsOf: url); let hl = Int(d[8]) | Int(d[9]) << 8
    return d.subdata(in: (10 + hl)..<d.count)
}}
let out = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0].appendingPathComponent("device_outputs")
try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
let index = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("goldens/goldens.json"))) as! [String: Any]
for v in index["vectors"] as! [[String: Any]] where v["stage"] as? String == "model" {{
    let interpreter = try Interpreter(modelPath: dir.appendingPathComponent(v["model_file"] as! String).path)
    try interpreter.allocateTensors()
    let image = (v["inputs"] as! [String: Any])["image"] as! [String: Any]
    try interpreter.copy(npyPayload(dir.appendingPathComponent("goldens/" + (image["file"] as! String))), toInputAt: 0)
    try interpreter.invoke()
    let expected = (v["expected"] as! [String: [String: Any]]).first!.value
    let name = (expected["file"] as! String).replacingOccurrences(of: ".npy", with: ".bin")
    try interpreter.output(at: 0).data.write(to: out.appendingPathComponent(name))   // raw bytes (iOS is little-endian)
}}
```

Both write one `.bin` per vector for single-output files (every file of this bundle); a file with several
outputs writes each output under its own golden name (match `expected` keys to the output tensor names in
`manifest.json`). Vectors of stage `fused` (`fused_*`: alpha and composite) check the app's render stage
(mask upsampling, depth-aware blur, composite) from the inputs stored beside them: write their
`alpha` and `composite` from that stage the same way, or `portrait check` reports them missing."""
