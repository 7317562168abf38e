"""The export pipeline: source file -> float reference -> quantized variants -> parity verdict -> bundle.

Read top to bottom, one step per function call in `export_model`. Nothing is handed off (no
bundle folder is touched) unless every check and the parity gate pass.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np

from . import __version__, cache, calibration_set, paths
from .bundle import write_bundle
from .device.device_check import run_device_check
from .device.goldens import write_goldens
from .errors import ExportError, ModelNotFound, ParityError, PortraitError
from .handoff import clients, metadata
from .handoff.verify import verify_staged
from .latency import time_model
from .parity.gate import compare_pair, judge_budgets, parity_images
from .parity.mixed import mixed_float_file
from .parity.report import format_figures
from .quantize import ladder, precisions
from .quantize.conversions import apply_output_transform
from .quantize.conversions import transform_settings as output_transform_settings
from .quantize.xnnpack import delegation
from .recipes import load_recipe
from .registry import ModelEntry, get_entry, load_registry, locate, locate_or_fetch_embedded, sha256_of
from .runtime import KERNELS, TfliteRunner
from .sources import FloatModel, import_model
from .sources.tflite_graph import float_reference_bytes, has_quantized_weights, output_key, read_tflite


def _say(model_id: str, msg: str) -> None:
    print(f"[{model_id}] {msg}", file=sys.stderr, flush=True)


@dataclass
class ExportResult:
    model_id: str
    status: str  # "exported", "skipped", "failed"
    bundle: Path | None = None
    figures: dict = field(default_factory=dict)
    message: str = ""


def export_model(
    model_id: str,
    *,
    out_root: Path | None = None,
    recipe: dict | None = None,
    images_folder: Path | None = None,
    keep_workdir: bool = False,
    quiet: bool = False,
    registry: dict[str, ModelEntry] | None = None,
    engine: dict | None = None,
) -> ExportResult:
    """Export one registered model in every precision of its recipe; returns the bundle path.
    engine: where the ladder's candidate searches run, {"engine": "local"|"ray", "address", "workers"}
    (parity/mixed.py search; the default runs them in this process)."""
    entry = get_entry(model_id, registry)
    recipe = recipe or load_recipe(entry.recipe or model_id)
    say = (lambda m: None) if quiet else (lambda m: _say(model_id, m))
    t_start = time.monotonic()
    source = locate_or_fetch_embedded(entry, progress=say)
    say(f"source {source} (sha256 verified)" if entry.sha256 else f"source {source}")
    workdir = Path(tempfile.mkdtemp(prefix=f"portrait-{model_id}-"))
    steps = _Steps(entry, recipe, source, workdir, say)
    try:
        float_model = steps.float_model()
        images = parity_images(entry, images_folder, recipe["parity"].get("image_sets"))

        files: dict[str, Path] = {}
        representative = None
        if "int8" in recipe["precisions"]:
            representative = steps.representative()
        for precision in recipe["precisions"]:
            if precision == "int8":
                continue  # the precision ladder makes the integer files (quantize/ladder.py)
            say(f"converting to {precision}")
            path = steps.convert(
                f"{model_id}_{precision}.tflite",
                lambda tmp, p=precision: precisions.convert(float_model, p, tmp, progress=say),
            )
            files[path.name] = path
        float_path = files.get(f"{model_id}_float32.tflite")
        if float_path is None:
            raise ExportError(
                "the recipe must include float32: parity and checks compare against it", where=recipe["_path"]
            )

        import_check = steps.cached_value(
            ["import_check", sha256_of(float_path), [nm for nm, _ in images]],
            lambda: check_import(entry, recipe, source, float_path, images),
        )
        if import_check:
            say("import check: " + format_figures(import_check))

        onnx_check = None
        if recipe["onnx"]:
            say("exporting ONNX (tf2onnx) and checking it in onnxruntime")
            onnx_path = steps.convert(
                f"{model_id}_float32.onnx",
                lambda tmp: precisions.export_onnx(float_model, tmp, float_tflite=float_path),
            )
            n = recipe["onnx_check"]["samples"]
            diff = steps.cached_value(
                ["onnx_check", sha256_of(onnx_path), [nm for nm, _ in images[:n]]],
                lambda: precisions.check_onnx(float_model, onnx_path, np.stack([img for _, img in images[:n]])),
            )
            onnx_check = {
                "max_abs_diff": diff,
                "budget": recipe["onnx_check"]["max_abs_diff"],
                "runtime": "onnxruntime",
            }
            if diff > recipe["onnx_check"]["max_abs_diff"]:
                raise ExportError(
                    f"ONNX output differs from TF by {diff:.3g} > {onnx_check['budget']}",
                    fix="inspect the ONNX graph; set onnx = false in the recipe to skip it",
                )
            say(f"onnx check: max abs diff {diff:.3g}")
            files[onnx_path.name] = onnx_path

        parity, ladder_out, handoff, handoff_cpu, mixed_record = None, None, None, None, None
        if "int8" in recipe["precisions"]:
            assert representative is not None  # made above whenever int8 is asked for
            ctx = ladder.Context(
                entry,
                recipe,
                float_model,
                float_path,
                representative,
                images,
                workdir,
                say,
                convert=steps.convert,
                judge=lambda path, kernels=KERNELS: steps.judge(float_path, path, images, kernels),
                engine=dict(engine or {}),
                judge_budgets=judge_budgets,
                search_mixed=mixed_float_file,
            )
            ladder_out = ladder.run_ladder(ctx)
            w8 = ctx.results.get("w8a8")
            if w8 is not None:
                files[w8["path"].name] = w8["path"]
                parity = w8["figures"]
            tried = ladder_out["ladder"]
            if ladder_out["handoff"] is None:
                raise ParityError(
                    f"{model_id}: no rung of the precision ladder met the parity budget on both "
                    "kernel sets: "
                    + " | ".join(
                        f"{r['rung']}: " + "; ".join(r.get("failures") or [r.get("error", "")]) for r in tried
                    ),
                    where=recipe["_path"],
                    figures={**(parity or {}), "ladder": tried},
                    fix="see `portrait parity " + model_id + "` for the culprit layers; add a rung to "
                    "[ladder] rungs, or relax the budget only with a reason",
                )
            handoff_path = ladder_out["handoff"]
            files[handoff_path.name] = handoff_path
            handoff = handoff_path.name
            parity = ctx.results[tried[-1]["rung"]]["figures"]  # the handoff's figures
            if tried[-1]["rung"] == "mixed_float":
                mixed_record = tried[-1]["record"]
            if recipe["label_variant"]:
                say("converting the ArgMax (uint8 labels) int8 variant")
                labels_path = ladder.labels_variant(
                    ctx, f"{model_id}_int8_labels.tflite", lambda: steps.float_model(with_labels=True)
                )
                precisions.check_all_int8(labels_path, recipe["int8"]["allow_float_ops"])
                files[labels_path.name] = labels_path
            say("handoff_cpu: timing the files that meet the budget on XNNPACK")
            handoff_cpu = _retime_cpu_candidates(ladder.choose_handoff_cpu(ctx, files), files)
            say(
                f"handoff_cpu: {handoff_cpu['file']} "
                + ", ".join(
                    f"{k} {v['latency_ms']} ms" for k, v in handoff_cpu["candidates"].items() if "latency_ms" in v
                )
                + f" [{handoff_cpu['isa']['summary']}]"
            )
        manifest = build_manifest(
            entry,
            recipe,
            source,
            files,
            import_check=import_check,
            onnx_check=onnx_check,
            parity=parity,
            representative=representative,
            mixed_precision=mixed_record,
            handoff=handoff,
            seconds=time.monotonic() - t_start,
            ladder_out=ladder_out,
            handoff_cpu=handoff_cpu,
            cache_hits=steps.hits,
        )
        manifest, run = split_run_record(manifest)
        _handoff_metadata(entry, manifest, files, workdir, say)
        bundle = write_bundle(
            out_root or paths.out_dir(),
            model_id,
            files,
            manifest,
            extra_text={"labels.txt": "\n".join(entry.labels) + "\n"} if entry.labels else None,
            finalize=lambda staged: _finalize_handoff(staged, recipe, say, run),
        )
        handoff_gpu = json.loads((bundle / "manifest.json").read_text()).get("handoff_gpu")
        run_path = write_run_record(Path(bundle).parent, model_id, run, time.monotonic() - t_start)
        say(
            f"bundle written: {bundle} ({time.monotonic() - t_start:.0f} s; cache hits: {len(steps.hits)}; "
            f"this run's timings: {run_path})"
        )
        return ExportResult(
            model_id,
            "exported",
            bundle,
            {
                "parity": parity,
                "import_check": import_check,
                "onnx_check": onnx_check,
                "sizes": _sizes(files),
                "mixed_precision": mixed_record,
                "ladder": ladder_out["ladder"] if ladder_out else None,
                "handoff": handoff,
                "handoff_cpu": handoff_cpu["file"] if handoff_cpu else None,
                "handoff_gpu": handoff_gpu,
            },
        )
    finally:
        if keep_workdir:
            say(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _retime_cpu_candidates(choice: dict, files: dict[str, Path], *, rounds: int = 3, runs: int = 5) -> dict:
    """handoff_cpu on a busy host: time the candidates that meet in interleaved rounds (the first
    timing, median of 10, is round 1; the others are medians of `runs`) and take each one's fastest
    round (other processes only ever add time); the choice (ladder.pick_fastest) prefers the smaller file
    unless another is faster in every round, so a burst of load cannot pick the slower file."""

    names = [n for n, v in choice["candidates"].items() if v.get("latency_ms") is not None and n in files]
    if len(names) < 2:
        return choice
    times = {n: [choice["candidates"][n]["latency_ms"]] for n in names}
    for _ in range(rounds - 1):
        for n in names:
            times[n].append(round(time_model(files[n], runs=runs), 2))
    for n in names:
        choice["candidates"][n]["latency_ms"] = round(min(times[n]), 2)
        choice["candidates"][n]["latency_ms_median"] = round(statistics.median(times[n]), 2)
        choice["candidates"][n]["latency_ms_rounds"] = times[n]
    choice["file"] = ladder.pick_fastest(times)
    choice["measured_with"] += f"; {rounds} interleaved rounds of {runs}, fastest round"
    return choice


class _Steps:
    """The export's steps that do not change between runs, through the cache (toolchain/cache.py):
    keyed by the source SHA-256, the recipe, the registry entry and the toolchain's code digest."""

    def __init__(self, entry, recipe, source: Path, workdir: Path, say):
        self.entry, self.recipe, self.source, self.workdir, self.say = entry, recipe, source, workdir, say
        self.hits: list[str] = []
        self._float: dict[bool, FloatModel] = {}
        recipe_key = {k: v for k, v in recipe.items() if not k.startswith("_")}
        self.base = cache.key("export", sha256_of(source), entry.id, repr(entry), recipe_key)
        self._rep_key: str | None = None

    def float_model(self, with_labels: bool = False):
        if with_labels in self._float:
            return self._float[with_labels]
        transform = output_transform_settings(self.recipe)
        k = cache.key(self.base, "float", with_labels)
        meta = {}

        def build(tmp: Path):
            self.say("importing into a float TF model" + (" (ArgMax labels variant)" if with_labels else ""))
            tmp.mkdir()
            m = import_model(self.entry, self.source, tmp, outputs=self.recipe["outputs"], with_labels=with_labels)
            if transform and not with_labels:
                self.say(f"output transform inside the graph: {transform['formula']}")
                m = apply_output_transform(m, transform, tmp)
            (tmp / "float_model.json").write_text(
                json.dumps({"dir": Path(m.saved_model_dir).name, "output_names": m.output_names, "notes": m.notes})
            )

        folder = cache.cached_path(k, "float", build, hits=self.hits)
        meta = json.loads((folder / "float_model.json").read_text())
        model = FloatModel(
            self.entry.id,
            folder / meta["dir"],
            tuple(self.entry.input.size),
            meta["output_names"],
            self.source,
            self.entry.source_format,
            notes=meta["notes"],
        )
        self._float[with_labels] = model
        return model

    def representative(self) -> np.ndarray:
        cal = self.recipe["calibration"]
        photos = paths.list_photos(paths.photos_dir())
        listing = [(p.name, p.stat().st_size) for p in photos]
        k = cache.key("calibration", list(self.entry.input.size), cal, listing)
        rep = cache.cached_array(
            k,
            lambda: calibration_set.for_recipe(self.entry.input.size, cal),
            hits=self.hits,
        )
        self._rep_key = cache.array_digest(rep)
        self.say(f"calibration set: {len(rep)} samples from {cal['sources']}")
        return rep

    def convert(self, name: str, build, extra=()) -> Path:
        """A converted file (cached by name, the float import, the calibration set and `extra`)."""
        path = cache.cached_path(
            cache.key(self.base, "convert", name, self._rep_key, *extra), name, build, hits=self.hits
        )
        if self.hits and self.hits[-1] == name:
            self.say(f"{name}: from the cache")
        local = self.workdir / name
        shutil.copyfile(path, local)
        return local

    def cached_value(self, parts: list, compute):
        """A JSON-able figure (cached by the export's key and `parts`)."""
        n = len(self.hits)
        value = cache.cached_json(cache.key(self.base, *parts), lambda: {"value": compute()}, hits=self.hits)["value"]
        if len(self.hits) > n:
            self.hits[-1] = str(parts[0])
        return value

    def judge(self, float_path: Path, quant_path: Path, images, kernels=KERNELS) -> dict:
        """Parity figures of quant_path vs float_path on `kernels` (cached by both files' SHA-256)."""
        digest = cache.key(
            "parity",
            sha256_of(float_path),
            sha256_of(quant_path),
            [cache.array_digest(img) for _, img in images],
            [n for n, _ in images],
            {k: v for k, v in self.recipe.items() if k in ("parity", "output_transform")},
            self.entry.task,
            list(kernels),
            _set_listing(self.recipe),
        )
        n = len(self.hits)
        figs = cache.cached_json(
            digest,
            lambda: compare_pair(self.entry, self.recipe, float_path, quant_path, images, kernel_sets=kernels),
            hits=self.hits,
        )
        if len(self.hits) > n:
            self.hits[-1] = f"parity {quant_path.name} ({'/'.join(kernels)})"
            self.say(f"parity of {quant_path.name} on {'/'.join(kernels)}: from the cache")
        return figs


def _set_listing(recipe: dict) -> list:
    """Names and sizes of the files of the recipe's further parity image sets ([parity.sets.*]): part of
    the parity cache key, since compare_pair reads those images itself."""
    out = []
    for name in sorted(recipe["parity"].get("sets") or {}):
        folder = paths.photos_dir() if name == "photos" else paths.depth_photos_dir()
        files = sorted(Path(folder).glob("*")) if folder and Path(folder).is_dir() else []
        out.append([name, [(p.name, p.stat().st_size) for p in files if p.is_file()]])
    return out


def _handoff_metadata(entry, manifest: dict, files: dict[str, Path], workdir: Path, say) -> None:
    """The handoff record of every file into the manifest (contract, clients) and TFLite metadata into
    every .tflite, written and read back through the MediaPipe client environment (toolchain/handoff)."""
    metadata.annotate(manifest)
    labels = None
    if entry.labels:
        labels = workdir / "labels.txt"
        labels.write_text("\n".join(entry.labels) + "\n")
    metadata.write_metadata(files, manifest, labels)
    say("TFLite metadata written into every .tflite and read back")


def _finalize_handoff(staged: Path, recipe: dict, say, run: dict | None = None) -> None:
    """On the staged bundle, before it is swapped in: goldens, then the browser runtimes
    (`portrait device-check --headless`: the web clients and handoff_gpu), then `portrait verify`
    (the native clients; a bundle that fails it, or whose handoff fails a client it is handed off
    for, is not handed off), then the model card."""
    if recipe["goldens"]:
        _write_goldens(staged, say)
    report, reason = _device_check(staged, say)
    _record_web_clients(staged, report, reason, say, run)
    verify_staged(staged, progress=say)


DEVICE_CHECK_ENV = "PORTRAIT_DEVICE_CHECK"  # "off": the export records the web clients as NOT RUN


def _device_check(staged: Path, say):
    """(DeviceReport, None), or (None, why it did not run): no node or Chromium, or switched off."""
    if os.environ.get(DEVICE_CHECK_ENV, "on").strip().lower() in ("0", "off", "false", "no"):
        return None, f"switched off ({DEVICE_CHECK_ENV}={os.environ[DEVICE_CHECK_ENV]})"
    say("device-check --headless: every file on LiteRT.js wasm / webgpu and MediaPipe web CPU / GPU")
    t0 = time.monotonic()
    try:
        report = run_device_check(
            staged,
            headless=True,
            staged=True,
            runs=int(os.environ.get("PORTRAIT_DEVICE_CHECK_RUNS", "3")),
            timeout_s=float(os.environ.get("PORTRAIT_DEVICE_CHECK_TIMEOUT", "300")),
            progress=lambda m: say(f"device-check: {m}"),
        )
    except (PortraitError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        say(f"device-check NOT RUN: {first}")
        return None, first
    say(
        f"device-check: {len(report.results)} results in {time.monotonic() - t0:.0f} s"
        + (f"; NOT RUN: {report.not_run_reason}" if report.not_run_reason else "")
    )
    return report, report.not_run_reason


def _record_web_clients(staged: Path, report, reason: str | None, say, run: dict | None = None) -> None:
    """The browser measurements into the staged manifest: each file's web clients, handoff_gpu (the
    fastest file that passes on LiteRT.js WebGPU and the CPU web clients) and the run's setting."""
    mpath = staged / "manifest.json"
    manifest = json.loads(mpath.read_text())
    web = clients.web_entries(report, manifest, not_run_reason=reason)
    choice = clients.choose_handoff_gpu(manifest, web)
    manifest["handoff_gpu"] = choice["file"]
    manifest["handoff_gpu_choice"] = choice
    manifest["device_check"] = (
        {"status": "not run", "reason": reason}
        if report is None or not report.results
        else {
            "status": "ran",
            "user_agent": report.user_agent,
            "cores": report.cores,
            "webgpu_adapter": report.webgpu_adapter,
            "not_run_reason": report.not_run_reason,
            "runs": report.runs,
            "seconds": report.wall_s,
            "report_dir": report.report_dir,
            "command": "portrait device-check --headless",
        }
    )
    clients.record(manifest, web)
    # browser latencies differ run to run: into the run record (runs/<id>.json), not the manifest, keyed
    # by runtime and backend (verify puts the native entries in front of these later)
    taken = {}
    for n, rec in manifest.get("models", {}).items():
        for e in rec.get("clients") or []:
            if isinstance(e, dict) and "latency_ms" in e:
                taken[f"models.{n}.clients.{e['runtime']} {e['backend']}.latency_ms"] = e.pop("latency_ms")
    manifest, rest = split_run_record(manifest)
    if run is not None:
        run.update({**taken, **rest})
    mpath.write_text(json.dumps(_clean(manifest), indent=2))
    bad = clients.claim_failures(manifest)
    if bad:  # as loud as a parity miss: the file does not do, in that client, what the manifest hands it off for
        raise ExportError(
            "a handoff file fails in a browser client the manifest hands it off for; nothing is "
            "handed off:\n" + "\n".join(f"  {b}" for b in bad),
            where=str(staged),
            fix="the runtime's message is above (device-report.json has every figure); choose "
            "another rung or file for that client, or fix the file",
        )
    say(
        f"handoff_gpu: {choice['file']}"
        + (
            f" ({choice['reason']})"
            if choice.get("reason")
            else f" (ranked by {choice['ranked_by']}; passing: "
            + ", ".join(
                f"{n} {c['latency_ms']} ms" if c["latency_ms"] is not None else n
                for n, c in choice["candidates"].items()
                if c["meets"]
            )
            + ")"
        )
    )


def _write_goldens(staged: Path, say) -> None:
    """Golden vectors for the on-device checker (toolchain/device/goldens.py), inside the staged bundle."""
    write_goldens(staged, progress=say)
    say("golden vectors written (goldens/)")


def check_import(entry: ModelEntry, recipe: dict, source: Path, float_path: Path, images) -> dict | None:
    """Rebuilt float model vs the original source file, on the parity images."""
    budget = recipe["import_check"]
    if entry.source_format != "tflite" or not budget:
        return None
    transform = output_transform_settings(recipe)
    as_is = TfliteRunner(source)
    hybrid = has_quantized_weights(read_tflite(source))
    if hybrid:  # compare with the source's weights in float32; the file as-is is reported beside
        ref_path = float_path.with_name(float_path.stem + "_source_float_weights.tflite")
        ref_path.write_bytes(float_reference_bytes(source))
        original = TfliteRunner(ref_path)
    else:
        original = as_is
    rebuilt = TfliteRunner(float_path)
    hybrid_diff = 0.0
    positions = recipe["outputs"] if recipe["outputs"] is not None else list(range(len(entry.outputs)))
    keys = [output_key(entry.outputs[i]["name"]) for i in positions]
    worst, agree, scale = 0.0, [], 0.0
    for _, img in images:
        x = img[None].astype(np.float32) * np.asarray(entry.input.scale, np.float32) + np.asarray(
            entry.input.offset, np.float32
        )
        ref_all = _order_original_outputs(original, original.run(x))
        ref = [ref_all[i] for i in positions]
        if hybrid:
            src = [_order_original_outputs(as_is, as_is.run(x))[i] for i in positions]
            hybrid_diff = max(hybrid_diff, max(float(np.max(np.abs(a - b))) for a, b in zip(src, ref)))
        if transform:  # the rebuilt model computes the output transform inside; apply it to the reference
            ref = [1.0 / np.maximum(r.astype(np.float64), transform["floor"]) for r in ref]
        got_all = rebuilt.run(img)
        got = [got_all[k] for k in keys]
        for r, g in zip(ref, got):
            diff = float(np.max(np.abs(r - g)))
            worst = diff if not np.isfinite(diff) else max(worst, diff)  # NaN/inf must not hide
            scale = max(scale, float(np.max(r) - np.min(r)))
        if entry.task == "segmentation":
            agree.append(float(np.mean(ref[0].argmax(-1) == got[0].argmax(-1))))
    result = {
        "max_abs_diff": worst,
        "output_range": scale,
        "images": len(images),
        "reference": ("source with int8 weights dequantized to float32" if hybrid else "source file")
        + (f", output transformed as {transform['formula']}" if transform else ""),
    }
    if hybrid:
        result["source_hybrid_vs_float_max_abs_diff"] = hybrid_diff
    if agree:
        result["argmax_agreement"] = float(np.mean(agree))
    failures = []
    if not np.isfinite(worst):
        failures.append("the rebuilt model produces NaN or inf")
    elif "max_abs_diff" in budget and worst > budget["max_abs_diff"]:
        failures.append(f"max abs diff {worst:.3g} > {budget['max_abs_diff']}")
    if "max_rel_diff" in budget and scale and worst / scale > budget["max_rel_diff"]:
        failures.append(f"max abs diff / output range {worst / scale:.3g} > {budget['max_rel_diff']}")
    if "argmax_agreement_min" in budget and agree and result["argmax_agreement"] < budget["argmax_agreement_min"]:
        failures.append(f"argmax agreement {result['argmax_agreement']:.5f} < {budget['argmax_agreement_min']}")
    result["budget"] = dict(budget)
    if failures:
        raise ExportError(
            f"rebuilt float model of {entry.id} does not match {source.name}: " + "; ".join(failures),
            fix="an importer op translation is wrong; run the per-op check in tests/test_tflite_import.py",
        )
    return result


def _order_original_outputs(runner: TfliteRunner, outs: dict) -> list[np.ndarray]:
    """Original model outputs in the flatbuffer's output order."""
    details = runner.interp.get_output_details()
    if runner.runner is None:
        return [outs[d["name"]] for d in details]
    by_index = {d["index"]: k for k, d in runner.output_details().items()}
    return [outs[by_index[d["index"]]] for d in details if d["index"] in by_index] or list(outs.values())


def build_manifest(
    entry: ModelEntry,
    recipe: dict,
    source: Path,
    files: dict[str, Path],
    *,
    import_check,
    onnx_check,
    parity,
    representative,
    seconds: float,
    mixed_precision: dict | None = None,
    handoff: str | None = None,
    ladder_out: dict | None = None,
    handoff_cpu: dict | None = None,
    cache_hits: list | None = None,
) -> dict:
    # TensorFlow: ~3 s to import, so it loads only when a conversion runs (`portrait --help` stays fast)
    import tensorflow as tf

    models = {}
    rung_of = {r["file"]: r["rung"] for r in (ladder_out or {}).get("ladder", []) if r.get("file")}
    for name, path in files.items():
        precision = _precision_of(name)
        rec = {"precision": precision, "rung": rung_of.get(name, "w8a8" if precision == "int8_labels" else None)}
        if name.endswith(".tflite"):
            runner = TfliteRunner(path)
            rec["input"] = _io_spec(runner.input)
            rec["outputs"] = {k: _io_spec(d) for k, d in runner.output_details().items()}
            ops = precisions.tensor_types(path)
            rec["ops"] = sorted({o["op"] for o in ops})
            rec["tensor_dtypes"] = sorted({t for o in ops for t in o["input_types"] + o["output_types"]})
            counts = ladder.op_counts(path)
            rec["float_ops"] = (
                [o["op"] for o in precisions.float_ops(path)]
                if precision not in ("float32", "float16", "dynamic")
                else None
            )
            rec["float_op_count"], rec["int16_op_count"] = counts["float_ops"], counts["int16_ops"]
            rec["xnnpack"] = _xnnpack_info(path)
            rec["runtimes"] = _runtimes(precision, counts)
        else:
            rec["runtimes"] = ["onnxruntime (CPU execution provider; checked against TF)"]
        models[name] = rec
    size_f32 = files.get(f"{entry.id}_float32.tflite")
    size_i8 = files.get(f"{entry.id}_int8.tflite")
    return _clean(
        {
            "model_id": entry.id,
            "task": entry.task,
            "description": entry.description,
            "source": {
                "format": entry.source_format,
                "file": source.name,
                "url": entry.url,
                "sha256": sha256_of(source),
                "registry_sha256": entry.sha256 or None,
                "license": entry.license,
            },
            "input": {
                "size": list(entry.input.size),
                "layout": entry.input.layout,
                "color": entry.input.color,
                "resize": entry.input.resize,
                "pixels": "RGB values 0..255: uint8 (scale 1, zero point 0) for every "
                "integer file (w8a8, w8a16, mixed float), float32 for float files",
                "normalization_inside_model": {"scale": entry.input.scale, "offset": entry.input.offset},
            },
            "outputs": _outputs(entry, recipe),
            "labels": list(entry.labels),
            "foreground_classes": entry.foreground_classes,
            "models": models,
            "int8_size_ratio": (size_i8.stat().st_size / size_f32.stat().st_size) if size_i8 and size_f32 else None,
            "calibration": {
                **{k: v for k, v in recipe["calibration"].items()},
                "actual_samples": int(len(representative)) if representative is not None else 0,
            },
            "import_check": import_check,
            "onnx_check": onnx_check,
            "parity": parity,
            "mixed_precision": mixed_precision,
            "handoff": handoff,
            "handoff_rung": rung_of.get(handoff),
            "handoff_label": next(
                (r["label"] for r in (ladder_out or {}).get("ladder", []) if r.get("file") == handoff), None
            ),
            "handoff_cpu": handoff_cpu["file"] if handoff_cpu else None,
            "handoff_cpu_choice": handoff_cpu,
            "ladder": (ladder_out or {}).get("ladder"),
            "cache": {"dir": str(cache.root()), "enabled": cache.enabled(), "hits": list(cache_hits or [])},
            "measured_with": {
                "interpreter": f"ai-edge-litert {_pkg_version('ai-edge-litert')}",
                "judged_kernels": parity["kernels"] if parity else None,
                "converter": f"tensorflow {tf.__version__}",
                "host": platform.machine(),
            },
            "recipe": {k: v for k, v in recipe.items() if not k.startswith("_")},
            "toolchain_version": __version__,
            "export_seconds": round(seconds, 1),
        }
    )


# Manifest keys whose values are this run's measurements, not facts of the sources: wall times, latencies and
# cache hits. They move out of the bundle into runs/<model_id>.json beside it, so that two exports of the same
# sources write byte-identical bundles (tests/test_reproducible_export.py).
RUN_KEYS = frozenset(
    {
        "seconds",
        "export_seconds",
        "latency_ms",
        "latency_ms_median",
        "latency_ms_rounds",
        "cache",
        # the mixed-float search's engine timings and its measured latency ratio (the search runs when the
        # ladder reaches that rung, e.g. the offline selfie)
        "search_seconds",
        "wall_s",
        "cpu_s",
        "search_s",
        "start_s",
        "latency_ratio",
    }
)


def split_run_record(manifest: dict) -> tuple[dict, dict]:
    """(manifest without RUN_KEYS at any depth, {dotted path: value} of what was taken out)."""
    taken: dict = {}

    def walk(obj, path):
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                where = f"{path}.{k}" if path else str(k)
                if k in RUN_KEYS:
                    taken[where] = v
                else:
                    out[k] = walk(v, where)
            return out
        if isinstance(obj, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(obj)]
        return obj

    return walk(manifest, ""), taken


def _write_runs_json(out_root: Path, name: str, record: dict) -> Path:
    """runs/<name> beside the bundles, written whole or not at all (NaN/inf as null)."""
    folder = Path(out_root) / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_clean(record), indent=2))
    tmp.replace(path)
    return path


def write_run_record(out_root: Path, model_id: str, run: dict, seconds: float) -> Path:
    """runs/<model_id>.json beside the bundles: this export's timings and cache hits (split_run_record)."""
    return _write_runs_json(
        out_root,
        f"{model_id}.json",
        {
            "model_id": model_id,
            "what": "this export run's measurements (not part of the bundle: they differ run to run)",
            "total_seconds": round(seconds, 1),
            **run,
        },
    )


# runs/<this>: the last multi-model `portrait export` (a model id never starts with _)
WHOLE_RUN_RECORD = "_whole_run.json"


def write_whole_run_record(
    out_root: Path, results: list[ExportResult], seconds: float, jobs: int, written: dict
) -> Path:
    """runs/_whole_run.json: one `portrait export` of several models (`make export-int8`): its wall time,
    --jobs, whether the conversion cache was on (off: a cold run) and each model's status and seconds.
    written: latency.stamp (when, command, host ISA, load average)."""
    models = {}
    for r in results:
        own = read_run_record(out_root, r.model_id) if r.status == "exported" else None
        models[r.model_id] = {"status": r.status, "seconds": (own or {}).get("total_seconds")}
    return _write_runs_json(
        out_root,
        WHOLE_RUN_RECORD,
        {
            "what": "one export of several models: wall time (not part of any bundle)",
            "written": written,
            "wall_seconds": round(seconds, 1),
            "jobs": jobs,
            "conversion_cache": "on" if cache.enabled() else "off (a cold run)",
            "models": models,
        },
    )


def read_run_record(out_root: Path, model_id: str) -> dict | None:
    path = Path(out_root) / "runs" / f"{model_id}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _pkg_version(name: str) -> str:
    return version(name)


def _io_spec(detail: dict) -> dict:
    scale, zp = detail.get("quantization", (0.0, 0))
    return {
        "name": detail.get("name"),
        "shape": [int(s) for s in detail["shape"]],
        "dtype": np.dtype(detail["dtype"]).name,
        "scale": float(scale),
        "zero_point": int(zp),
    }


_RUNTIMES = {
    "int8": [
        "LiteRT XNNPACK delegate (CPU)",
        "LiteRT built-in CPU kernels",
        "LiteRT reference kernels",
        "int8 NPU delegates (e.g. Qualcomm QNN / Hexagon HTP, NNAPI)",
    ],
    "int16": [
        "LiteRT built-in CPU kernels (not XNNPACK: it has no int16-activation kernels; 20-50x slower than w8a8)",
        "LiteRT reference kernels",
        "NPU delegates with 16-bit activations (e.g. Qualcomm QNN / Hexagon HTP)",
    ],
    "mixed": [
        "LiteRT XNNPACK delegate (CPU; float and int8 parts)",
        "LiteRT built-in CPU kernels",
        "LiteRT reference kernels",
        "NPU delegates run only the int8 parts; the float ops fall back to CPU",
    ],
    "float": ["LiteRT XNNPACK delegate (CPU)", "LiteRT GPU delegate", "LiteRT built-in CPU kernels"],
    "dynamic": ["LiteRT built-in CPU kernels and XNNPACK (dynamic-range: int8 weights, float activations)"],
}


def _runtimes(precision: str, counts: dict) -> list[str]:
    if precision == "dynamic":
        return _RUNTIMES["dynamic"]
    if precision in ("float32", "float16"):
        return _RUNTIMES["float"]
    if counts["float_ops"]:
        return _RUNTIMES["mixed"]
    return _RUNTIMES["int16"] if counts["int16_ops"] else _RUNTIMES["int8"]


def _xnnpack_info(path: Path) -> dict | None:
    """Partitions and ops left outside the XNNPACK delegate (quantize/xnnpack.py, helper ptq)."""
    try:
        return delegation(path)
    except Exception as exc:  # the analysis must never break an export; say why it is missing
        return {"error": f"{type(exc).__name__}: {exc}"}


def _outputs(entry: ModelEntry, recipe: dict) -> list[dict]:
    """The registry's outputs, kept ones only, with the output transform (if any) and its meaning."""
    positions = recipe["outputs"] if recipe["outputs"] is not None else range(len(entry.outputs))
    transform = output_transform_settings(recipe)
    out = []
    for i in positions:
        o = dict(entry.outputs[i])
        if transform:
            o.update(
                {
                    "source_meaning": o.get("meaning"),
                    "source_kind": o.get("kind"),
                    "kind": "relative_inverse_depth",
                    "transform": transform["formula"],
                    "meaning": transform["meaning"] or "inverse of the source output",
                }
            )
        out.append(o)
    return out


def _precision_of(name: str) -> str:
    for p in ("int8_mixed", "mixed_float", "w8a16", "int8_labels", "float32", "float16", "dynamic", "int8"):
        if f"_{p}." in name:
            return p
    return "float32" if name.endswith(".onnx") else "unknown"


def _sizes(files: dict[str, Path]) -> dict[str, int]:
    return {name: p.stat().st_size for name, p in files.items()}


def _clean(obj):
    """NaN/inf -> None so the manifest is strict JSON."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def export_all(
    model_ids: list[str] | None = None,
    *,
    out_root: Path | None = None,
    images_folder: Path | None = None,
    registry: dict[str, ModelEntry] | None = None,
    recipes: dict[str, dict] | None = None,
    keep_workdir: bool = False,
    engine: dict | None = None,
    jobs: int = 1,
) -> list[ExportResult]:
    """Export every registered model that has a recipe; a missing model is skipped and named.

    jobs > 1 exports that many models at once, each in its own process (the heaviest first, by
    calibration samples x input pixels); results come back in the registry's order either way. A
    model's export does the same work in either mode (its TFLite files and figures are the same,
    tests/test_export.py): only its start time and the cores it shares change."""
    registry = registry or load_registry()
    ids = model_ids or [
        m
        for m, e in registry.items()
        if m in (recipes or {}) or (paths.RECIPES_DIR / f"{e.recipe or m}.toml").is_file()
    ]
    kw = {
        "out_root": out_root,
        "images_folder": images_folder,
        "registry": registry,
        "keep_workdir": keep_workdir,
        "engine": engine,
    }
    available = [m for m in ids if _available(registry.get(m))]
    if jobs > 1 and (engine or {}).get("engine", "local") != "local":
        print(
            "--jobs: with the Ray search engine the models are exported one at a time (Ray shares the cores itself)",
            file=sys.stderr,
            flush=True,
        )
        jobs = 1
    if jobs <= 1 or len(available) <= 1:
        return [_export_one(m, (recipes or {}).get(m), kw) for m in ids]
    return _export_parallel(ids, available, recipes or {}, kw, jobs)


def _available(entry) -> bool:
    """Whether a model's export would get past finding its file (a wheel model can be fetched)."""
    if entry is None:
        return True  # export_model names the unknown id
    try:
        locate(entry)
        return True
    except ModelNotFound:
        return "wheel" in entry.extra
    except PortraitError:
        return True  # a damaged file: its export says so


def _export_one(model_id: str, recipe: dict | None, kw: dict) -> ExportResult:
    try:
        return export_model(model_id, recipe=recipe, **kw)
    except ModelNotFound as exc:
        _say(model_id, "skipped: model file not available\n" + str(exc))
        return ExportResult(model_id, "skipped", message=str(exc))
    except ParityError as exc:
        _say(model_id, "FAILED\n" + str(exc))
        return ExportResult(
            model_id,
            "failed",
            message=str(exc),
            figures={"parity": exc.figures, "mixed_precision": exc.figures.get("mixed_precision")},
        )
    except PortraitError as exc:
        _say(model_id, "FAILED\n" + str(exc))
        return ExportResult(model_id, "failed", message=str(exc))


LIGHT_NICE = 2  # niceness of the processes exporting all but the heaviest model (--jobs; 5 left them the tail)


def exit_with_parent(poll_s: float = 1.0) -> threading.Thread:
    """In a --jobs worker: a daemon thread that ends this process when the process that started it is
    gone (`kill` of `portrait export` reaches the parent only; its workers would otherwise export on,
    orphaned, for minutes). A half-written staging folder it leaves is removed by the next export."""
    global _WATCHER
    if _WATCHER is not None and _WATCHER.is_alive():  # a pool worker runs several models: one watcher
        return _WATCHER
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(3)

    _WATCHER = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    _WATCHER.start()
    return _WATCHER


_WATCHER: threading.Thread | None = None


def _export_in_worker(model_id: str, recipe: dict | None, kw: dict, lighter: bool) -> ExportResult:
    """A --jobs worker. The heaviest model (PyDNet++: about half the CPU) is the critical path, so the
    other models run niced and take the cores it leaves idle; niceness only rises, and the heaviest
    model is submitted first, so it never lands in a niced process. It ends if the parent is killed."""
    exit_with_parent()
    if lighter:
        try:
            os.nice(LIGHT_NICE)
        except (AttributeError, OSError):
            pass
    return _export_one(model_id, recipe, kw)


def _weight(model_id: str, registry: dict, recipes: dict) -> float:
    """Rough cost of a model's export, to start the heaviest first: calibration samples x input pixels."""
    e = registry.get(model_id)
    if e is None:
        return 0.0
    try:
        recipe = recipes.get(model_id) or load_recipe(e.recipe or model_id)
        h, w = e.input.size
        return float(recipe["calibration"]["samples"]) * h * w
    except (PortraitError, AttributeError, KeyError, TypeError, ValueError):
        return 0.0


def _export_parallel(ids: list[str], available: list[str], recipes: dict, kw: dict, jobs: int) -> list[ExportResult]:
    results: dict[str, ExportResult] = {}
    for m in ids:  # missing files: named here, no process needed
        if m not in available:
            results[m] = _export_one(m, recipes.get(m), kw)
    order = sorted(available, key=lambda m: -_weight(m, kw["registry"], recipes))
    print(
        f"exporting {len(order)} models, {min(jobs, len(order))} at a time (each in its own process): "
        + ", ".join(order),
        file=sys.stderr,
        flush=True,
    )
    again = []
    with cf.ProcessPoolExecutor(max_workers=min(jobs, len(order)), mp_context=mp.get_context("spawn")) as pool:
        futures = {m: pool.submit(_export_in_worker, m, recipes.get(m), kw, i > 0) for i, m in enumerate(order)}
        for m, fut in futures.items():
            try:
                results[m] = fut.result()
            except Exception as exc:  # a worker died (memory, signal): the pool is broken for every model left
                _say(
                    m,
                    f"its export process ended without a result ({type(exc).__name__}: {exc}); "
                    "exporting it again in this process",
                )
                again.append(m)
    for m in again:  # one at a time, here: a real error now surfaces as the model's own
        results[m] = _export_one(m, recipes.get(m), kw)
    return [results[m] for m in ids]


def results_json(results: list[ExportResult]) -> str:
    return json.dumps(
        _clean(
            [
                {
                    "model_id": r.model_id,
                    "status": r.status,
                    "bundle": str(r.bundle) if r.bundle else None,
                    "message": r.message,
                }
                for r in results
            ]
        ),
        indent=2,
    )
