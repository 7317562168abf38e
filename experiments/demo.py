"""`make demo`: the study's demo done properly, as one self-contained static HTML gallery.

For at least three portraits (people and a cat) from the data folder's photos, or scikit-image's
bundled photos when there is none: the notebook's result (baseline.py) beside ours for blur, chroma
key and background replacement, and 100 % crops where the edge is hardest (hair, whiskers, tails:
the windows with the most soft alpha), plus figures against the reference alphas
(`*_alpha_pred.png`) and against the synthetic scenes' exact alpha (quality.py). Every image is
embedded (data: URIs), so `export/demo/index.html` opens anywhere without a server.

Depth: for each photo with its own depth (depth_photos/), the depth map and the alpha without and with
depth side by side; for the others the monocular depth model's map (--depth-model) and the alpha with
it; a 100 % crop wherever holes or ghosts (evaluate.truth_metrics) were found against a reference alpha.

Usage: python -m experiments.demo [--out export/demo] [--bundle DIR] [--quick] [--depth-model ID]
Not here: the stage (golden.py, matting.py) or its figures' definitions (quality.py).
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import skimage.data as d

from experiments.render_quality import compare_edges, summarize_edges, synthetic_edges
from toolchain import paths
from toolchain.depth.readers import read_depth_photo
from toolchain.errors import BundleError, PortraitError
from toolchain.evaluate import truth_metrics as metrics
from toolchain.export import export_model
from toolchain.images import load_rgb
from toolchain.render.api import render
from toolchain.render.baseline import notebook_mask, notebook_render
from toolchain.render.photo import (
    inverse_depth_png,
    monocular_depth,
    read_depth,
    resolve_bundle,
    run_segmentation,
    segmentation_file,
)
from toolchain.render.plan import fit_background

DEMO_PHOTOS = ("person_01", "person_02", "cat_01", "leopard_01", "person_03", "cat_03")
SEGMENTER = "deeplabv3_mnv2_pascal_257"
DEPTH_SEGMENTER = "selfie_segmenter"  # the photos with their own depth are of people and objects
DEPTH_MODEL = "pydnet_pp_mobile"  # monocular depth for the photos without
CROP_PX = 192  # crops are cut at 100 % (one photo pixel = one screen pixel)
VIEW_LONG_SIDE = 640  # whole-frame views are scaled to this long side
MIN_SOFT = 0.05


def _data_uri(rgb: np.ndarray, fmt: str = ".jpg") -> str:
    img = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, 88] if fmt == ".jpg" else []
    ok, buf = cv2.imencode(fmt, img, params)
    if not ok:
        raise PortraitError(f"cannot encode a {fmt} image for the gallery", fix="check OpenCV's codecs")
    mime = "image/jpeg" if fmt == ".jpg" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.tobytes()).decode()}"


def _view(rgb: np.ndarray) -> np.ndarray:
    f = VIEW_LONG_SIDE / max(rgb.shape[:2])
    if f >= 1:
        return rgb
    return cv2.resize(rgb, (round(rgb.shape[1] * f), round(rgb.shape[0] * f)), interpolation=cv2.INTER_AREA)


def crop_windows(alpha: np.ndarray, n: int = 2, size: int = CROP_PX) -> list[tuple[int, int]]:
    """Top-left corners of the `n` size x size windows with the most soft alpha (non-overlapping)."""
    h, w = alpha.shape
    size = min(size, h, w)
    soft = ((alpha > MIN_SOFT) & (alpha < 1 - MIN_SOFT)).astype(np.float32)
    score = cv2.boxFilter(soft, -1, (size, size), normalize=False, borderType=cv2.BORDER_CONSTANT)
    half = size // 2
    score[:half, :] = score[h - (size - half) + 1 :, :] = -1
    score[:, :half] = score[:, w - (size - half) + 1 :] = -1
    out = []
    for _ in range(n):
        y, x = np.unravel_index(int(np.argmax(score)), score.shape)
        if score[y, x] < 0:
            break
        y0, x0 = int(np.clip(y - half, 0, h - size)), int(np.clip(x - half, 0, w - size))
        out.append((y0, x0))
        score[max(0, y0 - half) : y0 + size + half, max(0, x0 - half) : x0 + size + half] = -1
    return out


def notebook_composite(image, low, spec, mode: str, background=None, chroma=(0, 255, 0)) -> np.ndarray:
    """The notebook's hard mask used for chroma key / replacement (it only did blur itself)."""
    if mode == "blur":
        return notebook_render(image, low, spec)["composite"]
    h, w = image.shape[:2]
    m = cv2.resize(notebook_mask(low, spec).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    bg = np.empty_like(image)
    bg[:] = chroma if mode == "chroma" else background
    return np.where(m[..., None], image, bg)


def demo_photos() -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(name, RGB, reference alpha or None) for the demo: shared photos, else scikit-image's."""
    folder = paths.photos_dir()
    out = []
    if folder is not None:
        for stem in DEMO_PHOTOS:
            hits = [p for p in paths.list_photos(folder) if p.stem == stem]
            if not hits:
                continue
            img = load_rgb(hits[0])
            ref_path = hits[0].with_name(stem + "_alpha_pred.png")
            ref = None
            if ref_path.is_file():
                ref = cv2.imread(str(ref_path), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
                if ref.shape != img.shape[:2]:
                    ref = cv2.resize(ref, (img.shape[1], img.shape[0]))
            out.append((stem, img, ref))
    if len(out) < 3:
        for name in ("astronaut", "chelsea", "camera"):
            img = getattr(d, name)()
            img = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]
            out.append((f"skimage_{name}", np.ascontiguousarray(img), None))
    return out


def demo_background(height: int, width: int) -> np.ndarray:
    return fit_background(np.ascontiguousarray(d.coffee()[..., :3]), height, width)


def find_segmenter(bundle: str | Path | None, work: Path) -> Path:
    """The bundle to segment with: given, in the output folder, or exported once into `work`."""
    for cand in ([bundle] if bundle else []) + [SEGMENTER, work / SEGMENTER]:
        try:
            return resolve_bundle(cand).root
        except BundleError:
            raise  # there, but damaged: say so rather than export another
        except PortraitError:
            continue
    print(f"demo: no {SEGMENTER} bundle; exporting one into {work} (a few minutes)", file=sys.stderr)
    return export_model(SEGMENTER, out_root=work, quiet=True).bundle


def _fig_table(rows: list[dict], title: str) -> str:
    if not rows:
        return f"<h3>{html.escape(title)}</h3><p>none</p>"
    s = summarize_edges(rows)
    keys = ("band_acc", "band_mae", "sad_k", "iou", "spill", "holes", "ghosts")
    variants = [v for v in ("guided", "matting", "matting+depth") if any(v in r for r in rows)]
    label = {"guided": "today", "matting": "matting", "matting+depth": "with depth"}
    head = "".join(f"<th>{k} ({label[v]})</th>" for k in keys for v in variants)

    def cell(r, v, k):
        x = r.get(v, {}).get(k, float("nan"))
        return f"<td>{100 * x:.3f} %</td>" if k in ("holes", "ghosts") else f"<td>{x:.3f}</td>"

    body = []
    for r in rows:
        cells = "".join(cell(r, v, k) for k in keys for v in variants)
        body.append(f"<tr><td>{html.escape(r['name'])}</td>{cells}</tr>")
    verdict = (
        f"band accuracy {s['band_acc_gain']:+.3f} (target >= +0.08), SAD {s['sad_ratio']:.2f}x lower "
        f"(target 2x), spill {s['spill_ratio']:.2f}x lower (target 2x), worse: {', '.join(s['worse']) or 'none'}"
    )
    return (
        f"<h3>{html.escape(title)}</h3><p>{html.escape(verdict)}</p><table><tr><th>frame</th>{head}</tr>"
        + "".join(body)
        + "</table>"
    )


CSS = """body{font-family:sans-serif;margin:16px;background:#fafafa;color:#222}
figure{display:inline-block;margin:4px;vertical-align:top}figcaption{font-size:12px}
img{display:block;image-rendering:auto}table{border-collapse:collapse;font-size:12px;margin-bottom:12px}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}.crop img{image-rendering:pixelated}"""

# Self-check a browser runs on load (the gallery test reads it): every image decoded (the load event
# waits for all images), else console.error.
CHECK_JS = """window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var n = imgs.filter(function (im) { return im.complete && im.naturalWidth > 0; }).length;
  document.title = 'decoded ' + n + '/' + imgs.length;
  document.body.setAttribute('data-decoded', n + '/' + imgs.length);
  if (n !== imgs.length) { console.error('images that did not decode: ' + (imgs.length - n)); }
});"""


def _grey(a: np.ndarray) -> np.ndarray:
    return np.dstack([np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)] * 3)


def _figures_html(figs) -> str:
    return "".join(
        f'<figure><img src="{_data_uri(_view(t))}" width="{_view(t).shape[1]}" height="{_view(t).shape[0]}" '
        f'alt="{html.escape(n)}"><figcaption>{html.escape(n)}</figcaption></figure>'
        for n, t in figs
    )


def _crop_html(caption: str, tiles, y: int, x: int) -> str:
    sl = (slice(y, y + CROP_PX), slice(x, x + CROP_PX))
    return f"<p>{html.escape(caption)} at 100 %, x {x}..{x + CROP_PX}, y {y}..{y + CROP_PX}</p>" + "".join(
        f'<figure class="crop"><img src="{_data_uri(t[sl], ".png")}" width="{t[sl].shape[1]}" '
        f'height="{t[sl].shape[0]}" alt="{html.escape(n)}"><figcaption>{html.escape(n)}</figcaption></figure>'
        for n, t in tiles
    )


def defect_crops(alpha: np.ndarray, ref: np.ndarray, tiles, label: str) -> list[str]:
    """100 % crops where `alpha` has holes or ghosts against `ref` (evaluate.truth_metrics), one per kind found."""
    out = []
    for kind, fn in (("holes", metrics.hole_pixels), ("ghosts", metrics.ghost_pixels)):
        _, bad = fn(ref, alpha)
        if bad.any():
            for y, x in crop_windows(np.where(bad, 0.5, 0).astype(np.float32), n=1):
                out.append(_crop_html(f"{label}: {kind} ({int(bad.sum())} px in the frame)", tiles, y, x))
    return out


def optional_bundle(name: str | Path | None) -> Path | None:
    """A bundle folder or model id if it resolves, else None (the demo shows what it has)."""
    if name is None:
        return None
    try:
        return resolve_bundle(name).root
    except BundleError:
        raise  # there, but damaged: say so rather than leave it out
    except PortraitError:
        return None


def depth_photo_sections(seg: Path, quick: bool = False) -> list[str]:
    """For each photo with its own depth (depth_photos/ in the data folder): the depth map, the alpha
    without and with depth side by side, the composite with depth, and a 100 % crop where the two
    alphas differ most (these photos have no reference alpha)."""
    folder = paths.depth_photos_dir()
    if folder is None or quick:
        return []
    out = []
    for ph in sorted(folder.glob("*.jpg")):
        try:
            img = read_depth_photo(ph).image
            depth, conf = read_depth(ph)
        except PortraitError as exc:
            out.append(f"<h2>{html.escape(ph.name)}</h2><p>not read: {html.escape(str(exc))}</p>")
            continue
        low, spec = run_segmentation(seg, img)
        without = render(img, low, spec, mode="chroma")
        with_d = render(img, low, spec, depth_m=depth, confidence=conf, mode="chroma")
        inv = inverse_depth_png(depth, *img.shape[:2])
        d8 = np.dstack([(inv >> 8).astype(np.uint8)] * 3)
        figs = [
            ("photo", img),
            ("its depth (inverse, nearer brighter)", d8),
            ("alpha without depth", _grey(without.alpha)),
            ("alpha with depth", _grey(with_d.alpha)),
            ("chroma without depth", without.composite),
            ("chroma with depth", with_d.composite),
        ]
        diff = np.abs(with_d.alpha - without.alpha)
        crops = ""
        if float(diff.max()) > 0.1:
            ((y, x),) = crop_windows(np.where(diff > 0.1, 0.5, 0).astype(np.float32), n=1)
            crops = _crop_html(
                "where depth changed the alpha most",
                [(n, t) for n, t in figs if n != "its depth (inverse, nearer brighter)"] + [figs[1]],
                y,
                x,
            )
        out.append(
            f"<h2>{html.escape(ph.name)} ({img.shape[1]}x{img.shape[0]}, mask: {html.escape(seg.name)}, "
            f"depth: {depth.shape[1]}x{depth.shape[0]})</h2>"
            f"<p>largest alpha change from depth {float(diff.max()):.2f}; pixels changed by more than 0.1: "
            f"{100 * float((diff > 0.1).mean()):.2f} %</p>" + _figures_html(figs) + crops
        )
    return out


def build_demo(
    out_dir: str | Path = "export/demo",
    bundle: str | Path | None = None,
    quick: bool = False,
    depth_model: str | Path | None = DEPTH_MODEL,
    depth_bundle: str | Path | None = DEPTH_SEGMENTER,
) -> Path:
    """Write out_dir/index.html (self-contained) and out_dir/figures.json; return the HTML path.
    depth_model: a depth bundle for the photos without depth (skipped when it does not resolve);
    depth_bundle: the segmenter for the photos with their own depth (default the person model)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seg = find_segmenter(bundle, out_dir / "bundles")
    mono = optional_bundle(depth_model)
    sections, photo_rows = [], []
    photos = demo_photos()
    opened = resolve_bundle(seg)  # schema and SHA-256 checked once, not per photo
    mask_file = segmentation_file(opened.manifest)  # the file run_segmentation runs by default
    for name, img, ref in photos[:3] if quick else photos:
        low, spec = run_segmentation(opened, img)
        if float(cv2.resize(notebook_mask(low, spec).astype(np.uint8), (64, 64)).mean()) < 0.002:
            sections.append(f"<h2>{html.escape(name)}</h2><p>{seg.name} finds no person or cat here; skipped.</p>")
            continue
        bg = demo_background(*img.shape[:2])
        figs, crops = [], []
        ours = {}
        for mode in ("blur", "chroma", "replace"):
            nb = notebook_composite(img, low, spec, mode, background=bg)
            res = render(img, low, spec, mode=mode, background=bg if mode == "replace" else None)
            ours[mode] = res
            figs.append((f"notebook, {mode}", nb))
            figs.append((f"ours, {mode}", res.composite))
        alpha = ours["chroma"].alpha
        windows = crop_windows(ref if ref is not None else alpha)
        a8 = _grey(alpha)
        nb_chroma = notebook_composite(img, low, spec, "chroma")
        for i, (y, x) in enumerate(windows):
            tiles = [
                ("photo", img),
                ("notebook chroma", nb_chroma),
                ("ours chroma", ours["chroma"].composite),
                ("ours alpha", a8),
                ("notebook blur", figs[0][1]),
                ("ours blur", ours["blur"].composite),
            ]
            if ref is not None:
                tiles.append(("reference alpha", _grey(ref)))
            crops.append(
                _crop_html(f"crop {i + 1} (the window with the most soft alpha: hair, whiskers, tail)", tiles, y, x)
            )
        depth_m = None
        if mono is not None:
            depth_m, ran = monocular_depth(mono, img)
            with_d = render(img, low, spec, mode="chroma", depth_m=depth_m, depth_source="monocular")
            inv = inverse_depth_png(depth_m, *img.shape[:2])
            figs += [
                (f"monocular depth ({ran}; inverse, nearer brighter)", np.dstack([(inv >> 8).astype(np.uint8)] * 3)),
                ("alpha without depth", a8),
                ("alpha with monocular depth", _grey(with_d.alpha)),
            ]
        if ref is not None:
            dtiles = [
                ("photo", img),
                ("ours chroma", ours["chroma"].composite),
                ("ours alpha", a8),
                ("reference alpha", _grey(ref)),
            ]
            crops += defect_crops(alpha, ref, dtiles, "without depth")
            if depth_m is not None:
                crops += defect_crops(
                    with_d.alpha,
                    ref,
                    [
                        ("photo", img),
                        ("chroma with depth", with_d.composite),
                        ("alpha with depth", _grey(with_d.alpha)),
                        ("reference alpha", _grey(ref)),
                    ],
                    "with monocular depth",
                )
        sections.append(
            f"<h2>{html.escape(name)} ({img.shape[1]}x{img.shape[0]}, mask: {html.escape(mask_file)})</h2>"
            + _figures_html(figs)
            + "".join(crops)
        )
        if ref is not None:
            r = compare_edges(img, low, spec, ref, depth_m=depth_m, depth_source="monocular")
            r["name"] = f"{name} ({seg.name})"
            photo_rows.append(r)
    dseg = optional_bundle(depth_bundle) or seg
    sections += depth_photo_sections(dseg, quick=quick)
    synth_rows = synthetic_edges(seeds=(0,) if quick else (0, 1, 2, 3))
    figures = {
        "photos": photo_rows,
        "synthetic": synth_rows,
        "segmenter": str(seg),
        "depth_model": None if mono is None else str(mono),
    }
    (out_dir / "figures.json").write_text(json.dumps(figures, indent=1, default=float))
    tables = _fig_table(
        photo_rows, "Photos against their reference alphas (P3M-Net / GFM predictions), 15 px band"
    ) + _fig_table(
        synth_rows,
        "Synthetic scenes against their exact alpha (simulated 257x257 model output, registered ToF depth), 15 px band",
    )
    doc = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>portrait demo</title>'
        f"<style>{CSS}</style></head><body><h1>Portrait mode: the notebook's result and ours</h1>"
        "<p>Ours: trimap from the mask, closed-form alpha in the band, foreground colours "
        "(toolchain/render/matting.py); depth, where there is some, decides coarse regions of the trimap "
        "(trimap.py, depth_edges.py). 'today' in the tables is the fused stage before matting "
        "(guided filter on the mask); 'with depth' is matting with the monocular depth model's map on the photos "
        "and with registered ToF depth on the synthetic scenes. Spill: mean RGB distance between the chroma "
        "composite and the true foreground inside the subject, in the band. Holes: share of the reference's "
        "interior (more than 20 px inside) below alpha 0.9; ghosts: share of its exterior (more than 20 px "
        "outside) above 0.1.</p>" + tables + "".join(sections) + f"<script>{CHECK_JS}</script></body></html>"
    )
    path = out_dir / "index.html"
    path.write_text(doc)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("export/demo"))
    ap.add_argument("--bundle", default=None, help=f"segmentation bundle (default: {SEGMENTER})")
    ap.add_argument("--quick", action="store_true", help="three photos and one synthetic seed (for tests)")
    ap.add_argument(
        "--depth-model",
        default=DEPTH_MODEL,
        help=f"depth bundle for the photos without depth (default {DEPTH_MODEL}; skipped when not exported)",
    )
    ap.add_argument("--depth-bundle", default=DEPTH_SEGMENTER, help="segmenter for the photos with their own depth")
    args = ap.parse_args(argv)
    shared = paths.REPO_ROOT.parent / "shared"
    if paths.data_dir() is None and (shared / "photos").is_dir():  # `make demo` beside ../shared
        os.environ["PORTRAIT_DATA_DIR"] = str(shared)
        os.environ.setdefault("PORTRAIT_MODELS_DIR", str(shared / "models"))
    try:
        path = build_demo(
            args.out, args.bundle, quick=args.quick, depth_model=args.depth_model, depth_bundle=args.depth_bundle
        )
    except PortraitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
