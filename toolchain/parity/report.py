"""Parity reports: JSON for machines and one static HTML page per model for people.

The HTML needs no server and no network: plots are matplotlib PNGs embedded as base64 data URIs,
styles are inline. Sections: verdict and metrics table (both kernel sets), kernel agreement,
per-layer chart and table, mixed-precision decision, image panels for the worst images (input,
float output, quantized output, disagreement map). Not for: computing figures (gate.py,
layers.py, mixed.py).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np


def _clean(obj):
    """NaN/inf -> None, numpy -> Python, Paths -> str, so the JSON is strict."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def write_json(result: dict, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean({k: v for k, v in result.items() if not k.startswith("_")}), indent=2))
    return path


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _plt():
    matplotlib.use("Agg")
    return plt


def layer_chart(layers: dict) -> str:
    """Two stacked plots over op order: SNR (dB) and share of the output error (%)."""
    plt = _plt()
    rows = layers["layers"]
    x = [r["order"] for r in rows]
    snr = [r["snr_db"] if math.isfinite(r["snr_db"]) else np.nan for r in rows]
    share = [100 * r["output_error_share"] for r in rows]
    fig, (a, b) = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True)
    a.plot(x, snr, marker=".", color="#1f77b4")
    a.set_ylabel("SNR vs float (dB)")
    a.grid(alpha=0.3)
    b.bar(x, share, color=["#d62728" if s >= 5 else "#ff7f0e" if s >= 1 else "#7f7f7f" for s in share])
    b.set_ylabel("share of output error (%)")
    b.set_xlabel("op index in the float model")
    b.grid(alpha=0.3)
    for r in sorted(rows, key=lambda r: -r["output_error_share"])[:3]:
        b.annotate(
            r["name"].split(";")[0][:24],
            (r["order"], 100 * r["output_error_share"]),
            fontsize=7,
            rotation=30,
            ha="left",
            va="bottom",
        )
    return _png(fig)


def _render(task: str, out: np.ndarray, palette: np.ndarray):
    """An output as an RGB image: label colours for segmentation, grey for masks and depth."""
    o = np.asarray(out)
    if task == "segmentation":
        labels = o if o.ndim == 2 else np.argmax(o, axis=-1)
        return palette[labels % len(palette)]
    o = o[..., 0] if o.ndim == 3 else o
    lo, hi = np.nanmin(o), np.nanmax(o)
    return (o - lo) / (hi - lo) if hi > lo else np.zeros_like(o, dtype=float)


def disagreement(task: str, ref: np.ndarray, out: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Where the quantized output differs: label mismatch (segmentation), mask flip (mask), else |diff|."""
    if task == "segmentation":
        rl = ref if ref.ndim == 2 else np.argmax(ref, axis=-1)
        ol = out if out.ndim == 2 else np.argmax(out, axis=-1)
        return (rl != ol).astype(float)
    r = ref[..., 0] if ref.ndim == 3 else ref
    o = out[..., 0] if out.ndim == 3 else out
    if task == "mask":
        return ((r > threshold) != (o > threshold)).astype(float)
    return np.abs(r.astype(np.float64) - o)


def image_panel(
    task: str, name: str, image: np.ndarray, ref: np.ndarray, out: np.ndarray, caption: str = "", threshold: float = 0.5
) -> str:
    plt = _plt()
    palette = (plt.get_cmap("tab20")(np.arange(21) % 20)[:, :3] * 255).astype(np.uint8)
    palette[0] = 0
    fig, ax = plt.subplots(1, 4, figsize=(12, 3.3))
    diff = disagreement(task, ref, out, threshold)
    panels = [
        (image, "input"),
        (_render(task, ref, palette), "float32"),
        (_render(task, out, palette), "int8"),
        (diff, f"disagreement ({100 * float(np.mean(diff > 0)):.2f}% of pixels)"),
    ]
    for a, (img, title) in zip(ax, panels):
        a.imshow(img, cmap="magma" if img is diff else "gray")
        a.set_title(title, fontsize=9)
        a.axis("off")
    fig.suptitle(f"{name}  {caption}", fontsize=10)
    return _png(fig)


_CSS = """body{font-family:system-ui,sans-serif;margin:24px;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;
text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}.pass{color:#1a7f37;font-weight:bold}
.fail{color:#c62828;font-weight:bold}img{max-width:100%}code{background:#f5f5f5;padding:1px 4px}"""


def _fmt(v) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (float, np.floating)):
        return "–" if not math.isfinite(v) else f"{v:.5g}"
    return html.escape(str(v))


def _scalars(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, (int, float, np.floating)) and not isinstance(v, bool)}


def _table(header: list[str], rows: list[list], left: int = 1) -> str:
    th = "".join(
        f"<th class='l'>{html.escape(h)}</th>" if i < left else f"<th>{html.escape(h)}</th>"
        for i, h in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(f"<td class='l'>{_fmt(c)}</td>" if i < left else f"<td>{_fmt(c)}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{th}</tr>{body}</table>"


def write_html(result: dict, path: Path, *, panels: Sequence[str] = (), max_layer_rows: int | None = None) -> Path:
    """The readable report. `panels`: data URIs from image_panel (worst images first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    p = result["parity"]
    verdict = "<span class='pass'>PASS</span>" if result["passed"] else "<span class='fail'>FAIL</span>"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>parity: {html.escape(result['model_id'])}"
        f"</title><style>{_CSS}</style></head><body>",
        f"<h1>Parity report: {html.escape(result['model_id'])}</h1>",
        f"<p>{html.escape(result['quant_file'])} vs {html.escape(result['float_file'])} "
        f"({html.escape(result['task'])}), {len(p['images'])} images ({html.escape(result['image_set'])}). "
        f"Verdict: {verdict}, judged on the <b>{html.escape(p['kernels'])}</b> kernels "
        "(both: XNNPACK, LiteRT's default CPU path, and the reference kernels, the contract a phone's "
        "NPU/GPU delegate is held to; the worse figure of the two).</p>",
    ]
    if p["failures"]:
        parts.append("<p class='fail'>" + "<br>".join(html.escape(f) for f in p["failures"]) + "</p>")
    # metrics table: figure, judged kernels, other kernels, budget
    other: tuple[str | None, dict] = next(iter(p.get("other_kernels", {}).items()), (None, {}))
    keys = list(_scalars(p))
    rows = []
    for k in keys:
        budget = " ".join(f"{'≥' if b.endswith('_min') else '≤'} {v}" for b, v in p["budgets"].items() if b[:-4] == k)
        rows.append([k, p[k], other[1].get(k, float("nan")), budget])
    parts.append("<h2>Metrics</h2>" + _table(["figure", p["kernels"], other[0] or "-", "budget"], rows))
    if "class_iou" in p and p["class_iou"]:
        parts.append(
            _table(
                ["class", "min IoU", "mean IoU", "images"],
                [[c, v["min"], v["mean"], v["images"]] for c, v in p["class_iou"].items()],
            )
        )
    ka = p.get("kernel_agreement", {})
    parts.append(
        "<h2>Kernel variants</h2><p>The same quantized model on XNNPACK and on the reference kernels "
        "(OpResolverType.BUILTIN_REF): "
        + ", ".join(f"{k} {_fmt(v)}" for k, v in ka.items())
        + f". Budgets were judged on <b>{html.escape(p['kernels'])}</b>.</p>"
    )
    gap = result.get("kernel_gap")
    if gap and gap.get("largest_gaps"):
        parts.append(
            "<h3>Per-op gap (XNNPACK vs reference)</h3><p>Every op output made a graph output and run "
            "on both kernel sets; SNR of XNNPACK against the reference kernels, and the drop each op "
            "adds over the worst of its inputs (quantize/kernel_gap.py).</p>"
            + _table(
                ["op #", "op", "SNR dB", "added dB", "max |diff| steps"],
                [[r["index"], r["op"], r["snr_db"], r["added_db"], r["max_abs_steps"]] for r in gap["largest_gaps"]],
            )
        )
    per_image = p.get("per_image", [])
    if per_image:
        cols = [k for k in per_image[0] if k != "image" and isinstance(per_image[0][k], (int, float))]
        parts.append(
            "<h3>Per image</h3>"
            + _table(["image"] + cols, [[r["image"]] + [r.get(c) for c in cols] for r in per_image])
        )
    layers = result.get("layers")
    if layers:
        parts.append(
            "<h2>Per layer</h2><p>Each op's output, float32 vs dequantized int8 (reference kernels), "
            f"pooled over the images. Matched {layers['matched']['name']} by name, "
            f"{layers['matched']['order']} by order; {layers['matched']['unmatched_float_ops']} float ops "
            "unmatched. RMSE/step is the error in quantization steps of that tensor. "
            f"Share of output error: {html.escape(layers['share_method'])}.</p>"
        )
        if result.get("_layer_chart"):
            parts.append(f"<img alt='per-layer chart' src='{result['_layer_chart']}'>")
        rows = layers["layers"]
        ranked = sorted(rows, key=lambda r: -r["output_error_share"])
        parts.append(
            "<h3>Culprits</h3>"
            + _table(
                ["layer", "op", "share %", "SNR dB", "RMSE/step"],
                [
                    [r["name"], r["op"], 100 * r["output_error_share"], r["snr_db"], r["rmse_over_scale"]]
                    for r in ranked[:10]
                ],
            )
        )
        shown = rows if max_layer_rows is None else rows[:max_layer_rows]
        parts.append(
            "<h3>Every layer</h3>"
            + _table(
                ["#", "layer", "op", "scale", "RMSE", "RMSE/step", "SNR dB", "cosine", "max abs", "share %"],
                [
                    [
                        r["order"],
                        r["name"],
                        r["op"],
                        r["scale"],
                        r["rmse"],
                        r["rmse_over_scale"],
                        r["snr_db"],
                        r["cosine"],
                        r["max_abs_error"],
                        100 * r["output_error_share"],
                    ]
                    for r in shown
                ],
                left=3,
            )
        )
    mixed = result.get("mixed_precision")
    if mixed:
        status = "<span class='pass'>met</span>" if mixed["met"] else "<span class='fail'>not met</span>"
        parts.append(
            f"<h2>Mixed precision</h2><p>Budget {status}: {html.escape(mixed['message'])}. "
            f"{mixed['conversions']} candidates tried in {mixed['search_seconds']} s.</p>"
        )
        figs = [k for k in _scalars(mixed["before"]["figures"])]
        parts.append(
            _table(
                ["figure", "plain int8", "chosen", "ceiling (all float)"],
                [
                    [
                        k,
                        mixed["before"]["figures"][k],
                        mixed["after"]["figures"].get(k),
                        mixed["ceiling"]["figures"].get(k),
                    ]
                    for k in figs
                ],
            )
        )
        c = mixed.get("costs")
        if c:
            parts.append(
                f"<p>Cost: latency {c['latency_ms']['int8']} → {c['latency_ms']['mixed']} ms "
                f"(×{c['latency_ratio']}), size {c['bytes']['int8']} → {c['bytes']['mixed']} bytes "
                f"(×{c['size_ratio']}); {html.escape(c['measured_with'])}.</p>"
            )
        if mixed["float_layers"]:
            parts.append(
                "<p>Layers kept float:</p><ul>"
                + "".join(f"<li><code>{html.escape(n)}</code></li>" for n in mixed["float_layers"])
                + "</ul>"
            )
    if panels:
        parts.append("<h2>Worst images</h2>" + "".join(f"<p><img alt='panel' src='{u}'></p>" for u in panels))
    parts.append("</body></html>")
    path.write_text("\n".join(parts))
    return path


# ---- one-line summaries (the CLI and `portrait parity`) -------------------------------------------


def summarize_parity(p: dict) -> str:
    keys = [
        k
        for k in (
            "pixel_agreement",
            "worst_class_iou",
            "edge_band_agreement",
            "delta1",
            "abs_rel",
            "blur_mean_px",
            "blur_p99_px",
            "iou",
            "mean_abs_diff",
        )
        if k in p
    ]
    parts = [f"{k} {p[k]:.4f}" for k in keys if p[k] is not None and not (isinstance(p[k], float) and math.isnan(p[k]))]
    ka = p.get("kernel_agreement", {})
    parts.append(f"[{p['kernels']} kernels; xnnpack vs reference: " + format_figures(ka) + "]")
    sets = [(f"{n} bound", s.get("bound")) for n, s in (p.get("sets") or {}).items()]
    for name, b in [("bound", p.get("bound"))] + sets:  # the output-grid bound next to the figures (bound.py)
        if b:
            parts.append(
                f"[{name}: "
                + ", ".join(
                    f"{k} {v:.4f}"
                    for k, v in b["figures"].items()
                    if k in b["relative_to_bound"] and isinstance(v, float)
                )
                + "]"
            )
    parts.append("PASS" if p["passed"] else "FAIL: " + "; ".join(p["failures"]))
    if p.get("reported_failures"):
        parts.append("NOT MET (reported, not gating): " + "; ".join(p["reported_failures"]))
    return ", ".join(parts)


def summarize_ladder(
    rows: list[dict], handoff: str | None, handoff_cpu: str | None, handoff_gpu: str | None = None
) -> list[str]:
    """One line per rung tried (figures: worse of both kernel sets), then the two handoffs."""
    lines = []
    for r in rows or []:
        if r.get("error"):
            lines.append(f"{r['rung']:>12}: not built: {r['error'][:160]}")
            continue
        w = r.get("worse_of_both") or {}
        figs = ", ".join(
            f"{k} {w[k]:.4f}"
            for k in (
                "pixel_agreement",
                "worst_class_iou",
                "iou",
                "mean_abs_diff",
                "delta1",
                "abs_rel",
                "blur_mean_px",
                "blur_p99_px",
            )
            if isinstance(w.get(k), float)
        )
        lines.append(
            f"{r['rung']:>12}: {'MET' if r['met'] else 'missed'} ({r.get('label')}; {figs}; "
            f"{r.get('float_ops')} float / {r.get('int16_ops')} int16 ops; {r.get('seconds')} s)"
        )
    lines.append(f"{'handoff':>12}: {handoff}")
    lines.append(f"{'handoff_cpu':>12}: {handoff_cpu}")
    lines.append(f"{'handoff_gpu':>12}: {handoff_gpu}")
    return lines


def format_figures(d: dict) -> str:
    """`key value, ...` for the scalar entries of a figures dict."""
    return ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in d.items() if not isinstance(v, dict)
    )
