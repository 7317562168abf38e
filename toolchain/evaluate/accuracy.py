"""`portrait evaluate`: every model file of a bundle against the ground truth of a labeled set.

`evaluate_shard(shard)` is the one function that turns images into per-image figures, for every
model file of the bundle at once (each image is read and resized once). The engines (toolchain/engines.py)
only decide where it runs, so the local and Ray runs give the same numbers, bit for bit. The
driver then sums the per-image figures into set figures, with paired bootstrap 95% confidence
intervals for each figure and for each precision's drop against float32, and writes report.json
and a static report.html.

Which files: every .tflite and .onnx (onnxruntime, CPU) in the manifest's `models`, plus the files
named by `handoff` and `handoff_cpu` when they are not among them.
Not for: int8-vs-float parity without ground truth (parity/).
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict
from html import escape
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from .. import paths
from ..bundle import handoff_model
from ..bundle_loader import Bundle, open_bundle
from ..engines import map_shards
from ..errors import InputError
from ..images import to_model_input
from ..runtime import TfliteRunner
from . import truth_metrics
from .datasets import BadSample, Dataset, Sample, load_sample, open_dataset

MAX_BAD_FRACTION = 0.01
DEPTH_INVERSE_KINDS = ("relative_inverse_depth", "inverse_depth", "disparity")
_SET_FIGURES = {
    "segmentation": ("miou", "pixel_accuracy", "boundary_f"),
    "matting": ("sad_k", "mse", "grad_k", "conn_k", "holes", "ghosts"),
    "depth": ("delta1", "abs_rel", "rmse"),
}
_TASKS_FOR = {"segmentation": ("segmentation",), "matting": ("segmentation", "mask"), "depth": ("depth",)}


# ----------------------------------------------------------------------------------- planning


def resolve_bundle(model: str | Path, bundles_root: Path | None = None) -> Bundle:
    """The bundle (folder, zip, or model id under bundles_root), opened by the bundle loader: schema and
    SHA-256 of every file checked before any file is run."""
    return open_bundle(model, root=bundles_root)


def model_files(bundle: Path, manifest: dict) -> tuple[list[dict], list[str]]:
    """([{file, precision, roles}], notes): the files to evaluate, float32 first."""
    mid = manifest["model_id"]
    names = [n for n in (manifest.get("models") or {}) if n.endswith((".tflite", ".onnx"))]
    if not names:  # bundles without a models table: whatever model files are there
        names = sorted(p.name for p in bundle.iterdir() if p.suffix in (".tflite", ".onnx"))
    notes = [
        f"{n}: not evaluated (not a .tflite or .onnx file)"
        for n in (manifest.get("models") or {})
        if not n.endswith((".tflite", ".onnx"))
    ]
    roles: dict[str, list[str]] = {}
    for key, name in (("handoff", handoff_model(manifest)), ("handoff_cpu", manifest.get("handoff_cpu"))):
        if isinstance(name, dict):  # tolerate a record instead of a file name
            name = name.get("file")
        if not name:
            continue
        if not (bundle / name).is_file():
            notes.append(f"{key} names {name}, which is not in the bundle")
            continue
        roles.setdefault(name, []).append(key)
        if name not in names:
            names.append(name)
    missing = [n for n in names if not (bundle / n).is_file()]
    for n in missing:
        notes.append(f"{n}: listed in the manifest but missing from the bundle")
    names = [n for n in names if n not in missing]
    ref = f"{mid}_float32.tflite"
    if ref not in names:
        raise InputError(
            f"the bundle has no {ref}: the drop against float needs it",
            where=str(bundle),
            fix=f"re-export with float32 in the recipe's precisions (`portrait export {mid}`)",
        )
    names.sort(key=lambda n: n != ref)
    out = []
    for n in names:
        p = (manifest.get("models", {}).get(n) or {}).get("precision") or _precision_of(n)
        out.append({"file": n, "precision": f"{p} onnx" if n.endswith(".onnx") else p, "roles": roles.get(n, [])})
    return out, notes


def _precision_of(name: str) -> str:
    for p in ("int8_mixed", "int8_labels", "float32", "float16", "dynamic", "int8"):
        if f"_{p}." in name:
            return p
    return "unknown"


def _shard_spec(
    bundle: Path,
    manifest: dict,
    files: list[str],
    dataset: Dataset,
    samples: list[Sample],
    *,
    kernels: str,
    threads: int,
    align: str | None,
) -> dict:
    out0 = (manifest.get("outputs") or [{}])[0]
    kind = out0.get("kind", "")
    fg = manifest.get("foreground_classes") or {}
    return {
        "bundle": str(bundle.resolve()),
        "files": list(files),
        "model_task": manifest.get("task"),
        "task": dataset.task,
        "samples": [asdict(s) for s in samples],
        "size": list(manifest["input"]["size"]),
        "num_classes": len(manifest.get("labels") or []) or None,
        "foreground_ids": sorted(fg.values()),
        "inverse_output": kind in DEPTH_INVERSE_KINDS,
        "align": align or ("inverse" if kind.startswith("relative") or kind in DEPTH_INVERSE_KINDS else "depth"),
        "kernels": kernels,
        "threads": threads,
    }


# ----------------------------------------------------------------------------------- one shard

_RUNNERS: dict = {}  # (bundle, file, kernels, threads) -> TfliteRunner; one load per worker process


def _runner(bundle: str, name: str, kernels: str, threads: int):
    key = (bundle, name, kernels, threads)
    if key not in _RUNNERS:
        path = Path(bundle) / name
        _RUNNERS[key] = (
            OnnxRunner(path, threads=threads)
            if name.endswith(".onnx")
            else TfliteRunner(path, kernels=kernels, threads=threads)
        )
    return _RUNNERS[key]


class OnnxRunner:
    """The bundle's ONNX file in onnxruntime (CPU), with TfliteRunner's `run(pixels)` interface:
    float32 RGB pixels 0..255 in (the bundle's input convention), outputs by name."""

    def __init__(self, path: Path, *, threads: int = 1):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise InputError(
                f"onnxruntime cannot load {Path(path).name}: {exc}", where=str(path), fix="re-export the bundle"
            ) from exc
        self.input = self.session.get_inputs()[0]

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(pixels, np.float32)
        x = x[None] if x.ndim == 3 else x
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, {self.input.name: x})))


def evaluate_shard(spec: dict) -> list[dict]:
    """Per-image rows for the samples of one shard, every model file at once.

    Row: {"index", "name", "models": {file: figures}} or {"index", "name", "bad": reason}.
    """
    runners = {f: _runner(spec["bundle"], f, spec["kernels"], spec["threads"]) for f in spec["files"]}
    rows = []
    for raw in spec["samples"]:
        s = Sample(**raw)
        row: dict[str, Any] = {"index": s.index, "name": s.name}
        try:
            rgb, truth = load_sample(s, num_classes=spec["num_classes"] if spec["task"] == "segmentation" else None)
        except BadSample as exc:
            rows.append({**row, "bad": str(exc)})
            continue
        x = to_model_input(rgb, tuple(spec["size"]))
        row["models"] = {}
        for f, r in runners.items():
            out = r.run(x)
            out = out[sorted(out)[0]][0]
            row["models"][f] = _figures(spec, out, truth)
        rows.append(row)
    return rows


def _resize(a: np.ndarray, hw: tuple[int, int], nearest: bool = False) -> np.ndarray:
    if a.shape[:2] == tuple(hw):
        return a
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(a, (hw[1], hw[0]), interpolation=interp)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _figures(spec: dict, out: np.ndarray, truth: np.ndarray) -> dict:
    """One model output -> figures against the truth, at the truth's resolution."""
    hw = truth.shape[:2]
    task, model_task = spec["task"], spec["model_task"]
    is_labels = out.ndim == 2 and not np.issubdtype(out.dtype, np.floating)
    if task == "segmentation":
        if is_labels:
            pred = _resize(out.astype(np.uint8), hw, nearest=True)
        else:  # logits: bilinear at the truth's size, then argmax (as DeepLab's evaluation does)
            pred = np.argmax(_resize(np.ascontiguousarray(out, np.float32), hw), axis=-1).astype(np.uint8)
        return truth_metrics.segmentation_image(truth, pred, spec["num_classes"])
    if task == "matting":
        if model_task == "mask":
            alpha = out[..., 0] if out.ndim == 3 else out
        elif is_labels:
            alpha = np.isin(out, spec["foreground_ids"]).astype(np.float32)
        else:  # a segmenter's alpha: probability of any foreground class
            alpha = _softmax(out.astype(np.float32))[..., spec["foreground_ids"]].sum(-1)
        alpha = np.clip(_resize(np.ascontiguousarray(alpha, np.float32), hw), 0.0, 1.0)
        return truth_metrics.matting_image(truth, alpha)
    d = out[..., 0] if out.ndim == 3 else out
    d = _resize(np.ascontiguousarray(d, np.float32), hw)
    return truth_metrics.depth_image(truth, d, space=spec["align"], pred_is_inverse=spec["inverse_output"])


# ----------------------------------------------------------------------------------- the whole run


def evaluate(
    model: str | Path,
    dataset: str | Path,
    *,
    task: str | None = None,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    shard_size: int = 20,
    kernels: str = "xnnpack",
    threads: int = 1,
    align: str | None = None,
    out_dir: Path | None = None,
    bundles_root: Path | None = None,
    limit: int | None = None,
    resamples: int = 1000,
    seed: int = 0,
    max_bad_fraction: float = MAX_BAD_FRACTION,
    precisions: list[str] | None = None,
    progress=None,
    shard_fn=None,
) -> dict:
    """Evaluate every model file of a bundle on a labeled set; write report.json + report.html.

    Raises InputError (after writing the report) when more than max_bad_fraction of the samples
    are bad. threads: TFLite threads per model (1 by default: the engines give parallelism).
    precisions: only these (e.g. ["int8"], "onnx" for the ONNX files; float32 .tflite, the reference,
    is always kept).
    shard_fn: a wrapper of evaluate_shard (tests inject a worker crash with it); default evaluate_shard.
    """
    opened = resolve_bundle(model, bundles_root)  # held to the end: a zip's files live as long as it
    bundle, manifest = opened.root, opened.manifest
    mid = manifest["model_id"]
    ds = open_dataset(dataset, task)
    if manifest.get("task") not in _TASKS_FOR[ds.task]:
        raise InputError(
            f"{mid} is a {manifest.get('task')} model; a {ds.task} set needs a "
            f"{' or '.join(_TASKS_FOR[ds.task])} model",
            where=str(ds.root),
            fix="pick a bundle whose task matches the set (or pass --task)",
        )
    if shard_size < 1 or (workers is not None and workers < 1) or threads < 1:
        raise InputError(
            f"--shard-size {shard_size}, --workers {workers}, --threads {threads}: each must be >= 1",
            fix="pass positive numbers",
        )
    if align not in (None, "inverse", "depth"):
        raise InputError(f"--align {align!r}", fix="use inverse or depth")
    files, notes = model_files(bundle, manifest)
    if precisions:
        wanted = set(precisions)
        files = [
            f
            for i, f in enumerate(files)
            if i == 0
            or f["precision"] in wanted
            or f["file"] in wanted
            or ("onnx" in wanted and f["file"].endswith(".onnx"))
        ]
        if len(files) < 2 and not set(precisions) <= {"float32"}:
            raise InputError(
                f"no file of precision {', '.join(precisions)} in {bundle}",
                where=str(bundle),
                fix="see the manifest's models for the precisions the bundle has",
            )
    samples = ds.samples[:limit] if limit else ds.samples
    shards = [samples[i : i + shard_size] for i in range(0, len(samples), max(1, shard_size))]
    specs = [
        _shard_spec(bundle, manifest, [f["file"] for f in files], ds, sh, kernels=kernels, threads=threads, align=align)
        for sh in shards
    ]
    stats: dict = {}
    t0 = time.perf_counter()
    chunks = map_shards(
        shard_fn or evaluate_shard,
        specs,
        engine=engine,
        address=address,
        workers=workers,
        progress=progress,
        unit="images",
        sizes=[len(s) for s in shards],
        stats=stats,
    )
    wall = time.perf_counter() - t0
    rows = sorted((r for c in chunks for r in c), key=lambda r: r["index"])
    if [r["index"] for r in rows] != [s.index for s in samples]:
        raise RuntimeError("the engine returned a different set of images than it was given")  # a bug, not input
    good = [r for r in rows if "bad" not in r]
    bad = [{"name": r["name"], "reason": r["bad"]} for r in rows if "bad" in r]
    result = {
        "model_id": mid,
        "bundle": str(bundle),
        "task": ds.task,
        "model_task": manifest.get("task"),
        "dataset": {
            "root": str(ds.root),
            "layout": ds.layout,
            "samples": len(samples),
            "evaluated": len(good),
            "bad": len(bad),
            "ignored": ds.ignored,
            "meta": ds.meta,
        },
        "files": files,
        "notes": notes,
        "bad_samples": bad,
        "settings": {
            "kernels": kernels,
            "threads_per_model": threads,
            "shard_size": shard_size,
            "bootstrap_resamples": resamples,
            "bootstrap_seed": seed,
            "confidence": 0.95,
            "align": specs[0]["align"] if ds.task == "depth" and specs else None,
        },
        "engine": {**stats, "wall_s": round(wall, 2), "images_per_s": round(len(samples) / wall, 2) if wall else None},
        "host": {
            "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
    }
    labels = manifest.get("labels") or []
    result["figures"] = summarize(ds.task, files, good, labels, resamples=resamples, seed=seed) if good else {}
    result["per_image"] = rows
    out_dir = Path(out_dir) if out_dir else paths.REPO_ROOT / "export" / "eval" / f"{mid}--{ds.root.name}"
    result["report"] = write_report(result, out_dir)
    if samples and len(bad) / len(samples) > max_bad_fraction:
        shown = "; ".join(f"{b['name']}: {b['reason']}" for b in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise InputError(
            f"{len(bad)} of {len(samples)} samples are bad ({100 * len(bad) / len(samples):.1f}% > "
            f"{100 * max_bad_fraction:.0f}%): {shown}",
            where=result["report"]["json"],
            fix="fix or remove the listed samples (all of them are in report.json under bad_samples)",
        )
    return result


def summarize(
    task: str, files: list[dict], rows: list[dict], labels: list[str], *, resamples: int = 1000, seed: int = 0
) -> dict:
    """Set figures per file with bootstrap 95% CIs, and each file's drop vs float32 (positive = worse)."""
    n = len(rows)
    w = truth_metrics.bootstrap_weights(n, resamples, seed)
    ref = files[0]["file"]
    boot: dict[str, dict[str, np.ndarray]] = {}
    out: dict = {}
    for f in (x["file"] for x in files):
        per = [r["models"][f] for r in rows]
        figs: dict[str, Any] = {}
        boot[f] = {}
        if task == "segmentation":
            c = len(labels) or 1 + max(max(i, j) for p in per for i, j, _ in p["confusion"])
            conf = np.stack([truth_metrics.dense_confusion(p["confusion"], c) for p in per])
            total = conf.sum(0)
            ious = truth_metrics.class_iou(total)
            figs["miou"] = truth_metrics.miou(total)
            figs["pixel_accuracy"] = truth_metrics.pixel_accuracy(total)
            figs["per_class_iou"] = {
                (labels[k] if k < len(labels) else str(k)): float(ious[k]) for k in range(c) if np.isfinite(ious[k])
            }
            boot[f]["miou"] = truth_metrics.weighted_miou(conf, w)
            acc_num = w @ np.trace(conf, axis1=1, axis2=2).astype(np.float64)
            boot[f]["pixel_accuracy"] = acc_num / (w @ conf.reshape(n, -1).sum(1).astype(np.float64))
            bf = np.array([p["boundary_f"] for p in per], np.float64)
            figs["boundary_f"] = float(np.nanmean(bf)) if np.isfinite(bf).any() else float("nan")
            boot[f]["boundary_f"] = truth_metrics.weighted_means(bf, w)
        else:
            for k in _SET_FIGURES[task]:
                v = np.array([p[k] for p in per], np.float64)
                figs[k] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
                boot[f][k] = truth_metrics.weighted_means(v, w)
        figs["ci95"] = {k: truth_metrics.interval(b) for k, b in boot[f].items()}
        out[f] = figs
    for f in out:
        if f == ref:
            continue
        drop, ci = {}, {}
        for k in boot[f]:
            sign = 1.0 if truth_metrics.HIGHER_IS_BETTER[k] else -1.0
            drop[k] = sign * (out[ref][k] - out[f][k])
            ci[k] = truth_metrics.interval(sign * (boot[ref][k] - boot[f][k]))
        out[f]["drop_vs_float32"] = drop
        out[f]["drop_ci95"] = ci
    return out


# ----------------------------------------------------------------------------------- report


def write_report(result: dict, out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(_clean(result), indent=1))
    (out_dir / "report.html").write_text(render_html(result))
    return {"json": str(out_dir / "report.json"), "html": str(out_dir / "report.html")}


def _clean(obj):
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _fmt(v, k: str = "") -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    if k in ("miou", "pixel_accuracy", "boundary_f", "delta1") or k == "iou":
        return f"{100 * v:.2f}"
    if k in ("holes", "ghosts"):
        return f"{100 * v:.3f}"
    return f"{v:.4g}"


def summary_lines(result: dict) -> list[str]:
    """Plain-text table: one line per file, each figure with its CI and the drop vs float32."""
    lines = [
        f"{result['model_id']} on {result['dataset']['root']} ({result['task']}, {result['dataset']['evaluated']} "
        f"images evaluated, {result['dataset']['bad']} bad)"
    ]
    keys = _SET_FIGURES[result["task"]]
    pct = {"miou", "pixel_accuracy", "boundary_f", "delta1", "holes", "ghosts"}
    lines.append(
        "  (" + ", ".join(f"{k}{' %' if k in pct else ''}" for k in keys) + "; [95% CI]; drop vs float32, "
        "positive = worse)"
    )
    for f in result["files"]:
        figs = result["figures"].get(f["file"])
        if not figs:
            continue
        cells = []
        for k in keys:
            lo, hi = figs["ci95"][k]
            cell = f"{k} {_fmt(figs[k], k)} [{_fmt(lo, k)}, {_fmt(hi, k)}]"
            if "drop_vs_float32" in figs:
                dl, dh = figs["drop_ci95"][k]
                cell += f" drop {_fmt(figs['drop_vs_float32'][k], k)} [{_fmt(dl, k)}, {_fmt(dh, k)}]"
            cells.append(cell)
        role = f" ({', '.join(f['roles'])})" if f["roles"] else ""
        lines.append(f"  {f['file']}{role}: " + "; ".join(cells))
    e = result["engine"]
    lines.append(
        f"  engine {e['engine']}, {e.get('workers')} worker(s), {e['wall_s']} s, {e.get('images_per_s')} images/s, "
        f"retries {e.get('retries', 0)}, peak RSS per worker MB {sorted((e.get('peak_rss_mb') or {}).values())}"
    )
    for b in result["bad_samples"][:10]:
        lines.append(f"  bad sample {b['name']}: {b['reason']}")
    if len(result["bad_samples"]) > 10:
        lines.append(f"  ... {len(result['bad_samples']) - 10} more bad samples in report.json")
    for note in result["notes"]:
        lines.append(f"  note: {note}")
    if result.get("report"):
        lines.append(f"  report: {result['report']['html']}")
    return lines


def render_html(result: dict) -> str:
    keys = _SET_FIGURES[result["task"]]
    head = "".join(f"<th>{k}</th><th>95% CI</th>" for k in keys) + "".join(
        f"<th>drop {k}</th><th>drop 95% CI</th>" for k in keys
    )
    body = []
    for f in result["files"]:
        figs = result["figures"].get(f["file"])
        if not figs:
            continue
        cells = "".join(
            f"<td>{_fmt(figs[k], k)}</td><td>[{_fmt(figs['ci95'][k][0], k)}, {_fmt(figs['ci95'][k][1], k)}]</td>"
            for k in keys
        )
        if "drop_vs_float32" in figs:
            cells += "".join(
                f"<td>{_fmt(figs['drop_vs_float32'][k], k)}</td><td>[{_fmt(figs['drop_ci95'][k][0], k)}, "
                f"{_fmt(figs['drop_ci95'][k][1], k)}]</td>"
                for k in keys
            )
        else:
            cells += f"<td colspan={2 * len(keys)}>reference</td>"
        role = f" <small>({escape(', '.join(f['roles']))})</small>" if f["roles"] else ""
        body.append(f"<tr><td>{escape(f['file'])}{role}</td><td>{escape(f['precision'])}</td>{cells}</tr>")
    parts = [
        f"<!doctype html><meta charset=utf-8><title>evaluate {escape(result['model_id'])}</title>",
        "<style>body{font:14px sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:3px 6px;text-align:right}td:first-child,th:first-child{text-align:left}</style>",
        f"<h1>{escape(result['model_id'])}: accuracy against ground truth</h1>",
        f"<p>{escape(result['dataset']['root'])} ({escape(result['dataset']['layout'])}): "
        f"{result['dataset']['evaluated']} images evaluated, {result['dataset']['bad']} bad. "
        "Percentages for mIoU, pixel accuracy, boundary F and &delta;1; SAD, gradient and connectivity errors in "
        "thousands. Drop = float32 minus the file (positive = worse), paired bootstrap over images "
        f"({result['settings']['bootstrap_resamples']} resamples).</p>",
        f"<table><tr><th>file</th><th>precision</th>{head}</tr>{''.join(body)}</table>",
    ]
    if result["task"] == "segmentation" and result["figures"]:
        classes = sorted({c for f in result["figures"].values() for c in f.get("per_class_iou", {})})
        rows = "".join(
            f"<tr><td>{escape(f['file'])}</td>"
            + "".join(f"<td>{_fmt(result['figures'][f['file']]['per_class_iou'].get(c), 'iou')}</td>" for c in classes)
            + "</tr>"
            for f in result["files"]
            if f["file"] in result["figures"]
        )
        parts.append(
            "<h2>IoU per class (%)</h2><table><tr><th>file</th>"
            + "".join(f"<th>{escape(c)}</th>" for c in classes)
            + f"</tr>{rows}</table>"
        )
    parts.append(_per_image_html(result))
    e = result["engine"]
    parts.append(
        f"<h2>Run</h2><p>engine {escape(str(e['engine']))}, {e.get('workers')} worker(s), {e['wall_s']} s "
        f"({e.get('images_per_s')} images/s), shard retries {e.get('retries', 0)}, peak memory per worker "
        f"{escape(str(sorted((e.get('peak_rss_mb') or {}).values())))} MB; kernels "
        f"{escape(result['settings']['kernels'])}; host {escape(result['host']['machine'])}"
        + (
            f"; depth aligned (scale and shift) in {escape(result['settings']['align'])} space"
            if result["settings"].get("align")
            else ""
        )
        + ".</p>"
    )
    if result["bad_samples"]:
        parts.append(
            "<h2>Bad samples (skipped, not counted)</h2><ul>"
            + "".join(f"<li>{escape(b['name'])}: {escape(b['reason'])}</li>" for b in result["bad_samples"])
            + "</ul>"
        )
    if result["notes"] or result["dataset"]["ignored"]:
        parts.append(
            "<h2>Notes</h2><ul>"
            + "".join(f"<li>{escape(n)}</li>" for n in result["notes"] + result["dataset"]["ignored"])
            + "</ul>"
        )
    return "\n".join(parts) + "\n"


_PER_IMAGE = {"segmentation": ("boundary_f", True), "matting": ("sad_k", False), "depth": ("delta1", True)}


def _per_image_html(result: dict, worst: int = 30) -> str:
    """Per-image figures of every file; on large sets only the `worst` images of the float32 file."""
    key, higher = _PER_IMAGE[result["task"]]
    rows = [r for r in result["per_image"] if "models" in r]
    if not rows:
        return ""
    files = [f["file"] for f in result["files"]]
    ref = files[0]
    shown = rows
    if len(rows) > worst:

        def badness(r):
            v = r["models"][ref].get(key)
            if v is None or not np.isfinite(v):
                return np.inf  # no figure (no boundary anywhere): last
            return v if higher else -v

        shown = sorted(rows, key=badness)[:worst]
    title = (
        f"Per image: {key}"
        if len(shown) == len(rows)
        else f"The {worst} worst images by {key} of {escape(ref)} (all {len(rows)} are in report.json)"
    )
    head = "".join(f"<th>{escape(f)}</th>" for f in files)
    body = "".join(
        f"<tr><td>{escape(r['name'])}</td>"
        + "".join(f"<td>{_fmt(r['models'][f].get(key), key)}</td>" for f in files)
        + "</tr>"
        for r in shown
    )
    return f"<h2>{title}</h2><table><tr><th>image</th>{head}</tr>{body}</table>"
