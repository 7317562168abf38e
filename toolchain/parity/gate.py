"""Run a float / quantized pair over an image set and judge the figures against recipe budgets.

The quantized model runs on both kernel sets (reference and XNNPACK); the budgets are judged on
the recipe's `parity.kernels`: "both" by default (every budget on each set, the worse figure
reported; XNNPACK is LiteRT's default CPU path and the reference kernels are the contract an NPU
delegate is held to), and the agreement between the two kernel sets is reported beside the verdict.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .. import paths
from ..cache import array_digest
from ..depth.align import align_scale_shift
from ..depth.blur import blur_radius_px
from ..errors import InputError, RecipeError
from ..images import bundled_photos, load_rgb, to_model_input
from ..registry import ModelEntry
from ..runtime import KERNELS, TfliteRunner, file_digest
from ..scenes import generate_scene
from . import agreement
from . import bound as output_bound


def image_sets_of(entry: ModelEntry, image_sets: list[str] | None = None) -> list[str]:
    """The recipe's [parity] image_sets, or the default: the photos, plus the depth photos for a depth model."""
    return list(image_sets) if image_sets else (["photos", "depth_photos"] if entry.task == "depth" else ["photos"])


def parity_images(
    entry: ModelEntry, folder: Path | None = None, image_sets: list[str] | None = None
) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 model-size image): a given folder, else the recipe's `image_sets` of
    PORTRAIT_DATA_DIR ("photos", "depth_photos"; by default the photos, plus the depth photos for a
    depth model), else the photos bundled with scikit-image plus synthetic scenes."""
    if folder is not None:
        files = paths.list_photos(Path(folder))
        if not files:
            raise InputError(f"no images in {folder}", fix="pass a folder with .jpg/.png/.bmp files")
    else:
        sets = image_sets_of(entry, image_sets)
        files = paths.list_photos(paths.photos_dir()) if "photos" in sets else []
        depth_photos = paths.depth_photos_dir()
        if "depth_photos" in sets and depth_photos:
            files += sorted(depth_photos.glob("*.jpg"))
    if files:
        return [(p.name, to_model_input(load_rgb(p), entry.input.size)) for p in files]
    out = [(f"skimage:{k}", to_model_input(v, entry.input.size)) for k, v in bundled_photos().items()]
    out += [(f"synthetic:{i}", to_model_input(img, entry.input.size)) for i, img in synthetic_images()]
    return out


def set_images(entry: ModelEntry, image_set: str) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 model-size image) of one image set of PORTRAIT_DATA_DIR ("photos" or "depth_photos");
    empty when the folder is not there (no fallback: a further set is judged on its own images only)."""
    folder = paths.photos_dir() if image_set == "photos" else paths.depth_photos_dir()
    if folder is None or not Path(folder).is_dir():
        return []
    files = paths.list_photos(Path(folder)) if image_set == "photos" else sorted(Path(folder).glob("*.jpg"))
    return [(p.name, to_model_input(load_rgb(p), entry.input.size)) for p in files]


def further_sets(recipe: dict) -> dict:
    """The recipe's [parity.sets.<image set>] tables: further image sets judged beside the main one, each
    with its own budgets (`<figure>_min` / `_max`) and/or `relative_to_bound`."""
    sets = recipe["parity"].get("sets") or {}
    where = recipe.get("_path", "recipe")
    for name, cfg in sets.items():
        if name not in ("photos", "depth_photos") or not isinstance(cfg, dict):
            raise RecipeError(
                f"[parity.sets.{name}]: unknown image set or not a table",
                where=where,
                fix="use [parity.sets.depth_photos] (or photos) with budgets or relative_to_bound",
            )
        if "relative_to_bound" in cfg:
            output_bound.check_margins(cfg["relative_to_bound"], where=f"{where} [parity.sets.{name}]")
        if not isinstance(cfg.get("gate", True), bool):
            raise RecipeError(f"[parity.sets.{name}] gate must be true or false, got {cfg['gate']!r}", where=where)
    return sets


def synthetic_images(n: int = 4, size=(480, 640)) -> list[tuple[int, np.ndarray]]:
    """Synthetic portrait scenes (toolchain/scenes) with a person or a cat."""
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


def judge_budgets(per_kernels: dict, budgets: dict, kernel_sets) -> list[str]:
    """Failures of each kernel set's figures (compare_pair's "per_kernels") against `budgets`."""
    return [f"{k}: {f}" for k in kernel_sets for f in _judge(per_kernels.get(k) or {}, budgets)]


def recipe_budgets(parity_cfg: dict) -> dict:
    """The budget keys of a recipe's [parity] section: `<figure>_min` / `<figure>_max` (settings
    such as min_class_fraction start with min_ and are not budgets)."""
    return {k: v for k, v in parity_cfg.items() if k.endswith(("_min", "_max")) and not k.startswith("min_")}


def compare_pair(
    entry: ModelEntry,
    recipe: dict,
    float_path: Path,
    quant_path: Path,
    images: list[tuple[str, np.ndarray]],
    *,
    progress=None,
    kernel_sets=KERNELS,
    extra_sets: dict | None = None,
) -> dict:
    """Figures for `quant_path` vs `float_path` on each kernel set, with the verdict.

    recipe parity.kernels: "both" (the default) judges every budget on each kernel set and reports
    the worse of the two as the figure; a failure names its kernel set ("xnnpack: iou = ...").
    "reference" or "xnnpack" judge one set and report the other beside it.
    recipe parity.relative_to_bound: budgets against the output-grid bound (bound.py), on every judged set.
    recipe [parity.sets.<image set>]: a further image set judged beside `images` with its own budgets
    (images from `extra_sets[<name>]` when given, else read from PORTRAIT_DATA_DIR); a failure there
    starts with the set's name. With `gate = false` in that table its failures are reported
    ("reported_failures") but do not decide "passed"."""
    if not images:
        raise InputError("parity needs at least one image", fix="set PORTRAIT_DATA_DIR or pass --images")
    budget_cfg = recipe["parity"]
    judged = budget_cfg.get("kernels", "both")
    kernel_sets = tuple(kernel_sets)
    judged_sets = list(kernel_sets) if judged == "both" else [judged]
    if not set(judged_sets) <= set(kernel_sets):
        raise InputError(f"parity is judged on {judged} kernels but only {kernel_sets} were run")
    outputs = _run_all(float_path, quant_path, kernel_sets, images, progress)
    refs = outputs.pop("float")
    per_kernel = {k: task_figures(entry, recipe, refs, outputs[k], [n for n, _ in images]) for k in kernel_sets}
    budgets = recipe_budgets(budget_cfg)
    figures = worse_of([per_kernel[k] for k in judged_sets], budgets)
    figures["kernels"] = judged
    figures["per_kernels"] = {k: {kk: v for kk, v in per_kernel[k].items() if kk != "per_image"} for k in kernel_sets}
    figures["other_kernels"] = {k: figures["per_kernels"][k] for k in kernel_sets if k not in judged_sets}
    if judged == "both" and len(judged_sets) > 1:
        figures["other_kernels"] = {k: figures["per_kernels"][k] for k in judged_sets}
    if {"xnnpack", "reference"} <= set(outputs):
        figures["kernel_agreement"] = kernel_agreement(entry, outputs["xnnpack"], outputs["reference"])
    figures["images"] = [n for n, _ in images]
    figures["budgets"] = budgets
    if len(judged_sets) > 1:
        figures["failures"] = [f"{k}: {f}" for k in judged_sets for f in _judge(per_kernel[k], budgets)]
    else:
        figures["failures"] = _judge(figures, budgets)
    if budget_cfg.get("relative_to_bound"):
        figures["bound"] = bound_block(
            entry,
            recipe,
            refs,
            quant_path,
            [n for n, _ in images],
            per_kernel,
            judged_sets,
            budget_cfg["relative_to_bound"],
        )
        figures["failures"] += figures["bound"]["failures"]
    for set_name, set_cfg in further_sets(recipe).items():
        imgs = (extra_sets or {}).get(set_name)
        block = judge_set(
            entry,
            recipe,
            set_name,
            set_cfg,
            float_path,
            quant_path,
            set_images(entry, set_name) if imgs is None else imgs,
            kernel_sets,
            judged_sets,
            progress,
        )
        figures.setdefault("sets", {})[set_name] = block
        missed = [f"{set_name} {f}" for f in block.get("failures", [])]
        if block["gates"]:
            figures["failures"] += missed
        else:  # `gate = false`: judged and shown (manifest, card, summary), not part of the verdict
            figures.setdefault("reported_failures", []).extend(missed)
    figures["passed"] = not figures["failures"]
    return figures


def bound_block(
    entry: ModelEntry,
    recipe: dict,
    refs: list[np.ndarray],
    quant_path: Path,
    names: list[str],
    per_kernel: dict,
    judged_sets: list[str],
    margins: dict,
) -> dict:
    """The output-grid bound on these images (parity/bound.py) and each judged kernel set's figures against
    it: {"grid", "figures" (the bound), "relative_to_bound", "gap" (per kernel set), "failures"}."""
    margins = output_bound.check_margins(margins, where=recipe.get("_path", "recipe"))
    grid = output_bound.output_grid(quant_path)
    best = task_figures(entry, recipe, refs, output_bound.rounded_outputs(refs, grid), names)
    best = {k: v for k, v in best.items() if k != "per_image"}
    return {
        "grid": grid.describe() if grid else "float output (no grid: the bound is float itself)",
        "figures": best,
        "relative_to_bound": margins,
        "gap": {k: output_bound.gap_to_bound(per_kernel[k], best, margins) for k in judged_sets},
        "failures": [
            f"{k}: {f}" for k in judged_sets for f in output_bound.judge_relative(per_kernel[k], best, margins)
        ],
    }


def judge_set(
    entry: ModelEntry,
    recipe: dict,
    set_name: str,
    set_cfg: dict,
    float_path: Path,
    quant_path: Path,
    images,
    kernel_sets,
    judged_sets,
    progress=None,
) -> dict:
    """One further image set (recipe [parity.sets.<name>]): figures on each kernel set, its own absolute
    budgets and its bound-relative ones. An image set that is not there is reported as skipped."""
    gates = bool(set_cfg.get("gate", True))
    if not images:
        return {"skipped": f"no {set_name} folder in {paths.data_dir()}", "failures": [], "gates": gates}
    outputs = _run_all(float_path, quant_path, kernel_sets, images, progress)
    refs = outputs.pop("float")
    names = [n for n, _ in images]
    cfg = {
        **{
            k: v
            for k, v in recipe["parity"].items()
            if k not in ("sets", "relative_to_bound") and k not in recipe_budgets(recipe["parity"])
        },
        **set_cfg,
    }
    sub = {**recipe, "parity": cfg}
    per_kernel = {k: task_figures(entry, sub, refs, outputs[k], names) for k in kernel_sets}
    budgets = recipe_budgets(cfg)
    block: dict[str, Any] = {
        "images": names,
        "budgets": budgets,
        "gates": gates,
        "per_kernels": {k: {kk: v for kk, v in f.items() if kk != "per_image"} for k, f in per_kernel.items()},
        "failures": [f"{k}: {f}" for k in judged_sets for f in _judge(per_kernel[k], budgets)],
    }
    if cfg.get("relative_to_bound"):
        block["bound"] = bound_block(
            entry, sub, refs, quant_path, names, per_kernel, judged_sets, cfg["relative_to_bound"]
        )
        block["failures"] += block["bound"]["failures"]
    return block


def _run_all(float_path: Path, quant_path: Path, kernel_sets, images, progress) -> dict[str, list[np.ndarray]]:
    """The float file's outputs ("float") and the quantized file's on each kernel set, two runs at a
    time: LiteRT releases the GIL while it runs and the reference kernels use one core, so on 2 cores
    the kernel sets overlap (a 16x8 file runs ~5 s a frame on either). Each run has its own
    interpreter, so the outputs are the same as one after the other."""

    def run(path, kernels, label):
        runner = TfliteRunner(path, kernels=kernels)
        outs = []
        for i, (name, img) in enumerate(images):
            outs.append(_first(runner.run(img)))
            if progress and label:
                progress(f"parity {label} {i + 1}/{len(images)} {name}")
        return outs

    key = _float_key(float_path, images)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {} if key in _FLOAT_OUTS else {"float": pool.submit(run, float_path, "xnnpack", None)}
        futures.update({k: pool.submit(run, quant_path, k, k) for k in kernel_sets})
        out = {k: f.result() for k, f in futures.items()}
    if key in _FLOAT_OUTS:
        out["float"] = _FLOAT_OUTS[key]
    else:
        if len(_FLOAT_OUTS) >= 4:  # a few entries: the model being judged, on each of its image sets
            _FLOAT_OUTS.pop(next(iter(_FLOAT_OUTS)))
        _FLOAT_OUTS[key] = out["float"]
    return out


# The float file's outputs on the parity images, kept for the next rung of the same export (the ladder
# judges w8a8, w8a16 and float16 against the same float32 file on the same images: PyDNet++ ~3 s each),
# one entry per image set
_FLOAT_OUTS: dict[tuple, list[np.ndarray]] = {}


def _float_key(float_path: Path, images) -> tuple:
    return file_digest(float_path), tuple((name, array_digest(img)) for name, img in images)


def worse_of(per_kernel: list[dict], budgets: dict) -> dict:
    """One figure set: the first kernel set's, with every budgeted figure replaced by the worse value
    over all sets (lowest for a `_min` budget, highest for a `_max` one)."""
    out = dict(per_kernel[0])
    for key in budgets:
        fig = key[:-4]
        vals = [float(v) for v in (f.get(fig) for f in per_kernel) if isinstance(v, (int, float)) and not np.isnan(v)]
        if vals:
            out[fig] = min(vals) if key.endswith("_min") else max(vals)
    return out


def _labels(out: np.ndarray) -> np.ndarray:
    return out if out.ndim == 2 else np.argmax(out, axis=-1)


def kernel_agreement(entry: ModelEntry, a: list[np.ndarray], b: list[np.ndarray]) -> dict:
    """How close the XNNPACK and reference kernel outputs of the same quantized model are."""
    if entry.task == "segmentation":
        return {
            "pixel_agreement": float(np.mean([agreement.pixel_agreement(_labels(x), _labels(y)) for x, y in zip(a, b)]))
        }
    return {
        "max_abs_error": max(agreement.max_abs_error(x, y) for x, y in zip(a, b)),
        "snr_db": min(agreement.snr_db(x, y) for x, y in zip(a, b)),
    }


def task_figures(
    entry: ModelEntry, recipe: dict, refs: list[np.ndarray], outs: list[np.ndarray], names: list[str]
) -> dict:
    cfg = recipe["parity"]
    if entry.task == "segmentation":
        return segmentation_figures(entry, cfg, refs, outs, names)
    if entry.task == "depth":
        inverse = (recipe.get("output_transform") or {}).get("kind") == "inverse"
        return depth_figures(refs, outs, names, inverse=inverse, blur=cfg.get("blur"))
    if entry.task == "mask":
        return mask_figures(
            refs, outs, names, threshold=cfg.get("threshold", 0.5), min_fraction=cfg.get("min_mask_fraction", 0.0)
        )
    return tensor_figures(refs, outs, names)


def segmentation_figures(entry, cfg, refs, outs, names) -> dict:
    classes = cfg.get("classes", list(entry.foreground_classes))
    min_frac = cfg.get("min_class_fraction", 0.01)
    per_image: list[dict] = []
    ious: dict[str, list[float]] = {c: [] for c in classes}
    for name, r, o in zip(names, refs, outs):
        rl, ol = _labels(r), _labels(o)
        row = {
            "image": name,
            "pixel_agreement": agreement.pixel_agreement(rl, ol),
            "edge_band_agreement": agreement.band_agreement(rl, ol, list(entry.foreground_classes.values())),
            "class_iou": {},
        }
        for c in classes:
            cid = entry.foreground_classes[c]
            if np.mean(rl == cid) >= min_frac:
                row["class_iou"][c] = agreement.class_iou(rl, ol, cid)
                ious[c].append(row["class_iou"][c])
        per_image.append(row)
    figs = {
        "pixel_agreement": float(np.mean([r["pixel_agreement"] for r in per_image])),
        "pixel_agreement_worst": float(min(r["pixel_agreement"] for r in per_image)),
        "edge_band_agreement": float(np.nanmean([r["edge_band_agreement"] for r in per_image]))
        if any(np.isfinite(r["edge_band_agreement"]) for r in per_image)
        else float("nan"),
        "class_iou": {c: {"min": min(v), "mean": float(np.mean(v)), "images": len(v)} for c, v in ious.items() if v},
        "per_image": per_image,
    }
    all_ious = [x for v in ious.values() for x in v]
    figs["worst_class_iou"] = float(min(all_ious)) if all_ious else float("nan")
    return figs


def depth_figures(refs, outs, names, *, inverse: bool = False, blur: dict | None = None) -> dict:
    """δ1 / AbsRel / RMSE per image after least-squares scale and shift, worst image reported.

    inverse: the outputs are inverse depth (the recipe's output_transform); the judged figures are
    on inverse depth (MiDaS-style), and the same figures on depth (1 / output, aligned in depth)
    are reported beside them under "on_depth".
    blur: the recipe's [parity] blur = { max_blur_px, subject_fraction }: the task figures
    blur_mean_px / blur_p99_px (worst image; see blur_error)."""
    per_image = []
    for name, r, o in zip(names, refs, outs):
        r2, o2 = (r[..., 0] if r.ndim == 3 else r), (o[..., 0] if o.ndim == 3 else o)
        m = agreement.depth_metrics(o2, r2)
        if inverse:
            d = agreement.depth_metrics(
                1.0 / np.maximum(o2.astype(np.float64), 1e-6), 1.0 / np.maximum(r2.astype(np.float64), 1e-6)
            )
            m["on_depth"] = d
        if blur:
            m.update(blur_error(r2, o2, inverse=inverse, **blur))
        per_image.append({"image": name, **m})
    figs = {
        "delta1": float(min(p["delta1"] for p in per_image)),
        "abs_rel": float(max(p["abs_rel"] for p in per_image)),
        "rmse": float(max(p["rmse"] for p in per_image)),
        "per_image": per_image,
    }
    if blur:
        figs["blur_mean_px"] = float(max(p["blur_mean_px"] for p in per_image))
        figs["blur_p99_px"] = float(max(p["blur_p99_px"] for p in per_image))
        figs["blur"] = {
            **blur,
            "what": "|blur radius from this file - from float| in px of a 12 MP frame, "
            "focus on the subject's median depth; worst image",
        }
    if inverse:
        figs["domain"] = "inverse depth (judged); on_depth: the same after 1/x, reported only"
        figs["on_depth"] = {
            "delta1": float(min(p["on_depth"]["delta1"] for p in per_image)),
            "abs_rel": float(max(p["on_depth"]["abs_rel"] for p in per_image)),
        }
    return figs


def blur_error(
    ref: np.ndarray, out: np.ndarray, *, inverse: bool, max_blur_px: float = 50.0, subject_fraction: float = 0.25
) -> dict:
    """What the user sees of a depth file's error: the blur radius its depth gives in the render, against
    the float file's, per pixel (depth/blur.py, the render's own circle of confusion).

    max_blur_px: the CoC radius at infinity in full-resolution px (50 px: the render's default f/1.8 blur
    on a 12 MP 4000x3000 frame, 1 % of the diagonal). The file's output is aligned to float's by least
    squares (scale and shift, as for δ1) and read as inverse depth (1 / output when the file gives depth).
    Focus: the median depth of the subject, here the nearest `subject_fraction` of the pixels by float's
    depth (a portrait's subject is its nearest large region; a depth file has no mask). Returns the mean
    and 99th-percentile absolute difference in px over the image."""
    r = np.asarray(ref, np.float64)
    o = align_scale_shift(out, r)
    inv_r, inv_o = (r, o) if inverse else (1.0 / np.maximum(r, 1e-6), 1.0 / np.maximum(o, 1e-6))
    subject = inv_r >= np.quantile(inv_r, 1.0 - subject_fraction)
    err = np.abs(
        blur_radius_px(inv_o, subject, max_blur_px).astype(np.float64) - blur_radius_px(inv_r, subject, max_blur_px)
    )
    return {"blur_mean_px": float(err.mean()), "blur_p99_px": float(np.percentile(err, 99))}


def mask_figures(refs, outs, names, threshold: float = 0.5, min_fraction: float = 0.0) -> dict:
    """IoU at `threshold` on images where the float mask covers >= min_fraction; mean abs diff on all."""
    per_image = []
    for name, r, o in zip(names, refs, outs):
        row = {
            "image": name,
            "mask_fraction": float(np.mean(r > threshold)),
            "mean_abs_diff": float(np.mean(np.abs(r.astype(np.float64) - o))),
        }
        if row["mask_fraction"] >= min_fraction:
            row["iou"] = agreement.iou(r > threshold, o > threshold)
        per_image.append(row)
    ious = [p["iou"] for p in per_image if "iou" in p]
    return {
        "iou": float(min(ious)) if ious else float("nan"),
        "iou_images": len(ious),
        "mean_abs_diff": float(max(p["mean_abs_diff"] for p in per_image)),
        "per_image": per_image,
    }


def tensor_figures(refs, outs, names) -> dict:
    per_image = [{"image": n, **agreement.tensor_metrics(r, o)} for n, r, o in zip(names, refs, outs)]
    return {
        "cosine": float(min(p["cosine"] for p in per_image)),
        "snr_db": float(min(p["snr_db"] for p in per_image)),
        "per_image": per_image,
    }
