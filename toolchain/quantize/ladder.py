"""The precision ladder: rungs tried in the recipe's order; the first that meets the parity budget on
BOTH kernel sets (XNNPACK and reference, each figure on the worse of the two) is the handoff.

Rungs are registered by name with one small interface, `build(ctx) -> Built`:

    w8a8           every op int8 (ptq techniques from the recipe when helper modules provide them)
    w8a16_partial  int16 activations on the fewest layers that meet the budget (not a rung: see
                   NOT_IMPLEMENTED; listing it in a recipe is refused)
    w8a16          the whole model with int16 activations, int8 weights (16x8); with
                   split_weights = "all" every convolution is split into two int8 halves (split.py)
    mixed_float    the float-layer search of parity/mixed.py; last resort, named "mixed float, N of M
                   layers float" and never called int8

A rung "meets" when its parity passes on both kernel sets AND (integer rungs) the file has zero float
ops. The ladder stops at the first rung that meets. `handoff_cpu` is chosen separately: the fastest
file on XNNPACK that meets the budget among w8a8 (when it met), float16 and float32, with latency
measured in the same run.

Recipe:
    [ladder]
    rungs = ["w8a8", "w8a16", "mixed_float"]
    w8a8 = { techniques = [], ranges = "minmax", leaky_relu = "op" }   # ptq techniques (quantize/ptq.py);
                              # leaky_relu = "prelu": written as one PRELU op (sources/leaky_relu.py)
    w8a16 = { split_weights = "all" }   # or "none": every convolution as W_hi + W_lo (split.py)
    w8a16_output = "int16"    # or "int8": MediaPipe's segmenter refuses int16 output tensors
    web_outputs = true        # every rung's int8 output as uint8 (exact), int16 output as float32, so that
                              # LiteRT.js loads the file (conversions.web_output_bytes); false keeps them

Not for: the parity figures themselves (parity/gate.py) or the bundle (export.py, bundle.py).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import cache
from ..errors import ExportError, PortraitError, RecipeError
from ..latency import host_isa, time_model
from ..registry import ModelEntry
from ..sources import FloatModel
from ..sources.leaky_relu import FORMS as LEAKY_FORMS
from . import conversions, precisions, ptq
from .conversions import web_output
from .graphedit import Editable
from .split import split_weights

RUNG_ORDER = ("w8a8", "w8a16_partial", "w8a16", "mixed_float")
NOT_IMPLEMENTED = {
    "w8a16_partial": "per-layer int16 activations are not a ladder rung: ai-edge-quantizer "
    "0.10.0 per-op recipes left LEAKY_RELU / HARD_SWISH float (issue 10), and the "
    "TF converter applies 16x8 to a whole model only. An int16 tail spliced onto "
    "the w8a8 file (experiments/partial16.py, experiments/tail16_measure.py) does not "
    "get PyDNet++ there (int16 on its last 14 ops: delta1 0.81 / 0.90), and an "
    "int16 head leaves the selfie's leopard photo at IoU 0.27-0.74"
}
DEFAULT_RUNGS = ["w8a8", "w8a16", "mixed_float"]


@dataclass
class Built:
    path: Path
    record: dict = field(default_factory=dict)
    label: str = ""


@dataclass
class Context:
    """Everything a rung needs. `convert(name, build)` and `judge(path)` go through the cache."""

    entry: ModelEntry
    recipe: dict
    float_model: FloatModel  # pixel input, transform applied
    float_path: Path  # its float32 .tflite
    representative: np.ndarray
    images: list
    workdir: Path
    say: Callable[[str], None]
    convert: Callable[..., Path]  # (file name, build(tmp_path), extra=key parts) -> path (cached)
    judge: Callable[..., dict]  # (path, kernels=both) -> parity figures (cached)
    results: dict = field(default_factory=dict)  # rung name -> outcome, filled by run_ladder
    engine: dict = field(default_factory=dict)  # where candidate searches run (parity/waves.py)
    # the mixed_float rung's search (parity/mixed.py `mixed_float_file`): parity sits above quantize, so
    # the caller (export.py) hands it in
    search_mixed: Callable[..., dict] | None = None
    # (per_kernels figures, budgets, kernel sets) -> failures: parity/gate.judge_budgets, passed in by export
    judge_budgets: Callable[[dict, dict, tuple], list] | None = None


RUNGS: dict[str, Callable[[Context], Built]] = {}


def rung(name: str):
    def deco(fn):
        RUNGS[name] = fn
        return fn

    return deco


def settings(recipe: dict) -> dict:
    cfg = dict(recipe.get("ladder") or {})
    rungs = list(cfg.get("rungs", DEFAULT_RUNGS))
    where = recipe.get("_path", "recipe")
    unknown = [r for r in rungs if r not in RUNG_ORDER]
    if unknown:
        raise RecipeError(f"unknown ladder rung(s) {unknown}", where=where, fix=f"use rungs from {list(RUNG_ORDER)}")
    todo = [r for r in rungs if r in NOT_IMPLEMENTED]
    if todo:
        raise RecipeError(
            f"ladder rung {todo[0]!r} is not implemented: {NOT_IMPLEMENTED[todo[0]]}",
            where=where,
            fix="remove it from [ladder] rungs",
        )
    if rungs != [r for r in RUNG_ORDER if r in rungs]:
        raise RecipeError(f"ladder rungs must keep the order {list(RUNG_ORDER)}, got {rungs}", where=where)
    output = cfg.get("w8a16_output", "int16")
    if output not in ("int16", "int8"):
        raise RecipeError(f'ladder.w8a16_output must be "int16" or "int8", got {output!r}', where=where)
    web = cfg.get("web_outputs", True)
    if not isinstance(web, bool):
        raise RecipeError(f"ladder.web_outputs must be true or false, got {web!r}", where=where)
    w16 = {"split_weights": "none", **(cfg.get("w8a16") or {})}
    if w16["split_weights"] not in ("none", "all") or set(w16) - {"split_weights"}:
        raise RecipeError(f'ladder.w8a16 must be {{ split_weights = "none" | "all" }}, got {w16}', where=where)
    w8 = {"techniques": [], "ranges": "minmax", "leaky_relu": "op", **(cfg.get("w8a8") or {})}
    if w8["leaky_relu"] not in LEAKY_FORMS:
        raise RecipeError(
            f"ladder.w8a8.leaky_relu must be one of {list(LEAKY_FORMS)}, got {w8['leaky_relu']!r}", where=where
        )
    return {"rungs": rungs, "w8a8": w8, "w8a16": w16, "w8a16_output": output, "web_outputs": web}


# ---- rungs -----------------------------------------------------------------------------------


def _ptq_settings(ctx: Context) -> tuple[list, str, str, bool]:
    """(techniques, ranges, leaky ReLU form, whether ptq.w8a8 makes the file) from the recipe's [ladder] w8a8;
    plain min/max with the op as imported is the converter's own int8 conversion."""
    cfg = settings(ctx.recipe)["w8a8"]
    techniques, ranges, leaky = list(cfg["techniques"]), cfg["ranges"], cfg["leaky_relu"]
    return techniques, ranges, leaky, bool(techniques or ranges != "minmax" or leaky != "op")


def _ptq_w8a8(ctx: Context, name: str, *, with_labels: bool = False) -> tuple[Path, dict | None]:
    """ptq.w8a8 through the conversion cache (its key names the techniques, ranges, form and ptq code):
    (file, ptq's record, or None when the file came from the cache)."""
    techniques, ranges, leaky, _ = _ptq_settings(ctx)
    holder: dict = {}

    def build(tmp: Path):
        holder["record"] = ptq.w8a8(
            ctx.entry,
            ctx.float_path,
            ctx.representative,
            tmp,
            ctx.workdir,
            techniques=techniques,
            ranges=ranges,
            outputs_positions=ctx.recipe["outputs"],
            leaky_relu_form=leaky,
            progress=ctx.say,
            with_labels=with_labels,
        )

    path = ctx.convert(name, build, extra=[techniques, ranges, *_leaky_key(leaky), cache.files_digest(cache.PTQ_CODE)])
    return path, holder.get("record")


@rung("w8a8")
def _w8a8(ctx: Context) -> Built:
    name = f"{ctx.entry.id}_int8.tflite"
    techniques, ranges, leaky, use_ptq = _ptq_settings(ctx)
    record = {"techniques": techniques, "ranges": ranges, "leaky_relu": leaky}
    if use_ptq:
        path, ptq_record = _ptq_w8a8(ctx, name)
        record.update(ptq_record or {"from_cache": True})
    else:
        path = ctx.convert(
            name,
            lambda tmp: precisions.convert(
                ctx.float_model, "int8", tmp, representative=ctx.representative, progress=ctx.say
            ),
        )
    precisions.check_all_int8(path, ctx.recipe["int8"]["allow_float_ops"])
    return Built(path, record, "w8a8 (all int8)")


def labels_variant(ctx: Context, name: str, labels_model: Callable[[], FloatModel]) -> Path:
    """The ArgMax (uint8 labels) variant of the w8a8 file, made the same way (ptq techniques when the
    recipe sets them, else plain min/max)."""
    if _ptq_settings(ctx)[3]:
        return _ptq_w8a8(ctx, name, with_labels=True)[0]
    return ctx.convert(
        name,
        lambda tmp: precisions.convert(
            labels_model(), "int8", tmp, representative=ctx.representative, progress=ctx.say
        ),
    )


@rung("w8a16")
def _w8a16(ctx: Context) -> Built:
    # the converter has no int16 HARD_SWISH; the importer writes hard-swish as ADD/RELU6/MUL
    # (tflite_graph.hard_swish_delegable), which has int16 kernels
    cfg = settings(ctx.recipe)
    output, split_mode = cfg["w8a16_output"], cfg["w8a16"]["split_weights"]
    record = {
        "converter": "TFLite EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8, "
        "no float fallback; uint8 pixel input (CAST + QUANTIZE in front)",
        "output": output,
        "split_weights": split_mode,
    }
    name = f"{ctx.entry.id}_w8a16.tflite"
    if split_mode == "none":
        model = ctx.float_model
        path = ctx.convert(
            name, lambda tmp: conversions.convert_16x8(model, tmp, ctx.representative, output=output, progress=ctx.say)
        )
        return Built(path, record, "w8a16 (int8 weights, int16 activations)")
    holder = {}

    def build(tmp: Path):
        split_path = ctx.workdir / f"{ctx.entry.id}_split_float.tflite"
        holder["split"] = split_weights(ctx.float_path, split_path)
        ctx.say(f"w8a16: {len(holder['split']['split'])} convolution(s) split into int8 halves (W_hi + W_lo)")
        model = ptq.reimport(ctx.entry, split_path, ctx.workdir, outputs_positions=ctx.recipe["outputs"])
        conversions.convert_16x8(model, tmp, ctx.representative, output=output, progress=ctx.say)

    path = ctx.convert(name, build, extra=["split_weights", split_mode, cache.files_digest(cache.PTQ_CODE)])
    split = holder.get("split")
    if split is None:  # from the cache: the same float file gives the same split
        split = {"split": Editable(ctx.float_path).convs()}
    record["split_layers"] = len(split["split"])
    return Built(path, record, "w8a16 (int8 weights split in two halves, int16 activations)")


@rung("mixed_float")
def _mixed_float(ctx: Context) -> Built:
    int8 = ctx.results.get("w8a8", {}).get("path")
    if int8 is None:
        raise ExportError(
            "mixed_float needs the w8a8 rung before it (its culprit ranking starts from that file)",
            where=ctx.recipe.get("_path"),
            fix="put w8a8 first in [ladder] rungs",
        )
    search = ctx.search_mixed
    if search is None:
        raise ExportError(
            "mixed_float needs the float-layer search, and this ladder run was given none",
            fix="pass search_mixed=toolchain.parity.mixed.mixed_float_file in the ladder's Context",
        )
    out = ctx.workdir / f"{ctx.entry.id}_mixed_float.tflite"
    judged = {**ctx.recipe, "parity": {**ctx.recipe["parity"], "kernels": "reference"}}

    ran = []

    def build(tmp: Path):
        # the search's file and record cached together (one JSON, the model base64 inside): the same
        # float file, int8 file, images, calibration and code give the same choice on any engine
        ran.append(True)
        model = tmp.parent / out.name  # cached_path builds in a fresh temporary folder
        rec = search(
            ctx.entry,
            judged,
            ctx.float_model,
            ctx.representative,
            ctx.float_path,
            Path(int8),
            ctx.images,
            model,
            progress=ctx.say,
            engine=ctx.engine,
        )
        tmp.write_text(
            json.dumps(
                {"record": rec, "tflite_base64": base64.b64encode(model.read_bytes()).decode()}, default=cache._default
            )
        )

    saved = ctx.convert(
        f"{ctx.entry.id}_mixed_float_search.json",
        build,
        extra=[
            "mixed_float",
            cache.file_digest(Path(int8)),
            [cache.array_digest(img) for _, img in ctx.images],
            [nm for nm, _ in ctx.images],
            cache.files_digest(("parity/*.py", "engines.py", "quantize/*.py")),
        ],
    )
    blob = json.loads(Path(saved).read_text())
    record = blob["record"]
    if not ran:
        record["from_cache"] = "search, its timings and costs from the run that made the cached result"
    out.write_bytes(base64.b64decode(blob["tflite_base64"]))
    n, m = len(record.get("float_layers") or []), record.get("layers_in_model")
    return Built(
        out, {k: v for k, v in record.items() if k not in ("trials",)}, f"mixed float, {n} of {m} layers float"
    )


def _leaky_key(form: str) -> list:
    """Cache key part for the leaky ReLU form: none for the default, so files cached before the option
    existed keep their keys."""
    return [] if form == "op" else ["leaky_relu", form]


# ---- the ladder ------------------------------------------------------------------------------


def op_counts(path: Path) -> dict:
    """Ops reading or writing float tensors (QUANTIZE/DEQUANTIZE at a float boundary included) and
    ops with int16 tensors. The one exception is the output edge (precisions.is_output_edge: an
    int16 output dequantized for web runtimes), counted apart as `edge_ops`."""
    ops = precisions.tensor_types(path)
    edge = [o for o in ops if precisions.is_output_edge(o)]
    flt = [
        o
        for o in ops
        if {"FLOAT32", "FLOAT16"} & (set(o["input_types"]) | set(o["output_types"]))
        and not precisions.is_output_edge(o)
    ]
    i16 = [o for o in ops if "INT16" in set(o["input_types"]) | set(o["output_types"])]
    return {
        "ops": len(ops),
        "float_ops": len(flt),
        "int16_ops": len(i16),
        "float_op_names": sorted({o["op"] for o in flt}),
        "edge_ops": [o["op"] for o in edge],
    }


def run_ladder(ctx: Context) -> dict:
    """Try the recipe's rungs in order; stop at the first that meets. Returns the manifest's `ladder`
    list and the handoff file name (None when no rung met)."""
    rungs = settings(ctx.recipe)["rungs"]
    tried, handoff = [], None
    for name in rungs:
        t0 = time.monotonic()
        ctx.say(f"ladder: trying {name}")
        row = {"rung": name}
        try:
            built = RUNGS[name](ctx)
            if settings(ctx.recipe)["web_outputs"] and built.path is not None:
                web_output(built.path)  # judged below as handed off: the file web runtimes can load
        except PortraitError as exc:
            row.update({"met": False, "error": str(exc), "seconds": round(time.monotonic() - t0, 1)})
            tried.append(row)
            ctx.say(f"ladder: {name} could not be built: {exc}")
            continue
        counts = op_counts(built.path)
        integer_only = counts["float_ops"] == 0
        misread = conversions.bias_scale_mismatches(built.path.read_bytes())  # a kernel would read these biases wrongly
        figures = ctx.judge(built.path)
        met = bool(figures["passed"]) and (integer_only or name == "mixed_float") and not misread
        row.update(
            {
                "file": built.path.name,
                "label": built.label,
                "met": met,
                "integer_only": integer_only,
                **counts,
                "passed_parity": bool(figures["passed"]),
                "failures": figures["failures"]
                + ([] if integer_only or name == "mixed_float" else [f"{counts['float_ops']} float op(s) left"])
                + (
                    [
                        f"{len(misread)} op(s) whose integer bias is not on input scale x weight scale "
                        f"(first: {misread[0]})"
                    ]
                    if misread
                    else []
                ),
                "figures": {k: _strip(v) for k, v in figures["per_kernels"].items()},
                "worse_of_both": _strip(figures),
                "record": built.record,
                "seconds": round(time.monotonic() - t0, 1),
            }
        )
        ctx.results[name] = {"path": built.path, "figures": figures, "row": row}
        tried.append(row)
        ctx.say(
            f"ladder: {name}: " + ("MET" if met else "missed: " + "; ".join(row["failures"])) + f" ({row['seconds']} s)"
        )
        if met:
            handoff = built.path
            break
    return {"ladder": tried, "handoff": handoff}


def _strip(figs: dict) -> dict:
    return {k: v for k, v in figs.items() if k not in ("per_image", "per_kernels")}


def cpu_handoff_budgets(recipe: dict) -> dict | None:
    """The recipe's [parity.handoff_cpu] budgets (`<figure>_min` / `_max`), or None: the handoff's own."""
    cfg = recipe["parity"].get("handoff_cpu")
    if cfg is None:
        return None
    bad = [k for k in cfg if not k.endswith(("_min", "_max"))]
    if not isinstance(cfg, dict) or not cfg or bad:
        raise RecipeError(
            f"[parity.handoff_cpu] holds budgets `<figure>_min` / `<figure>_max` only, got {bad or cfg}",
            where=recipe.get("_path", "recipe"),
            fix="e.g. delta1_min = 0.99, blur_mean_px_max = 0.5",
        )
    return dict(cfg)


def choose_handoff_cpu(ctx: Context, files: dict[str, Path], *, runs: int = 10, threads: int = 2) -> dict:
    """The fastest file on XNNPACK that meets the budget: w8a8 when it met on both kernel sets,
    else float16 / float32 (float16 judged against float32 on XNNPACK). Latencies in this run.
    With [parity.handoff_cpu] budgets in the recipe, those judge w8a8 (both kernel sets, zero float
    ops) and float16 (XNNPACK) instead of the handoff's budget."""
    cands: list[Path] = []
    rows: dict[str, dict[str, Any]] = {}
    cpu_budgets = cpu_handoff_budgets(ctx.recipe)
    if cpu_budgets is not None and ctx.judge_budgets is None:
        raise ExportError("[parity.handoff_cpu] budgets need Context.judge_budgets (parity/gate.judge_budgets)")
    judge_budgets: Callable[[dict, dict, tuple], list] = ctx.judge_budgets or (lambda figs, budgets, kernels: [])
    w8 = ctx.results.get("w8a8")
    if w8 is not None:
        if cpu_budgets is None:
            rows[w8["path"].name] = {"meets": bool(w8["row"]["met"]), "judged_on": "both kernel sets"}
        else:
            fails = judge_budgets(w8["figures"]["per_kernels"], cpu_budgets, ("xnnpack", "reference"))
            fails += [f for f in w8["row"]["failures"] if "float op" in f or "integer bias" in f]
            rows[w8["path"].name] = {
                "meets": not fails,
                "failures": fails,
                "budgets": cpu_budgets,
                "judged_on": "both kernel sets, [parity.handoff_cpu] budgets",
            }
        if rows[w8["path"].name]["meets"]:
            cands.append(w8["path"])
    for prec in ("float16", "float32"):
        p = files.get(f"{ctx.entry.id}_{prec}.tflite")
        if p is None:
            continue
        if prec == "float32":
            rows[p.name] = {"meets": True, "judged_on": "is the reference"}
        else:
            figs = ctx.judge(p, kernels=("xnnpack",))
            fails = (
                figs["failures"]
                if cpu_budgets is None
                else judge_budgets(figs["per_kernels"], cpu_budgets, ("xnnpack",))
            )
            rows[p.name] = {"meets": not fails, "judged_on": "xnnpack", "failures": fails}
            if cpu_budgets is not None:
                rows[p.name].update(budgets=cpu_budgets, judged_on="xnnpack, [parity.handoff_cpu] budgets")
        if rows[p.name]["meets"]:
            cands.append(p)
    for p in cands:
        rows[p.name]["latency_ms"] = round(time_model(p, threads=threads, runs=runs), 2)
    best = pick_fastest({p.name: [rows[p.name]["latency_ms"]] for p in cands}) if cands else None
    return {
        "file": best,
        "candidates": rows,
        "isa": host_isa(),
        "tie_band": TIE_BAND,
        "measured_with": f"ai-edge-litert XNNPACK, {threads} threads, median of {runs} runs, this export run",
    }


# The CPU handoff prefers the smaller file (w8a8, then float16, then float32); a bigger file takes its place
# only when it is faster by more than TIE_BAND in every timed round (its slowest round against the smaller
# file's fastest). On a shared host the timings of one file differ run to run by far more than 10 % (selfie
# float16 2.3 / 2.7 ms, float32 2.9 / 5.5 ms in two cold exports; the plain fastest flipped between them),
# so "the fastest" alone would make two exports of the same sources write different bundles.
TIE_BAND = 1.25
_PREFERENCE = ("_int8.tflite", "_float16.tflite", "_float32.tflite")


def pick_fastest(rounds_ms: dict[str, Any]) -> str:
    """The handoff_cpu among candidates {file name: latency ms, or the ms of each timed round}: the smallest
    file, unless a bigger one is clearly faster (TIE_BAND, every round)."""
    rounds = {n: (list(v) if isinstance(v, (list, tuple)) else [v]) for n, v in rounds_ms.items()}

    def rank(n: str) -> int:
        return next((i for i, sfx in enumerate(_PREFERENCE) if n.endswith(sfx)), len(_PREFERENCE))

    order = sorted(rounds, key=lambda n: (rank(n), n))
    best = order[0]
    for n in order[1:]:
        if max(rounds[n]) * TIE_BAND < min(rounds[best]):
            best = n
    return best
