"""Quality of the fused stage against exact ground truth, and photo panels for a person to look at.

Run: python -m experiments.render_quality [BUNDLE ...] [--synthetic] [--device] [--depth-model ID] [--json F]
prints, per photo with a reference alpha and per synthetic scene, IoU, band accuracy, SAD, spill, holes
and ghosts for the stage before matting (guided), matting, and matting with depth (monocular on the
photos, registered ToF on the scenes), golden and, with --device, the fixed-point path.

`evaluate()` renders synthetic scenes (toolchain.scenes) four ways and compares each with the truth:
- truth: the golden stage fed the true alpha and the true depth (all else equal);
- ours, mask only: golden stage from a simulated 257x257 model output (model_output.simulate_model_output);
- ours, with ToF: the same plus ToF depth (toolchain.depth: simulate_tof_frame + register_depth);
- notebook: baseline.notebook_render from the same model output.
Figures: composite PSNR (dB) / SSIM over the frame and inside a band around the true edge; alpha SAD
(sum |error| / 1000), MSE and gradient error inside the band.

`write_panels(out_dir)` writes input | mask | notebook | ours for every photo in the data folder.
Not here: the stage itself (golden.py, device.py) or timings (bench.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from skimage.metrics import structural_similarity

from toolchain.depth.registration import register_depth
from toolchain.depth.tof import simulate_tof_frame
from toolchain.evaluate import truth_metrics as metrics
from toolchain.images import load_rgb
from toolchain.paths import list_photos, photos_dir
from toolchain.render import golden
from toolchain.render.api import render
from toolchain.render.baseline import notebook_render
from toolchain.render.model_output import simulate_model_output
from toolchain.render.photo import monocular_depth, resolve_bundle, run_segmentation, segmentation_file
from toolchain.render.plan import make_plan, prepare_frame
from toolchain.scenes import generate_scene

BAND_PX = 8  # half-width of the band around the true edge, pixels at 640x480


# ------------------------------------------------------------------------------------------ metrics


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    d = a.astype(np.float64) - b.astype(np.float64)
    if mask is not None:
        d = d[mask]
    mse = float(np.mean(d * d)) if d.size else 0.0
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    _, smap = structural_similarity(a, b, channel_axis=2, data_range=255, full=True)
    smap = smap.mean(axis=2)
    return float(smap[mask].mean() if mask is not None else smap.mean())


def edge_band(alpha_true: np.ndarray, radius: int = BAND_PX, *, soft: bool = True) -> np.ndarray:
    """Pixels within `radius` of the true outline: the 0.5 contour, and with `soft` every soft-alpha
    pixel (0.02 < alpha < 0.98) too."""
    a = alpha_true
    hard = (a > 0.5).astype(np.uint8)
    seeds = cv2.morphologyEx(hard, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    if soft:
        seeds |= (a > 0.02) & (a < 0.98)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(seeds.astype(np.uint8), k) > 0


def alpha_errors(alpha: np.ndarray, alpha_true: np.ndarray, band: np.ndarray) -> dict:
    d = (alpha.astype(np.float64) - alpha_true)[band]
    g = [cv2.GaussianBlur(x.astype(np.float32), (0, 0), 1.4) for x in (alpha, alpha_true)]
    grads = [np.hypot(cv2.Sobel(x, cv2.CV_32F, 1, 0), cv2.Sobel(x, cv2.CV_32F, 0, 1)) for x in g]
    gd = (grads[0] - grads[1])[band].astype(np.float64)
    return {
        "sad_k": float(np.abs(d).sum() / 1000),
        "mse": float(np.mean(d * d)),
        "grad_k": float((gd * gd).sum() / 1000),
    }


# ------------------------------------------------------------------------------------------ truth


def render_truth(image, alpha_true, depth_m, focus_m: float, max_blur_px: float) -> np.ndarray:
    """The golden stage with the true matte (full res and area-averaged to the grid) and true depth."""
    spec = {"kind": "probabilities"}
    frame = prepare_frame(image, alpha_true[::8, ::8], spec, depth_m=depth_m, focus_m=focus_m, max_blur_px=max_blur_px)
    plan = make_plan(image.shape[0], image.shape[1], frame.low_res.shape[:2], frame.max_blur_px)
    work = golden.working_image(frame, plan)
    a = golden.pad_to_plan(alpha_true.astype(np.float32), plan)
    alpha_w = a if plan.scale == 1 else cv2.resize(a, (plan.work_w, plan.work_h), interpolation=cv2.INTER_AREA)
    coc, conf = golden.circle_of_confusion(frame, plan)
    return golden.composite(frame, plan, work, alpha_true.astype(np.float32), alpha_w, coc, conf)["composite"]


def tof_depth(scene, seed: int):
    """Registered ToF depth for a scene: (depth_m with NaN holes, confidence, source description)."""
    f = simulate_tof_frame(scene, "tof_240x180", seed=seed)
    d, c, _ = register_depth(f.range_mm, f.confidence, f.intrinsics, scene.K, f.extrinsics, scene.rgb)
    return d, c, "toolchain.depth: simulate_tof_frame(tof_240x180) + register_depth"


def _default_scene_fn():
    return generate_scene


def evaluate(
    seeds=(0, 1, 2, 3),
    kinds=("person", "cat"),
    size=(480, 640),
    scene_fn=None,
    f_number: float | None = None,
    implementation: str = "golden",
) -> dict:
    """Quality figures per scene and their mean. Returns a dict (JSON-friendly)."""
    scene_fn = scene_fn or _default_scene_fn()
    rows = []
    depth_source = None
    for kind in kinds:
        for seed in seeds:
            sc = scene_fn(seed, kind=kind, size=size)
            img, at = sc.rgb, sc.alpha.astype(np.float32)
            label_id = 8 if sc.label == "cat" else 15
            low, spec = simulate_model_output(at, seed=seed, label_id=label_id)
            frame = prepare_frame(img, low, spec, f_number=f_number)
            truth = render_truth(img, at, sc.depth_m, sc.subject_depth_m, frame.max_blur_px)
            band = edge_band(at)
            outs = {
                "notebook": notebook_render(img, low, spec),
                "mask_only": render(img, low, spec, f_number=f_number, implementation=implementation),
            }
            d, c, depth_source = tof_depth(sc, seed)
            outs["with_tof"] = render(
                img,
                low,
                spec,
                depth_m=d,
                confidence=c,
                focus_m=sc.subject_depth_m,
                f_number=f_number,
                implementation=implementation,
            )
            row = {"kind": kind, "seed": seed}
            for name, o in outs.items():
                comp = o["composite"] if isinstance(o, dict) else o.composite
                alpha = o["alpha"] if isinstance(o, dict) else o.alpha
                row[name] = {
                    "psnr_db": psnr(comp, truth),
                    "psnr_band_db": psnr(comp, truth, band),
                    "ssim": ssim(comp, truth),
                    "ssim_band": ssim(comp, truth, band),
                    **alpha_errors(alpha, at, band),
                }
            rows.append(row)
    mean = {}
    for name in ("notebook", "mask_only", "with_tof"):
        keys = rows[0][name].keys()
        mean[name] = {k: float(np.mean([r[name][k] for r in rows])) for k in keys}
    summary = {}
    for name in ("mask_only", "with_tof"):
        summary[name] = {
            "band_psnr_gain_db": mean[name]["psnr_band_db"] - mean["notebook"]["psnr_band_db"],
            "alpha_mse_ratio": mean["notebook"]["mse"] / max(mean[name]["mse"], 1e-12),
            "min_band_psnr_gain_db": float(min(r[name]["psnr_band_db"] - r["notebook"]["psnr_band_db"] for r in rows)),
            "min_alpha_mse_ratio": float(min(r["notebook"]["mse"] / max(r[name]["mse"], 1e-12) for r in rows)),
        }
    return {
        "scenes": rows,
        "mean": mean,
        "vs_notebook": summary,
        "depth_source": depth_source,
        "size": list(size),
        "implementation": implementation,
    }


# ------------------------------------------------------------------------------------------ panels


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def photo_mask(photo: Path) -> tuple[np.ndarray, dict, str]:
    """Stand-in model output for a photo: its matte (`*_alpha_pred.png`) area-downsampled to 257x257."""
    matte = photo.with_name(photo.stem + "_alpha_pred.png")
    if not matte.is_file():
        return None, None, "no matte"
    a = cv2.imread(str(matte), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    p = cv2.resize(a, (257, 257), interpolation=cv2.INTER_AREA)
    return p, {"kind": "probabilities", "dtype": "float32"}, "mask: matte (P3M/GFM) at 257x257, no model"


def write_panels(out_dir, photos=None, height: int = 360, implementation: str = "golden", bundle=None) -> list[Path]:
    """input | mask | notebook | ours, one PNG per photo. The mask comes from the bundle's segmentation
    model when `bundle` is given (every photo), else from the photo's matte (photos with one)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = list_photos(photos_dir()) if photos is None else photos
    written = []
    for ph in photos:
        if bundle is not None:
            opened = resolve_bundle(Path(bundle))
            img = load_rgb(ph)
            low, spec = run_segmentation(opened, img)
            source = f"mask: {segmentation_file(opened.manifest)}"
        else:
            low, spec, source = photo_mask(Path(ph))
            if low is None:
                continue
            img = load_rgb(ph)
        base = notebook_render(img, low, spec)["composite"]
        ours = render(img, low, spec, implementation=implementation)
        mask = (np.clip(ours.alpha, 0, 1) * 255).astype(np.uint8)
        w = round(img.shape[1] * height / img.shape[0])
        tiles = [img, np.dstack([mask] * 3), base, ours.composite]
        names = [f"input {Path(ph).name}", "alpha (ours); " + source, "notebook baseline", f"ours ({implementation})"]
        tiles = [_label(cv2.resize(t, (w, height), interpolation=cv2.INTER_AREA), n) for t, n in zip(tiles, names)]
        panel = np.concatenate(tiles, axis=1)
        path = out_dir / f"{Path(ph).stem}_panel.png"
        cv2.imwrite(str(path), cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
        written.append(path)
    return written


# ------------------------------------------------------------------------------------------ edges (issue 12)

EDGE_BAND_PX = 15  # band around the reference outline for edge figures, full-resolution pixels
INSIDE_ALPHA = 0.98  # "inside the subject" for spill: the true composite there is the true foreground


def edge_figures(
    alpha: np.ndarray,
    alpha_ref: np.ndarray,
    chroma: np.ndarray | None = None,
    foreground_ref: np.ndarray | None = None,
    radius: int = EDGE_BAND_PX,
) -> dict:
    """Edge figures of one alpha against a reference alpha (both HxW in [0, 1], full resolution).

    band_acc: share of pixels within `radius` px of the reference outline where alpha > 0.5 agrees
      with the reference; band_mae: mean |alpha - ref| there; sad_k: sum |alpha - ref| over the frame
      / 1000; iou: of the two 0.5 masks.
    holes / ghosts (toolchain.evaluate.truth_metrics): share of the reference's deep interior (> 20 px inside)
      where alpha < 0.9, and of its deep exterior where alpha > 0.1.
    spill (with `chroma`, the chroma-key composite, and `foreground_ref`, the true foreground
      colours): mean RGB distance (8-bit levels) between the composite and the true foreground over
      band pixels inside the subject (ref alpha >= INSIDE_ALPHA), where the ideal composite *is* the
      foreground: background colour left in hair and key colour showing through the subject count.
    """
    a, r = alpha.astype(np.float64), alpha_ref.astype(np.float64)
    band = edge_band(alpha_ref, radius, soft=False)  # the 0.5 outline only
    ha, hr = a > 0.5, r > 0.5
    out = {
        "band_acc": float((ha == hr)[band].mean()),
        "band_mae": float(np.abs(a - r)[band].mean()),
        "sad_k": float(np.abs(a - r).sum() / 1000),
        "iou": float((ha & hr).sum() / max((ha | hr).sum(), 1)),
        "holes": metrics.holes(alpha_ref, alpha),
        "ghosts": metrics.ghosts(alpha_ref, alpha),
        "band_px": int(band.sum()),
    }
    if chroma is not None and foreground_ref is not None:
        inside = band & (r >= INSIDE_ALPHA)
        d = chroma.astype(np.float64) - foreground_ref.astype(np.float64)
        out["spill"] = float(np.sqrt((d * d).sum(axis=2))[inside].mean()) if inside.any() else float("nan")
    return out


def compare_edges(
    image,
    low,
    spec,
    alpha_ref,
    foreground_ref=None,
    depth_m=None,
    confidence=None,
    implementations=("golden",),
    depth_source: str = "sensor",
) -> dict:
    """Today's fused stage (edges="guided") against matting (edges="matting") on one frame, both
    without depth; with depth given, also matting with it ("matting+depth"):
    {"guided": figures, "matting": figures, ("matting+depth": ...), ("device_matting": ...)}.
    foreground_ref defaults to the photo (exact where the reference alpha is ~1, which is where spill
    is measured)."""
    fref = image if foreground_ref is None else foreground_ref
    rows = {}
    variants = [("guided", None), ("matting", None)] + ([("matting+depth", depth_m)] if depth_m is not None else [])
    for impl in implementations:
        for name, d in variants:
            if impl != "golden" and name == "guided":
                continue
            res = render(
                image,
                low,
                spec,
                depth_m=d,
                confidence=None if d is None else confidence,
                mode="chroma",
                edges=name.split("+")[0],
                implementation=impl,
                depth_source=depth_source,
            )
            rows[name if impl == "golden" else f"{impl}_{name}"] = edge_figures(
                res.alpha, alpha_ref, res.composite, fref
            )
    return rows


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else float("inf")


def summarize_edges(rows: list[dict], new: str = "matting", old: str = "guided") -> dict:
    """Targets of issue 12 over a list of compare_edges rows (each also has a "name")."""
    rows = [r for r in rows if new in r and old in r]
    mean = {k: {m: float(np.mean([r[k][m] for r in rows])) for m in rows[0][k]} for k in (old, new)}
    return {
        "mean": mean,
        "band_acc_gain": mean[new]["band_acc"] - mean[old]["band_acc"],
        "sad_ratio": _ratio(mean[old]["sad_k"], mean[new]["sad_k"]),
        "spill_ratio": _ratio(mean[old].get("spill", np.nan), mean[new].get("spill", np.nan)),
        "worse": [
            r["name"]
            for r in rows
            if r[new]["band_acc"] < r[old]["band_acc"] - 1e-9 or r[new]["sad_k"] > r[old]["sad_k"] + 1e-9
        ],
    }


def synthetic_edges(
    seeds=(0, 1, 2, 3), kinds=("person", "cat"), size=(480, 640), with_depth: bool = True, implementations=("golden",)
) -> list[dict]:
    """compare_edges on the synthetic scenes (exact alpha) from a simulated 257x257 model output;
    with_depth adds matting with the registered ToF depth."""
    rows = []
    for kind in kinds:
        for seed in seeds:
            sc = generate_scene(seed, kind=kind, size=size)
            low, spec = simulate_model_output(sc.alpha, seed=seed, label_id=8 if sc.label == "cat" else 15)
            d = c = None
            if with_depth:
                d, c, _ = tof_depth(sc, seed)
            r = compare_edges(sc.rgb, low, spec, sc.alpha, depth_m=d, confidence=c, implementations=implementations)
            r["name"] = f"{kind}_{seed}"
            rows.append(r)
    return rows


def photo_edges(bundle, photos=None, implementations=("golden",), depth_model=None) -> list[dict]:
    """compare_edges on every photo with a reference alpha (`*_alpha_pred.png`), mask from `bundle`'s
    segmentation model; with `depth_model` (a depth bundle) also matting with its monocular depth."""
    photos = list_photos(photos_dir()) if photos is None else photos
    rows = []
    for ph in photos:
        ph = Path(ph)
        ref_path = ph.with_name(ph.stem + "_alpha_pred.png")
        if not ref_path.is_file():
            continue
        img = load_rgb(ph)
        ref = cv2.imread(str(ref_path), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
        if ref.shape != img.shape[:2]:
            ref = cv2.resize(ref, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
        low, spec = run_segmentation(Path(bundle), img)
        d = None if depth_model is None else monocular_depth(depth_model, img)[0]
        r = compare_edges(img, low, spec, ref, depth_m=d, implementations=implementations, depth_source="monocular")
        r["name"] = f"{ph.stem} ({Path(bundle).name})"
        rows.append(r)
    return rows


def main(argv=None) -> int:
    """python -m experiments.render_quality [--synthetic] [--depth-model ID] [BUNDLE ...]: edge figures,
    today's stage (guided) against matting, and matting with depth, per photo with a reference alpha
    (mask from each bundle; a person model is judged on people only) and on the synthetic scenes."""
    ap = argparse.ArgumentParser(prog="python -m experiments.render_quality", description=main.__doc__.split(":")[0])
    ap.add_argument("bundles", nargs="*", help="segmentation bundle folders or model ids")
    ap.add_argument("--synthetic", action="store_true", help="also the synthetic scenes (exact alpha, ToF depth)")
    ap.add_argument("--device", action="store_true", help="also the device (fixed-point) path")
    ap.add_argument("--depth-model", default=None, help="depth bundle: photos also get matting with its depth")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    impl = ("golden", "device") if args.device else ("golden",)
    report = {}
    groups = []
    for b in args.bundles:
        bundle = resolve_bundle(b).root
        person_only = "selfie" in bundle.name
        rows = [
            r
            for r in photo_edges(bundle, implementations=impl, depth_model=args.depth_model)
            if r["guided"]["iou"] > 0.5 and (not person_only or r["name"].startswith("person"))
        ]
        groups.append((f"photos, {bundle.name}", rows))
    if args.synthetic:
        groups.append(("synthetic scenes", synthetic_edges(implementations=impl)))
    for title, rows in groups:
        if not rows:
            print(f"{title}: no frame")
            continue
        s = summarize_edges(rows)
        print(f"{title}:  (iou, band accuracy, SAD/1000, spill levels, holes %, ghosts %)")
        for r in rows:
            print(f"  {r['name']}")
            for k in r:
                if k == "name":
                    continue
                f = r[k]
                print(
                    f"    {k:22} iou {f['iou']:.4f} acc {f['band_acc']:.4f} sad {f['sad_k']:7.2f} "
                    f"spill {f.get('spill', float('nan')):6.2f} holes {100 * f['holes']:.3f} "
                    f"ghosts {100 * f['ghosts']:.3f}"
                )
        print(
            f"  => band accuracy {s['band_acc_gain']:+.3f} (target >= +0.08), SAD {s['sad_ratio']:.2f}x lower "
            f"(target 2x), spill {s['spill_ratio']:.2f}x lower (target 2x), worse: {', '.join(s['worse']) or 'none'}"
        )
        if args.device:
            d = summarize_edges(rows, new="device_matting", old="matting")
            print(
                f"  => device (fixed-point stand-in) vs golden matting: band accuracy {d['band_acc_gain']:+.3f}, "
                f"its SAD {1 / d['sad_ratio']:.2f}x golden's, its spill {1 / d['spill_ratio']:.2f}x golden's"
            )
        report[title] = {"rows": rows, "summary": s}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
