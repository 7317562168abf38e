"""Automatic mixed precision: when int8 misses its parity budget, find a small set of layers to
keep in float32 that meets it.

Calibration runs once (quantize.calibrate_int8); each candidate is then a selective quantization
of the calibrated model (quantize.quantize_calibrated, TFLite's denylisted_nodes), about a second
even for DeepLab, judged on the recipe's kernels and images. The search:

0. the ceiling first: every op float, only the int8 input and output quantized. If that misses
   the budget nothing can meet it (the output's own rounding is the limit): say so and stop;
1. grow a prefix of the culprit ranking (layers.py) in doubling steps (1, 2, 4, ...) until the
   budget is met, then bisect for the shortest passing prefix; a unit is a culprit op plus the
   ops that read its output, so the culprit's output is not rounded to int8 anyway;
2. try to drop each kept unit again, least-culpable first, keeping the set only if it still passes;
3. stop after `max_conversions` candidates and report the best found (the smallest shortfall
   against the budgets) when none passes.

16-bit activations are not tried: the converter applies 16x8 to a whole model, not per layer.

Recipe section (all optional):
    [mixed_precision]
    enabled = true          # the export runs this after a missed budget
    max_conversions = 24    # candidates tried, each one quantization + one parity run
    max_layers = 0          # 0: no limit on layers kept float

Not for: the verdict on a given pair (gate.py) or per-layer figures (layers.py).
"""

from __future__ import annotations

import functools
import hashlib
import pickle
import shutil
import tempfile
import time
from collections.abc import Set
from pathlib import Path

import numpy as np

from .. import engines
from ..latency import time_model
from ..quantize import precisions
from ..quantize.conversions import uint8_input
from ..registry import ModelEntry
from ..runtime import TfliteRunner
from ..sources.tflite_graph import read_tflite
from . import gate, waves
from .layers import compare_layers

# float_output: the mixed model returns float32 (its last layers may then stay float). For outputs
# whose dynamic range 8 bits cannot hold (PyDNet++'s relative depth spans 0.5..390, so AbsRel <= 0.02
# fails even with every op float when the output tensor is int8).
DEFAULTS = {"enabled": False, "max_conversions": 24, "max_layers": 0, "float_output": False}


def settings(recipe: dict) -> dict:
    return {**DEFAULTS, **recipe.get("mixed_precision", {})}


def shortfall(figures: dict, budgets: dict) -> float:
    """How far figures are from their budgets, summed over budgets in units of the bound (0 = met)."""
    total = 0.0
    for key, bound in budgets.items():
        value = figures.get(key[:-4])
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        scale = max(abs(bound), 1e-9)
        if key.endswith("_min"):
            total += max(0.0, bound - value) / scale
        elif key.endswith("_max"):
            total += max(0.0, value - bound) / scale
    return float(total)


class _Judge:
    """Runs candidate models on the judged kernels against cached float references."""

    def __init__(self, entry: ModelEntry, recipe: dict, float_path: Path, images, budgets: dict):
        self.entry, self.recipe, self.images, self.budgets = entry, recipe, images, budgets
        self.kernels = recipe["parity"].get("kernels", "both")
        runner = TfliteRunner(float_path)
        self.refs = [gate._first(runner.run(img)) for _, img in images]

    def __call__(self, path: Path) -> dict:
        sets = ["xnnpack", "reference"] if self.kernels == "both" else [self.kernels]
        per = []
        for kernels in sets:  # "both": judged on each kernel set, the worse figure kept
            runner = TfliteRunner(path, kernels=kernels)
            outs = [gate._first(runner.run(img)) for _, img in self.images]
            figs = gate.task_figures(self.entry, self.recipe, self.refs, outs, [n for n, _ in self.images])
            figs.pop("per_image", None)
            per.append(figs)
        figs = gate.worse_of(per, self.budgets)
        failures = gate._judge(figs, self.budgets)
        return {
            "figures": figs,
            "failures": failures,
            "passed": not failures,
            "shortfall": shortfall(figs, self.budgets),
        }


def calibrated_graph(calibrated: bytes) -> tuple[list[str], dict[str, list[str]]]:
    """Op output names of the calibrated model (the names selective quantization takes) in graph
    order, and for each, the ops that read its output."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "calibrated.tflite"
        path.write_bytes(calibrated)
        g = read_tflite(path)
    names = [g.tensor(op.outputs[0]).name for op in g.ops if op.outputs]
    producer = {op.outputs[0]: g.tensor(op.outputs[0]).name for op in g.ops if op.outputs}
    consumers: dict[str, list[str]] = {n: [] for n in names}
    for op in g.ops:
        if not op.outputs:
            continue
        for i in op.inputs:
            if i in producer:
                consumers[producer[i]].append(g.tensor(op.outputs[0]).name)
    return names, consumers


def still_quantized(path: Path) -> list[dict]:
    """Ops of a selectively quantized model that still compute in int8 (other than the I/O
    QUANTIZE/DEQUANTIZE): the converter does not honour the denylist for every op type."""
    return [
        {"op": o["op"], "name": o["outputs"][0]}
        for o in precisions.tensor_types(path)
        if o["op"] not in ("QUANTIZE", "DEQUANTIZE") and "INT8" in o["output_types"]
    ]


def map_names(ranking: list[str], names: list[str]) -> list[str]:
    """Float-file layer names -> calibrated-model names: exact, else the calibrated op sharing most
    fused-name parts ("Relu_2;BiasAdd_53;Conv2D_36" ~ "Relu_2;BiasAdd_53"); unmatched are dropped."""
    out, known = [], set(names)
    parts = {n: set(n.split(";")) for n in names}
    for r in ranking:
        if r in known:
            out.append(r)
            continue
        rp = set(r.split(";"))
        best = max(names, key=lambda n: len(parts[n] & rp), default=None)
        if best is not None and parts[best] & rp:
            out.append(best)
    return list(dict.fromkeys(out))


def search(
    entry: ModelEntry,
    recipe: dict,
    float_path: Path,
    calibrated: bytes,
    ranking: list[str],
    images,
    out_path: Path,
    *,
    budgets: dict | None = None,
    max_conversions: int | None = None,
    progress=None,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    width: int | None = None,
    pool=None,
) -> dict:
    """Smallest set of layers (from `ranking`, worst first) to keep float so the budgets are met.

    A unit of the search is a culprit op together with the ops that read its output: keeping one
    op float alone would still round its output to int8 for an int8 consumer. The first candidate
    is the ceiling (every op float, only the model's int8 input and output quantized): when even
    that misses the budget no layer set can meet it, and the search stops there.

    engine/address/workers: where the candidates run (engines.pool: this process, or Ray workers
    that each load the calibrated model and the float references once). width: candidates per wave
    (default: the number of workers). pool: an open engines.pool to use (mixed_precision opens it
    early so Ray workers load TensorFlow during the ranking and calibration). The search is sequential (`_plan`) and waves.run_plan
    evaluates its next candidates ahead of it, so the layer set chosen and every figure are the
    same whatever the engine, the workers or the width; only the wall time and the number of
    unused speculative candidates change (record["engine"]).

    calibrated: from quantize.calibrate_int8. Writes the chosen (or best) mixed model to out_path.
    Returns the decision record for the manifest ("mixed_precision" section).
    """
    cfg = settings(recipe)
    budgets = dict(budgets if budgets is not None else gate.recipe_budgets(recipe["parity"]))
    cap = max(3, int(max_conversions or cfg["max_conversions"]))
    names, consumers = calibrated_graph(calibrated)
    ranked = map_names(ranking, names)
    if cfg["max_layers"]:
        ranked = ranked[: int(cfg["max_layers"])]
    order = ranked + [n for n in names if n not in ranked]  # the tail makes the last prefix "all"
    units = [[n] + [c for c in consumers.get(n, []) if c != n] for n in order]
    say = progress or (lambda m: None)
    kernels = recipe["parity"].get("kernels", "both")
    work = Path(tempfile.mkdtemp(prefix="portrait-mixed-"))  # TMPDIR: shared by every node of a cluster
    t0 = time.monotonic()
    try:
        cal_path = work / "calibrated.tflite"
        cal_path.write_bytes(calibrated)
        images_path = work / "images.npz"
        np.savez(images_path, **{f"i{k}": img for k, (_, img) in enumerate(images)})
        common = {
            "calibrated": str(cal_path),
            "float": str(Path(float_path).resolve()),
            "images": str(images_path),
            "names": [nm for nm, _ in images],
            "entry": entry,
            "recipe": recipe,
            "budgets": budgets,
            "kernels": kernels,
            "output_type": "float32" if cfg["float_output"] else "int8",
        }

        def candidate_path(key) -> Path:
            return work / f"candidate_{hashlib.sha1(chr(10).join(key).encode()).hexdigest()[:16]}.tflite"

        def make_shard(key, payload):
            return {**common, "layers": payload["layers"], "out": str(candidate_path(key))}

        plan = functools.partial(_plan, names=names, units=units, cap=cap)
        (tried, base, ceiling, chosen), eng = waves.run_plan(
            plan,
            make_shard,
            judge_candidate,
            engine=engine,
            address=address,
            workers=workers,
            width=width,
            progress=lambda m: say(f"mixed: {m}"),
            pool=pool,
        )
        for r in tried.values():
            say(
                f"mixed: {r['label']}: {len(r['float_layers'])} float layer(s), shortfall {r['shortfall']:.4g}"
                f"{' PASS' if r['passed'] else ''}"
            )
        for r in tried.values():
            r["path"] = candidate_path(tuple(sorted(r["float_layers"])))
        stuck = still_quantized(ceiling["path"])
        passed = [r for r in tried.values() if r["passed"]]
        best = chosen or (
            min(passed, key=lambda r: len(r["float_layers"]))
            if passed
            else min(tried.values(), key=lambda r: (r["shortfall"], len(r["float_layers"])))
        )
        out_path.write_bytes(best["path"].read_bytes())
    finally:
        _JUDGES.clear()
        shutil.rmtree(work, ignore_errors=True)
    record = {
        "met": bool(best["passed"]),
        "float_layers": best["float_layers"],
        "float_ops": [o["op"] for o in precisions.float_ops(out_path) if o["op"] not in ("QUANTIZE", "DEQUANTIZE")],
        "layers_in_model": len(names),
        "budgets": budgets,
        "judged_on": {"kernels": kernels, "images": [nm for nm, _ in images]},
        "before": {"figures": base["figures"], "failures": base["failures"]},
        "ceiling": {
            "figures": ceiling["figures"],
            "failures": ceiling["failures"],
            "what": "every op asked to stay float; only the int8 input and output stay quantized",
            "kept_int8_by_converter": stuck,
        },
        "after": {"figures": best["figures"], "failures": best["failures"]},
        "conversions": len(tried),
        "max_conversions": cap,
        "ranking": order[:16],
        "trials": [
            {
                "candidate": r["label"],
                "float_layers": len(r["float_layers"]),
                "shortfall": r["shortfall"],
                "passed": r["passed"],
            }
            for r in tried.values()
        ],
        "search_seconds": round(time.monotonic() - t0, 1),
        "engine": eng,
        "file": out_path.name,
    }
    if best["passed"]:
        record["message"] = f"budget met with {len(best['float_layers'])} of {len(names)} layer(s) kept float"
    elif not ceiling["passed"] and stuck:
        record["message"] = (
            "no layer set can meet the budget: with every op asked to stay float it still fails ("
            + "; ".join(ceiling["failures"])
            + ") because the converter keeps "
            + ", ".join(f"{s['op']} {s['name']}" for s in stuck[:4])
            + " in int8 regardless (selective quantization does not cover it); see the per-layer "
            "table of the ceiling model, or change that op in the source model"
        )
    elif not ceiling["passed"]:
        record["message"] = (
            "no layer set can meet the budget: even with every op float (only the int8 input and "
            "output quantized) it fails: "
            + "; ".join(ceiling["failures"])
            + ". The rounding of the int8 output alone exceeds the budget; relax the budget or "
            "give the model a float output"
        )
    else:
        record["message"] = (
            f"no candidate met the budget within {len(tried)} conversions; best found keeps "
            f"{len(best['float_layers'])} layer(s) float and fails: "
            + "; ".join(best["failures"])
            + "; raise mixed_precision.max_conversions"
        )
    return record


def _plan(ask, *, names: list[str], units: list[list[str]], cap: int):
    """The sequential search (run by waves.run_plan, replayed from the start as results come in).
    ask(key, payload) -> result of one candidate. Returns (tried in order, plain int8, ceiling,
    chosen or None)."""
    tried: dict[tuple, dict] = {}

    def layers_of(k: int, drop: Set[int] = frozenset()) -> list[str]:
        return list(dict.fromkeys(n for i, u in enumerate(units[:k]) if i not in drop for n in u))

    def trial(layers: list[str], label: str) -> dict:
        key = tuple(sorted(layers))
        if key not in tried:
            tried[key] = {
                **ask(key, {"layers": list(layers), "label": label}),
                "float_layers": list(layers),
                "label": label,
            }
        return tried[key]

    base = trial([], "plain int8")
    ceiling = trial(list(names), "ceiling (every op float)")
    chosen = None
    if ceiling["passed"] and not base["passed"]:
        # 1. doubling unit prefixes, then bisection between the last failing and first passing length
        lo, hi, n = 0, len(units), 1
        while len(tried) < cap and n < len(units):
            if trial(layers_of(n), f"top {n} culprit(s)")["passed"]:
                hi = n
                break
            lo, n = n, n * 2
        while hi - lo > 1 and len(tried) < cap:
            mid = (lo + hi) // 2
            if trial(layers_of(mid), f"top {mid} culprit(s)")["passed"]:
                hi = mid
            else:
                lo = mid
        # 2. drop units again, least culpable first
        drop: set[int] = set()
        for i in reversed(range(hi)):
            if len(tried) >= cap or hi - len(drop) == 1:
                break
            if trial(layers_of(hi, drop | {i}), f"top {hi} less #{i + 1}")["passed"]:
                drop.add(i)
        chosen = tried[tuple(sorted(layers_of(hi, drop)))]
        if not chosen["passed"]:
            chosen = None
    elif base["passed"]:
        chosen = base
    return tried, base, ceiling, chosen


# ---- one candidate, on whichever worker the engine picks ---------------------------------------

_JUDGES: dict[tuple, tuple] = {}  # (calibrated, float, images) -> (calibrated bytes, _Judge): the latest search only


def judge_candidate(shard: dict) -> dict:
    """Quantize one candidate (shard["layers"] kept float) from the calibrated model file, write it to
    shard["out"] and judge it. Module-level: Ray workers import it. The calibrated model and the float
    references are loaded once per worker and search. An error comes back as {"error", "exception"}
    (raised by the search only if the candidate is on its path)."""
    try:
        key = (shard["calibrated"], shard["float"], shard["images"])
        if key not in _JUDGES:
            for p in key:
                if not Path(p).is_file():
                    raise FileNotFoundError(
                        f"{p} is not on this worker's filesystem: on a multi-node cluster set "
                        "TMPDIR to a folder shared by every node, at the same path"
                    )
            _JUDGES.clear()
            with np.load(shard["images"]) as z:
                images = [(nm, z[f"i{k}"]) for k, nm in enumerate(shard["names"])]
            recipe = {**shard["recipe"], "parity": {**shard["recipe"]["parity"], "kernels": shard["kernels"]}}
            _JUDGES[key] = (
                Path(shard["calibrated"]).read_bytes(),
                _Judge(shard["entry"], recipe, Path(shard["float"]), images, shard["budgets"]),
            )
        calibrated, judge = _JUDGES[key]
        out = Path(shard["out"])
        precisions.quantize_calibrated(
            calibrated, out, float_layers=list(shard["layers"]), output_type=shard["output_type"]
        )
        return judge(out)
    except Exception as exc:  # noqa: BLE001 - a speculative candidate's error matters only if the search uses it
        try:  # the error itself goes back to the driver when it can travel (Ray pickles results)
            pickle.loads(pickle.dumps(exc))
        except Exception:  # noqa: BLE001
            return {"error": f"{type(exc).__name__}: {exc}"}
        return {"error": f"{type(exc).__name__}: {exc}", "exception": exc}


def costs(int8_path: Path, mixed_path: Path, *, threads: int = 2, runs: int = 10) -> dict:
    """Latency (XNNPACK, median ms) and size of the mixed model against plain int8."""
    ms_i8 = time_model(int8_path, threads=threads, runs=runs)
    ms_mx = time_model(mixed_path, threads=threads, runs=runs)
    b_i8, b_mx = Path(int8_path).stat().st_size, Path(mixed_path).stat().st_size
    return {
        "latency_ms": {"int8": round(ms_i8, 2), "mixed": round(ms_mx, 2)},
        "latency_ratio": round(ms_mx / ms_i8, 3) if ms_i8 else None,
        "bytes": {"int8": b_i8, "mixed": b_mx},
        "size_ratio": round(b_mx / b_i8, 3),
        "measured_with": f"ai-edge-litert XNNPACK, {threads} threads, median of {runs} runs",
    }


def mixed_precision(
    entry: ModelEntry,
    recipe: dict,
    float_model,
    representative: np.ndarray,
    float_path: Path,
    int8_path: Path,
    images,
    out_path: Path,
    *,
    ranking: list[str] | None = None,
    budgets: dict | None = None,
    max_conversions: int | None = None,
    progress=None,
    engine: dict | None = None,
) -> dict:
    """The whole step: culprit ranking (unless given), calibration, search, costs, full before/after
    figures on both kernel sets. Returns the manifest section; the mixed model is at out_path.
    engine: where the search's candidates run, {"engine": "local"|"ray", "address", "workers"} (see search)."""
    say = progress or (lambda m: None)
    eng = dict(engine or {})
    t0 = time.perf_counter()
    with engines.pool(engine=eng.get("engine") or "local", address=eng.get("address"), workers=eng.get("workers")) as p:
        start_s = round(time.perf_counter() - t0, 2)
        # Ray workers import TensorFlow's converter and LiteRT while this process ranks and calibrates
        p.preload([__name__, "tensorflow.lite.python.convert", "ai_edge_litert.interpreter"])
        if ranking is None:
            say("mixed: per-layer comparison for the culprit ranking")
            ranking = compare_layers(float_path, int8_path, images)["culprits"]
        say("mixed: calibrating once")
        calibrated = precisions.calibrate_int8(float_model, representative)
        record = search(
            entry,
            recipe,
            float_path,
            calibrated,
            ranking,
            images,
            out_path,
            budgets=budgets,
            max_conversions=max_conversions,
            progress=progress,
            width=eng.get("width"),
            pool=p,
        )
    record["engine"].update(
        {
            "search_s": record["engine"]["wall_s"],
            "start_s": start_s,
            "wall_s": round(time.perf_counter() - t0, 2),
            "wall_what": "engine start, ranking, calibration and search",
        }
    )
    record["costs"] = costs(int8_path, out_path)
    budget_recipe = {**recipe, "parity": {**recipe["parity"], **(budgets or {})}}
    if budgets is not None:  # judge with exactly these budgets, not the recipe's plus these
        budget_recipe["parity"] = {
            k: v
            for k, v in budget_recipe["parity"].items()
            if not k.endswith(("_min", "_max")) or k.startswith("min_") or k in budgets
        }
    full = gate.compare_pair(entry, budget_recipe, float_path, out_path, images)
    record["after_full"] = {k: v for k, v in full.items() if k != "per_image"}
    return record


def mixed_float_file(
    entry: ModelEntry,
    recipe: dict,
    float_model,
    representative: np.ndarray,
    float_path: Path,
    int8_path: Path,
    images,
    out_path: Path,
    *,
    progress=None,
    engine: dict | None = None,
) -> dict:
    """The precision ladder's mixed_float rung (quantize/ladder.py takes this function as an argument):
    `mixed_precision`, then the client contract on the input (uint8 pixels, whatever the search's
    quantizer chose) unless the recipe asks for float32 input and output."""
    record = mixed_precision(
        entry,
        recipe,
        float_model,
        representative,
        float_path,
        int8_path,
        images,
        out_path,
        progress=progress,
        engine=engine,
    )
    if settings(recipe).get("float_output") is not True:
        uint8_input(out_path)
    return record
