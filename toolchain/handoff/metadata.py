"""The handoff record of each model file, and its TFLite metadata view.

One record per file, built from the manifest alone (`file_record`), is the single source of what a
client is told: the input contract (pixels, dtype, size, colour, normalization in pixel units), the
meaning and range of each output, labels, the MediaPipe segmenter activation, and which clients load
the file. The manifest stores it (`models[<file>]["contract"]`, `["clients"]`), the metadata inside
each .tflite is written from it (`write_metadata`, through the MediaPipe client environment), and
the model card (card.py) renders it. `metadata_mismatches` compares a file's metadata with it.

Not for: running models (verify.py) or the environment plumbing (client.py).
"""

from __future__ import annotations

import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError
from . import client

LITERT = "LiteRT Interpreter"
MEDIAPIPE_SEGMENTER = "MediaPipe Tasks ImageSegmenter"
ONNXRUNTIME = "ONNX Runtime"

# Precisions whose files take float32 pixels (normalization folded in); every other TFLite file takes
# uint8 pixels. A rung with another convention names it in models[<file>]["pixels"] ("uint8"/"float32"),
# set from the rung's declaration, never from the tensor (verify checks the tensor against it).
FLOAT_INPUT_PRECISIONS = ("float32", "float16", "dynamic")
SEGMENTER_TASKS = ("segmentation", "mask")


def bundle_version(manifest: dict) -> str:
    """<toolchain version>+<first 8 hex of the source SHA-256>: changes when either does."""
    sha = ((manifest.get("source") or {}).get("sha256") or "")[:8]
    return f"{manifest.get('toolchain_version', '0')}" + (f"+{sha}" if sha else "")


def pixels_dtype(manifest: dict, name: str) -> str:
    rec = manifest["models"][name]
    if rec.get("pixels") in ("uint8", "float32"):
        return rec["pixels"]
    return "float32" if rec.get("precision") in FLOAT_INPUT_PRECISIONS else "uint8"


def _output_specs(manifest: dict, name: str) -> list[dict]:
    """Each output of the file, in the file's signature order, with the registry's meaning."""
    rec = manifest["models"][name]
    registry_outputs = {o["name"]: o for o in manifest.get("outputs", [])}
    labels = manifest.get("labels") or []
    out = []
    for i, (key, tensor) in enumerate((rec.get("outputs") or {}).items()):
        reg = registry_outputs.get(key) or next(
            (o for o in manifest.get("outputs", []) if o["name"].replace("/", "_") == key), None
        )
        spec = {
            "key": key,
            "tensor_name": tensor.get("name"),
            "shape": tensor.get("shape"),
            "range": None,
            "labels_file": None,
            "labels_type": None,
        }
        if key == "labels" or (
            reg is None and tensor.get("dtype") in ("uint8", "int32", "int64") and len(tensor.get("shape") or []) == 3
        ):
            spec.update(
                kind="class_index",
                name="labels",
                description=f"per-pixel class index (argmax over the {len(labels)} classes, "
                f"{tensor.get('dtype')}), at input resolution; labels.txt line i names class i",
                range=[0, max(len(labels) - 1, 0)],
                labels_file="labels.txt" if labels else None,
                labels_type="TENSOR_VALUE_LABELS",
            )
        elif reg is not None and reg.get("kind") == "logits":
            spec.update(
                kind="segmentation_mask",
                name=key,
                description=reg["meaning"] + "; softmax over the last axis gives class probabilities",
                labels_file="labels.txt" if labels else None,
                labels_type="TENSOR_AXIS_LABELS",
            )
        elif reg is not None and reg.get("kind") == "probabilities":
            what = labels[-1] if labels else "foreground"
            spec.update(
                kind="segmentation_mask",
                name=key,
                range=[0.0, 1.0],
                description=reg["meaning"] + f" (one channel: probability of {what!r}; {what} where > 0.5)",
            )
        else:
            spec.update(kind="feature", name=key, description=(reg or {}).get("meaning", f"output {i}"))
        out.append(spec)
    return out


def clients_for(manifest: dict, name: str, outputs: list[dict] | None = None) -> list[str]:
    """Which clients load the file and give meaningful outputs; verify runs each one it names."""
    if name.endswith(".onnx"):
        return [ONNXRUNTIME]
    if not name.endswith(".tflite"):
        return []
    outputs = outputs if outputs is not None else _output_specs(manifest, name)
    clients = [LITERT]
    if manifest.get("task") in SEGMENTER_TASKS and len(outputs) == 1 and outputs[0]["kind"] == "segmentation_mask":
        clients.append(MEDIAPIPE_SEGMENTER)
    return clients


def segmenter_activation(outputs: list[dict]) -> str | None:
    """MediaPipe's SEGMENTER_METADATA activation: SOFTMAX over logits, NONE for probabilities."""
    if len(outputs) != 1 or outputs[0]["kind"] != "segmentation_mask":
        return None
    return "NONE" if outputs[0]["range"] == [0.0, 1.0] else "SOFTMAX"


def file_record(manifest: dict, name: str) -> dict:
    """The handoff record of one .tflite file, from the manifest alone."""
    mid = manifest["model_id"]
    rec = manifest["models"][name]
    dtype = pixels_dtype(manifest, name)
    h, w = manifest["input"]["size"]
    outputs = _output_specs(manifest, name)
    source = manifest.get("source") or {}
    return {
        "name": f"{mid} ({rec.get('precision')})",
        "description": (manifest.get("description") or mid) + f" Exported by portrait-toolchain as {name}.",
        "version": bundle_version(manifest),
        "author": "portrait-toolchain export; upstream model: " + (source.get("url") or "see the manifest"),
        "license": source.get("license") or "see the manifest",
        "input": {
            "name": "image",
            "dtype": dtype,
            "shape": [1, h, w, 3],
            "layout": manifest["input"]["layout"],
            "color_space": manifest["input"].get("color", "RGB"),
            "resize": manifest["input"].get("resize"),
            "range": [0, 255],
            # pixel units: the network's own normalization is folded into the model
            "norm_mean": [0.0],
            "norm_std": [1.0],
            "description": f"{manifest['input'].get('color', 'RGB')} pixels 0..255 as {dtype}, "
            f"[1, {h}, {w}, 3] NHWC, the photo resized to {w}x{h} "
            f"({manifest['input'].get('resize')}); no normalization by the caller",
        },
        "outputs": outputs,
        "segmenter_activation": segmenter_activation(outputs) if manifest.get("task") in SEGMENTER_TASKS else None,
        "clients": clients_for(manifest, name, outputs),
    }


def annotate(manifest: dict) -> dict:
    """Add models[<file>]["contract"] (the record, whose `clients` names the clients the file is
    meant for) and ["clients"] to every model file; returns it. A .tflite's clients are measured at
    the end of the export (clients.py: verify and device-check); until then the list is empty. The
    ONNX file's one client is the onnxruntime check the export ran."""
    for name, rec in manifest.get("models", {}).items():
        if name.endswith(".tflite"):
            rec["contract"] = file_record(manifest, name)
            rec["clients"] = []
        elif name.endswith(".onnx"):
            rec["clients"] = [_onnx_entry(manifest.get("onnx_check"))]
        else:
            rec["clients"] = []
    return manifest


def _onnx_entry(check: dict | None) -> dict:
    try:
        ver = version("onnxruntime")
    except PackageNotFoundError:
        ver = None
    ok = check is not None and check.get("max_abs_diff") is not None and check["max_abs_diff"] <= check.get("budget", 0)
    return {
        "runtime": "onnxruntime",
        "version": ver,
        "backend": "cpu (CPU execution provider)",
        "status": "pass" if ok else "not-run" if not check else "fail",
        "message": ""
        if ok
        else "no ONNX check in this export"
        if not check
        else f"max abs diff vs TF {check.get('max_abs_diff')} > {check.get('budget')}",
        "latency_ms": None,
        "figures": {"max_abs_diff": check["max_abs_diff"]} if check else {},
        "claimed": True,
        "where": "export host (the export's ONNX check)",
    }


def write_metadata(files: dict[str, Path], manifest: dict, labels_path: Path | None) -> None:
    """Write each .tflite's metadata from its record (in place), then read it back and compare."""
    jobs: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="portrait-metadata-"))
    try:
        for name, path in files.items():
            if not name.endswith(".tflite"):
                continue
            record = manifest["models"][name].get("contract") or file_record(manifest, name)
            needs_labels = any(o.get("labels_file") for o in record["outputs"])
            jobs.append(
                {
                    "model": str(path),
                    "out": str(tmp / name),
                    "record": _worker_record(record),
                    "associated": [str(labels_path)] if needs_labels and labels_path else [],
                }
            )
        if not jobs:
            return
        client.call("write-metadata", {"jobs": jobs})
        for job in jobs:
            shutil.copyfile(job["out"], job["model"])
        read = read_metadata([Path(j["model"]) for j in jobs])
        problems = []
        for name, path in files.items():
            if name.endswith(".tflite"):
                record = manifest["models"][name].get("contract") or file_record(manifest, name)
                problems += [
                    f"{name}: {p}"
                    for p in metadata_mismatches(
                        record, read[str(path)], labels_path.read_text() if labels_path else None
                    )
                ]
        if problems:
            raise ExportError(
                "metadata read back from the written files disagrees with the record: " + "; ".join(problems),
                fix="a bug in toolchain/handoff/_client_worker.py",
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _worker_record(record: dict) -> dict:
    """The record with the outputs ordered as the worker pairs them (the file's output order)."""
    return {**record, "outputs": [{k: v for k, v in o.items()} for o in record["outputs"]]}


def read_metadata(models: list[Path]) -> dict[str, dict]:
    """{path: {"metadata": dict | None, "associated_files": {name: text}}}, read in the client env."""
    return client.call("read-metadata", {"models": [str(p) for p in models]})


def metadata_mismatches(record: dict, read: dict, labels_text: str | None) -> list[str]:
    """Fields where a file's metadata disagrees with its record (empty when they agree)."""
    md = read.get("metadata")
    if md is None:
        return ["metadata: the file carries no TFLite metadata" + (f" ({read['error']})" if read.get("error") else "")]
    bad = []
    for field in ("name", "description", "version", "author", "license"):
        if md.get(field) != record[field]:
            bad.append(f"metadata.{field}: {md.get(field)!r}, manifest record says {record[field]!r}")
    sg = (md.get("subgraphMetadata") or [{}])[0]
    inp = (sg.get("inputTensorMetadata") or [{}])[0]
    color = ((inp.get("content") or {}).get("contentProperties") or {}).get("colorSpace")
    if color != record["input"]["color_space"]:
        bad.append(f"metadata.input.colorSpace: {color}, manifest says {record['input']['color_space']}")
    norm = next(
        (u.get("options") for u in inp.get("processUnits") or [] if u.get("optionsType") == "NormalizationOptions"),
        None,
    )
    if norm is None:
        bad.append("metadata.input.NormalizationOptions: missing")
    elif [float(v) for v in norm.get("mean", [])] != record["input"]["norm_mean"] or [
        float(v) for v in norm.get("std", [])
    ] != record["input"]["norm_std"]:
        bad.append(
            f"metadata.input.NormalizationOptions: mean {norm.get('mean')} std {norm.get('std')}, manifest "
            f"says mean {record['input']['norm_mean']} std {record['input']['norm_std']} (pixel units)"
        )
    outs = sg.get("outputTensorMetadata") or []
    if len(outs) != len(record["outputs"]):
        bad.append(f"metadata.outputs: {len(outs)} tensors, manifest says {len(record['outputs'])}")
    by_name = {o.get("name"): o for o in outs}  # the metadata is in the file's output order
    for want in record["outputs"]:
        got = by_name.get(want["name"])
        if got is None:
            bad.append(f"metadata.output[{want['key']}]: no tensor metadata named {want['name']!r}")
            continue
        if got.get("description") != want["description"]:
            bad.append(
                f"metadata.output[{want['key']}].description (output meaning): {got.get('description')!r}, "
                f"manifest says {want['description']!r}"
            )
        stats = got.get("stats") or {}
        rng = [stats["min"][0], stats["max"][0]] if stats.get("min") and stats.get("max") else None
        if (rng is None) != (want["range"] is None) or (
            rng and [float(v) for v in rng] != [float(v) for v in want["range"]]
        ):
            bad.append(f"metadata.output[{want['key']}].range: {rng}, manifest says {want['range']}")
        files = {f["name"]: f.get("type") for f in got.get("associatedFiles") or []}
        if want.get("labels_file"):
            if files.get(want["labels_file"]) != want["labels_type"]:
                bad.append(
                    f"metadata.output[{want['key']}].labels: {files or 'none'}, manifest says "
                    f"{want['labels_file']} as {want['labels_type']}"
                )
            packed = (read.get("associated_files") or {}).get(want["labels_file"])
            if packed is None:
                bad.append(f"associated file {want['labels_file']}: missing from the .tflite")
            elif labels_text is not None and packed != labels_text:
                bad.append(f"associated file {want['labels_file']}: differs from the bundle's labels.txt")
        elif files:
            bad.append(f"metadata.output[{want['key']}].labels: {files}, manifest says none")
    custom = {c.get("name"): c.get("data") for c in sg.get("customMetadata") or []}
    act = (custom.get("SEGMENTER_METADATA") or {}).get("activation")
    if act != record.get("segmenter_activation"):
        bad.append(f"metadata.SEGMENTER_METADATA.activation: {act}, manifest says {record.get('segmenter_activation')}")
    return bad


def contract_input(record: dict, pixels: np.ndarray) -> np.ndarray:
    """uint8 RGB pixels -> what the contract says the file takes: (pixels - mean) / std as its dtype."""
    inp = record["input"]
    x = (pixels.astype(np.float32) - np.float32(inp["norm_mean"][0])) / np.float32(inp["norm_std"][0])
    if inp["dtype"] == "uint8":
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return x.astype(np.float32)
