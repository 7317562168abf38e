"""`portrait parity`: one library call per model that the CLI, `make parity` and tests share.

For a float / quantized pair (a bundle's float32 and int8 files, or two given files of one registry
entry) on a chosen image set: the gate's figures on both kernel sets and the verdict, the per-layer
comparison with its culprit ranking, mixed precision when asked for (or when the recipe enables
it) and the budget is missed, and the JSON + HTML report. Not for: exporting (export.py).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from .. import calibration_set, paths
from ..bundle import read_manifest
from ..bundle_loader import list_bundles, open_bundle
from ..errors import InputError, PortraitError
from ..images import bundled_photos, to_model_input
from ..quantize.kernel_gap import format_gap, kernel_gap
from ..recipes import load_recipe
from ..registry import ModelEntry, get_entry, locate_or_fetch_embedded
from ..runtime import TfliteRunner
from ..sources import import_model
from . import gate, layers, mixed, report

IMAGE_SETS = ("photos", "synthetic")

# Which per-image figure ranks images from worst to best, by task (lower is worse unless negated).
_WORST_KEY = {
    "segmentation": lambda r: r["pixel_agreement"],
    "mask": lambda r: r.get("iou", 2.0) - r["mean_abs_diff"],
    "depth": lambda r: r["delta1"],
    "tensor": lambda r: r["cosine"],
}


def choose_images(
    entry: ModelEntry, images: str | Path | None = None, image_sets: list[str] | None = None
) -> tuple[str, list[tuple[str, np.ndarray]]]:
    """(description, images): None or "photos" = the real photos (PORTRAIT_DATA_DIR, the recipe's
    `image_sets`; the bundled photos and synthetic scenes when not configured), "synthetic" =
    generated portrait scenes plus the scikit-image photos, anything else = a folder of the user's."""
    if images is None or str(images) == "photos":
        imgs = gate.parity_images(entry, image_sets=image_sets)
        bundled = imgs[0][0].startswith(("skimage:", "synthetic:"))  # parity_images' fallback
        sets = " + ".join(gate.image_sets_of(entry, image_sets))
        return ("scikit-image photos + synthetic scenes" if bundled else f"{sets} in {paths.data_dir()}"), imgs
    if str(images) == "synthetic":
        out = [(f"synthetic:{i}", to_model_input(img, entry.input.size)) for i, img in gate.synthetic_images()]
        out += [(f"skimage:{k}", to_model_input(v, entry.input.size)) for k, v in bundled_photos().items()]
        return "synthetic scenes + scikit-image photos", out
    folder = Path(images)
    if not folder.is_dir():
        raise InputError(
            f"image set {images!r} is neither {IMAGE_SETS} nor a folder",
            fix="pass --images photos, --images synthetic or --images /path/to/folder",
        )
    return f"folder {folder}", gate.parity_images(entry, folder)


def _pair(entry: ModelEntry, bundle: Path | None, float_path, quant_path) -> tuple[Path, Path]:
    if float_path and quant_path:
        return Path(float_path), Path(quant_path)
    b = Path(bundle) if bundle else paths.out_dir() / entry.id
    judged = f"{entry.id}_int8.tflite"  # the bundle's handed-off model (mixed precision if it needed it)
    if (b / "manifest.json").is_file():  # a bundle: opened by the loader, so a damaged file is named, not run
        judged = open_bundle(b).handoff or judged
    f, q = Path(float_path or b / f"{entry.id}_float32.tflite"), Path(quant_path or b / judged)
    for p in (f, q):
        if not p.is_file():
            raise InputError(
                f"no {p.name} for {entry.id}",
                where=str(p),
                fix=f"run `portrait export {entry.id}` first, or pass --float and --quant files",
            )
    return f, q


def _with_budgets(recipe: dict, budgets: dict | None) -> dict:
    """The recipe with its [parity] budgets replaced by `budgets` (settings such as kernels kept)."""
    if budgets is None:
        return recipe
    cfg = {k: v for k, v in recipe["parity"].items() if k not in gate.recipe_budgets(recipe["parity"])}
    return {**recipe, "parity": {**cfg, **budgets}}


def parity_model(
    model_id: str,
    *,
    bundle: Path | None = None,
    float_path: Path | None = None,
    quant_path: Path | None = None,
    images: str | Path | None = None,
    out_dir: Path | None = None,
    budgets: dict | None = None,
    mixed_precision: bool | None = None,
    per_layer: bool = True,
    worst: int = 3,
    max_conversions: int | None = None,
    registry: dict | None = None,
    recipe: dict | None = None,
    progress=None,
    engine: dict | None = None,
) -> dict:
    """Figures, per-layer culprits, optional mixed precision and the report for one model.

    budgets: replaces the recipe's budgets (e.g. {"pixel_agreement_min": 0.999}).
    mixed_precision: True runs it when the budget is missed, False never, None as the recipe says.
    engine: where the mixed search's candidates run, {"engine": "local"|"ray", "address", "workers"}.
    Returns the result (also written as report.json beside report.html in out_dir).
    """
    say = progress or (lambda m: None)
    entry = get_entry(model_id, registry)
    recipe = _with_budgets(recipe or load_recipe(entry.recipe or model_id), budgets)
    f_path, q_path = _pair(entry, bundle, float_path, quant_path)
    image_set, imgs = choose_images(entry, images, recipe["parity"].get("image_sets"))
    out_dir = Path(out_dir) if out_dir else paths.out_dir() / "parity" / model_id
    say(f"parity {q_path.name} vs {f_path.name} on {len(imgs)} images ({image_set})")
    figures = gate.compare_pair(entry, recipe, f_path, q_path, imgs)
    result = {
        "model_id": model_id,
        "task": entry.task,
        "float_file": str(f_path),
        "quant_file": str(q_path),
        "image_set": image_set,
        "passed": figures["passed"],
        "parity": figures,
    }
    if per_layer:
        say("per-layer comparison (reference kernels)")
        result["layers"] = layers.compare_layers(f_path, q_path, imgs)
        say("per-op gap between XNNPACK and the reference kernels (quantize/kernel_gap.py)")
        result["kernel_gap"] = kernel_gap(q_path, imgs[:2])
        say(format_gap(result["kernel_gap"], top=5))
    run_mixed = mixed.settings(recipe)["enabled"] if mixed_precision is None else mixed_precision
    if run_mixed and not figures["passed"]:
        result["mixed_precision"] = _mixed(
            entry, recipe, f_path, q_path, imgs, out_dir, result.get("layers"), max_conversions, say, engine
        )
    result["report"] = write_report(entry, recipe, result, imgs, out_dir, worst=worst)
    say(summary(result))
    return result


def _mixed(entry, recipe, f_path, q_path, imgs, out_dir, layer_result, max_conversions, say, engine=None) -> dict:
    """Re-import the source (mixed precision reconverts) and run the search."""

    work = Path(tempfile.mkdtemp(prefix=f"portrait-parity-{entry.id}-"))
    try:
        source = locate_or_fetch_embedded(entry, progress=say)
        float_model = import_model(entry, source, work, outputs=recipe["outputs"])
        rep = calibration_set.for_recipe(entry.input.size, recipe["calibration"])
        out_dir.mkdir(parents=True, exist_ok=True)
        ranking = layer_result["culprits"] if layer_result else None
        return mixed.mixed_precision(
            entry,
            recipe,
            float_model,
            rep,
            f_path,
            q_path,
            imgs,
            out_dir / f"{entry.id}_int8_mixed.tflite",
            ranking=ranking,
            max_conversions=max_conversions,
            progress=say,
            engine=engine,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def worst_images(task: str, per_image: list[dict], n: int) -> list[str]:
    key = _WORST_KEY.get(task, _WORST_KEY["tensor"])
    return [r["image"] for r in sorted(per_image, key=key)[:n]]


def write_report(entry: ModelEntry, recipe: dict, result: dict, imgs, out_dir: Path, *, worst: int = 3) -> dict:
    """report.json and report.html (chart and worst-image panels embedded) in out_dir."""
    p = result["parity"]
    panels = []
    if worst and p.get("per_image"):
        names = worst_images(entry.task, p["per_image"], worst)
        by_name = dict(imgs)
        f_run = TfliteRunner(result["float_file"])
        q_run = TfliteRunner(result["quant_file"], kernels="reference" if p["kernels"] == "both" else p["kernels"])
        rows = {r["image"]: r for r in p["per_image"]}
        for n in names:
            ref, out = gate._first(f_run.run(by_name[n])), gate._first(q_run.run(by_name[n]))
            caption = ", ".join(f"{k} {v:.4f}" for k, v in rows[n].items() if isinstance(v, float))
            panels.append(
                report.image_panel(
                    entry.task, n, by_name[n], ref, out, caption, threshold=recipe["parity"].get("threshold", 0.5)
                )
            )
    if result.get("layers"):
        result["_layer_chart"] = report.layer_chart(result["layers"])
    html_path = report.write_html(result, out_dir / "report.html", panels=panels)
    result.pop("_layer_chart", None)
    paths_ = {"json": str(out_dir / "report.json"), "html": str(html_path)}
    result["report"] = paths_
    report.write_json(result, out_dir / "report.json")
    return paths_


def parity_all(out_root: Path | None = None, **kw) -> list[dict]:
    """`make parity`: every bundle in out_root; a model whose run raises is recorded as failed."""
    root = Path(out_root or paths.out_dir())
    bundles = list_bundles(root)  # never an export's staging folder
    if not bundles:
        raise InputError(f"no bundles in {root}", fix="run `make export-int8` first")
    results = []
    for b in bundles:
        mid = read_manifest(b)["model_id"]
        try:
            results.append(parity_model(mid, bundle=b, **kw))
        except PortraitError as exc:
            results.append({"model_id": mid, "passed": False, "error": str(exc)})
            print(f"[{mid}] FAILED: {exc}", file=sys.stderr)
    return results


def summary(result: dict) -> str:
    """One paragraph: verdict, key figures, kernel agreement, worst layers, mixed-precision outcome."""
    if "error" in result:
        return f"{result['model_id']}: ERROR {result['error']}"
    judged = Path(result["quant_file"]).name if result.get("quant_file") else "int8"
    lines = [f"{result['model_id']} ({judged} vs float32): " + report.summarize_parity(result["parity"])]
    if result.get("layers"):
        top = sorted(result["layers"]["layers"], key=lambda r: -r["output_error_share"])[:3]
        lines.append(
            "  worst layers: "
            + "; ".join(
                f"{r['name'].split(';')[0]} ({r['op']}, {100 * r['output_error_share']:.1f}%, {r['snr_db']:.1f} dB)"
                for r in top
            )
        )
    m = result.get("mixed_precision")
    if m:
        lines.append("  mixed precision: " + m["message"])
    if result.get("report"):
        lines.append(f"  report: {result['report']['html']}")
    return "\n".join(lines)
