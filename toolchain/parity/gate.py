"""Run a float / quantized pair over an image set and judge the figures against recipe budgets.

The quantized model runs on both kernel sets (reference and XNNPACK); the budgets are judged on
the recipe's `parity.kernels` (reference by default: the contract a phone's delegate is held to),
and the agreement between the two kernel sets is reported beside the verdict.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import paths
from ..errors import InputError
from ..images import bundled_photos, load_rgb, to_model_input
from ..registry import ModelEntry
from ..runtime import KERNELS, TfliteRunner
from . import metrics


def parity_images(entry: ModelEntry, folder: Path | None = None) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 model-size image): a given folder, else the photos (and depth photos for depth
    models) in PORTRAIT_DATA_DIR, else the photos bundled with scikit-image plus synthetic scenes."""
    if folder is not None:
        files = paths.list_photos(Path(folder))
        if not files:
            raise InputError(f"no images in {folder}", fix="pass a folder with .jpg/.png/.bmp files")
    else:
        files = paths.list_photos(paths.photos_dir())
        if entry.task == "depth":
            files += sorted(paths.depth_photos_dir().glob("*.jpg")) if paths.depth_photos_dir() else []
    if files:
        return [(p.name, to_model_input(load_rgb(p), entry.input.size)) for p in files]
    out = [(f"skimage:{k}", to_model_input(v, entry.input.size)) for k, v in bundled_photos().items()]
    out += [(f"synthetic:{i}", to_model_input(img, entry.input.size)) for i, img in synthetic_images()]
    return out


def synthetic_images(n: int = 4, size=(480, 640)) -> list[tuple[int, np.ndarray]]:
    """Synthetic portrait scenes when the scene generator is installed; none otherwise."""
    try:
        from ..scenes import generate_scene
    except ImportError:
        return []
    return [(i, generate_scene(seed=i, kind=("person", "cat")[i % 2], size=size).rgb) for i in range(n)]


def _first(outs: dict) -> np.ndarray:
    return outs[sorted(outs)[0]][0]


def _judge(figures: dict, budgets: dict) -> list[str]:
    """Failures: budget `<figure>_min` is a lower bound on figures[<figure>], `<figure>_max` an upper
    bound (figures hold the worst case over images where that is what the budget means)."""
    failures = []
    for key, bound in budgets.items():
        value = figures.get(key[:-4])
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        if key.endswith("_min") and value < bound:
            failures.append(f"{key[:-4]} = {value:.4f} < {bound}")
        elif key.endswith("_max") and value > bound:
            failures.append(f"{key[:-4]} = {value:.4f} > {bound}")
    return failures


def recipe_budgets(parity_cfg: dict) -> dict:
    """The budget keys of a recipe's [parity] section: `<figure>_min` / `<figure>_max` (settings
    such as min_class_fraction start with min_ and are not budgets)."""
    return {k: v for k, v in parity_cfg.items() if k.endswith(("_min", "_max")) and not k.startswith("min_")}


def compare_pair(entry: ModelEntry, recipe: dict, float_path: Path, quant_path: Path,
                 images: list[tuple[str, np.ndarray]], *, progress=None) -> dict:
    """Figures for `quant_path` vs `float_path` on each kernel set, with the verdict."""
    if not images:
        raise InputError("parity needs at least one image", fix="set PORTRAIT_DATA_DIR or pass --images")
    budget_cfg = recipe["parity"]
    judged = budget_cfg.get("kernels", "reference")
    float_runner = TfliteRunner(float_path)
    refs = [_first(float_runner.run(img)) for _, img in images]
    per_kernel, outputs = {}, {}
    for kernels in KERNELS:
        runner = TfliteRunner(quant_path, kernels=kernels)
        outs = []
        for i, (name, img) in enumerate(images):
            outs.append(_first(runner.run(img)))
            if progress:
                progress(f"parity {kernels} {i + 1}/{len(images)} {name}")
        outputs[kernels] = outs
        per_kernel[kernels] = task_figures(entry, recipe, refs, outs, [n for n, _ in images])
    figures = dict(per_kernel[judged])
    figures["kernels"] = judged
    figures["other_kernels"] = {k: {kk: v for kk, v in per_kernel[k].items() if kk != "per_image"}
                                for k in KERNELS if k != judged}
    figures["kernel_agreement"] = kernel_agreement(entry, outputs["xnnpack"], outputs["reference"])
    figures["images"] = [n for n, _ in images]
    budgets = recipe_budgets(budget_cfg)
    figures["budgets"] = budgets
    figures["failures"] = _judge(figures, budgets)
    figures["passed"] = not figures["failures"]
    return figures


def _labels(out: np.ndarray) -> np.ndarray:
    return out if out.ndim == 2 else np.argmax(out, axis=-1)


def kernel_agreement(entry: ModelEntry, a: list[np.ndarray], b: list[np.ndarray]) -> dict:
    """How close the XNNPACK and reference kernel outputs of the same quantized model are."""
    if entry.task == "segmentation":
        return {"pixel_agreement": float(np.mean([metrics.pixel_agreement(_labels(x), _labels(y))
                                                  for x, y in zip(a, b)]))}
    return {"max_abs_error": max(metrics.max_abs_error(x, y) for x, y in zip(a, b)),
            "snr_db": min(metrics.snr_db(x, y) for x, y in zip(a, b))}


def task_figures(entry: ModelEntry, recipe: dict, refs: list[np.ndarray], outs: list[np.ndarray],
                 names: list[str]) -> dict:
    cfg = recipe["parity"]
    if entry.task == "segmentation":
        return segmentation_figures(entry, cfg, refs, outs, names)
    if entry.task == "depth":
        return depth_figures(refs, outs, names)
    if entry.task == "mask":
        return mask_figures(refs, outs, names, threshold=cfg.get("threshold", 0.5),
                            min_fraction=cfg.get("min_mask_fraction", 0.0))
    return tensor_figures(refs, outs, names)


def segmentation_figures(entry, cfg, refs, outs, names) -> dict:
    classes = cfg.get("classes", list(entry.foreground_classes))
    min_frac = cfg.get("min_class_fraction", 0.01)
    per_image, ious = [], {c: [] for c in classes}
    for name, r, o in zip(names, refs, outs):
        rl, ol = _labels(r), _labels(o)
        row = {"image": name, "pixel_agreement": metrics.pixel_agreement(rl, ol),
               "edge_band_agreement": metrics.band_agreement(rl, ol, list(entry.foreground_classes.values())),
               "class_iou": {}}
        for c in classes:
            cid = entry.foreground_classes[c]
            if np.mean(rl == cid) >= min_frac:
                row["class_iou"][c] = metrics.class_iou(rl, ol, cid)
                ious[c].append(row["class_iou"][c])
        per_image.append(row)
    figs = {"pixel_agreement": float(np.mean([r["pixel_agreement"] for r in per_image])),
            "pixel_agreement_worst": float(min(r["pixel_agreement"] for r in per_image)),
            "edge_band_agreement": float(np.nanmean([r["edge_band_agreement"] for r in per_image]))
            if any(np.isfinite(r["edge_band_agreement"]) for r in per_image) else float("nan"),
            "class_iou": {c: {"min": min(v), "mean": float(np.mean(v)), "images": len(v)} for c, v in ious.items() if v},
            "per_image": per_image}
    all_ious = [x for v in ious.values() for x in v]
    figs["worst_class_iou"] = float(min(all_ious)) if all_ious else float("nan")
    return figs


def depth_figures(refs, outs, names) -> dict:
    per_image = []
    for name, r, o in zip(names, refs, outs):
        m = metrics.depth_metrics(o[..., 0] if o.ndim == 3 else o, r[..., 0] if r.ndim == 3 else r)
        per_image.append({"image": name, **m})
    return {"delta1": float(min(p["delta1"] for p in per_image)),
            "abs_rel": float(max(p["abs_rel"] for p in per_image)),
            "rmse": float(max(p["rmse"] for p in per_image)), "per_image": per_image}


def mask_figures(refs, outs, names, threshold: float = 0.5, min_fraction: float = 0.0) -> dict:
    """IoU at `threshold` on images where the float mask covers >= min_fraction; mean abs diff on all."""
    per_image = []
    for name, r, o in zip(names, refs, outs):
        row = {"image": name, "mask_fraction": float(np.mean(r > threshold)),
               "mean_abs_diff": float(np.mean(np.abs(r.astype(np.float64) - o)))}
        if row["mask_fraction"] >= min_fraction:
            row["iou"] = metrics.iou(r > threshold, o > threshold)
        per_image.append(row)
    ious = [p["iou"] for p in per_image if "iou" in p]
    return {"iou": float(min(ious)) if ious else float("nan"), "iou_images": len(ious),
            "mean_abs_diff": float(max(p["mean_abs_diff"] for p in per_image)), "per_image": per_image}


def tensor_figures(refs, outs, names) -> dict:
    per_image = [{"image": n, **metrics.tensor_metrics(r, o)} for n, r, o in zip(names, refs, outs)]
    return {"cosine": float(min(p["cosine"] for p in per_image)),
            "snr_db": float(min(p["snr_db"] for p in per_image)), "per_image": per_image}
