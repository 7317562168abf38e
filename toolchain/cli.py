"""`portrait`: the command line. Every subcommand is one library call that tests make too."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import paths
from .depth.info import depth_info, write_planes
from .depth.info import summary_lines as depth_summary_lines
from .device.browser_bench import browser_bench, format_browser_table
from .device.check import check_outputs, format_report
from .device.device_check import run_device_check
from .errors import PortraitError
from .evaluate.accuracy import evaluate
from .evaluate.accuracy import summary_lines as evaluation_summary_lines
from .evaluate.datasets import synth
from .evaluate.engine_timing import format_eval_bench, run_eval_bench
from .export import export_all, results_json, write_whole_run_record
from .handoff.pack import pack
from .handoff.verify import verify
from .latency import bench_all, format_table, host_isa, stamp
from .parity.bundle_parity import parity_all, parity_model, summary
from .parity.report import summarize_ladder, summarize_parity
from .registry import fetch, get_entry, load_registry, locate
from .render.photo import render_photo
from .render.stage_timing import format_bench, run_bench
from .report import write_report
from .sim.cost import profile_names
from .sim.simulate import format_summary, simulate_all

# TensorFlow is imported inside the commands that convert (export, parity); quiet its C++ logging first
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EPILOG = """environment:
  PORTRAIT_MODELS_DIR  folders with model files (os.pathsep-separated), searched before the cache
  PORTRAIT_DATA_DIR    folder with photos/ and depth_photos/ (real images for calibration and parity)
  PORTRAIT_CACHE_DIR   download cache (default ~/.cache/portrait)
  PORTRAIT_OUT_DIR     bundle folder (default export/out)
  PORTRAIT_EXPORT_CACHE=0         export without the conversion cache (a cold run)
  PORTRAIT_CALIBRATION_THREADS=N  interpreter threads for a calibration pass (default: the cores, at most 4)"""


def cmd_export(args) -> int:
    if not args.all and not args.model:
        raise PortraitError("name a model id or pass --all", fix="`portrait models list` shows the ids")
    jobs = _jobs(args.jobs)
    t0 = time.monotonic()
    results = export_all(
        None if args.all else args.model,
        out_root=args.out,
        images_folder=args.images,
        keep_workdir=args.keep_workdir,
        engine=_search_engine(args),
        jobs=jobs,
    )
    seconds = time.monotonic() - t0
    print(_export_summary(results))
    if len(results) > 1:  # the whole run's wall time (make export-int8), for docs/results.md
        command = "portrait export " + (f"--all --jobs {jobs}" if args.all else " ".join(args.model))
        isa = host_isa()["summary"]
        write_whole_run_record(Path(args.out or paths.out_dir()), results, seconds, jobs, stamp(command, isa))
        print(f"whole run: {seconds:.0f} s wall (--jobs {jobs}, host {isa})")
    if args.json:
        print(results_json(results))
    if any(r.status == "failed" for r in results):
        return 1
    if not any(r.status == "exported" for r in results):
        print("nothing was exported: no model file is available (see above for how to get each)", file=sys.stderr)
        return 1
    return 0


def _jobs(n: int) -> int:
    if n < 1:
        raise PortraitError(f"--jobs {n}: must be at least 1", fix="pass --jobs 1 (one model at a time) or more")
    return n


def _export_summary(results) -> str:
    lines = ["", "export summary:"]
    for r in results:
        line = f"  {r.model_id:32} {r.status}"
        if r.bundle:
            line += f" -> {r.bundle}"
        if r.status == "exported" and r.figures.get("parity"):
            line += "\n      parity: " + summarize_parity(r.figures["parity"])
        if r.status != "skipped" and (r.figures.get("ladder") or (r.figures.get("parity") or {}).get("ladder")):
            rows = r.figures.get("ladder") or r.figures["parity"]["ladder"]
            line += "".join(
                "\n      ladder " + x
                for x in summarize_ladder(
                    rows, r.figures.get("handoff"), r.figures.get("handoff_cpu"), r.figures.get("handoff_gpu")
                )
            )
        mixed = r.figures.get("mixed_precision") if r.status != "skipped" else None
        if mixed:
            after = mixed.get("after_full") or {}
            figs = ", ".join(
                f"{k} {after[k]:.4f}"
                for k in ("pixel_agreement", "worst_class_iou", "iou", "mean_abs_diff", "delta1", "abs_rel")
                if isinstance(after.get(k), float)
            )
            line += f"\n      mixed precision: {mixed['message']}" + (
                f" -> {mixed['file']} ({figs})" if mixed.get("met") else ""
            )
            if mixed.get("costs"):
                c = mixed["costs"]
                line += (
                    f"\n      mixed cost vs int8: latency x{c.get('latency_ratio', float('nan')):.2f},"
                    f" size x{c.get('size_ratio', float('nan')):.2f}"
                )
            if mixed.get("engine"):
                e = mixed["engine"]
                line += (
                    f"\n      mixed search: {mixed['conversions']} candidates on its path, {e['candidates_run']} run "
                    f"in {e['waves']} waves on {e['workers']} {e['engine']} worker(s): search "
                    f"{e.get('search_s', e.get('wall_s', '?'))} s (candidates' CPU {e.get('cpu_s', '?')} s), {e.get('wall_s', '?')} s with "
                    f"{'ranking and calibration' if 'search_s' in e else 'start-up'}"
                )
        if r.status == "exported" and r.figures.get("sizes"):
            s = r.figures["sizes"]
            f32 = next((v for k, v in s.items() if k.endswith("_float32.tflite")), None)
            i8 = next((v for k, v in s.items() if k.endswith("_int8.tflite")), None)
            if f32 and i8:
                line += f"\n      size: float32 {f32 / 1e6:.2f} MB, int8 {i8 / 1e6:.2f} MB ({100 * i8 / f32:.1f}%)"
        if r.status == "skipped":
            line += " (model file not available; `portrait models where " + r.model_id + "` says how to get it)"
        lines.append(line)
    return "\n".join(lines)


def cmd_models(args) -> int:
    reg = load_registry()
    if args.action == "list":
        for mid, e in reg.items():
            try:
                where = str(locate(e))
            except PortraitError as exc:
                where = "MISSING" if "not found" in exc.what else "BAD: " + exc.what
            print(f"{mid:32} {e.task:13} {e.source_format:22} {where}")
        return 0
    ids = args.ids or list(reg)
    if args.action == "where":
        for mid in ids:
            print(get_entry(mid, reg).how_to_get())
        return 0
    failed = 0
    for mid in ids:
        entry = get_entry(mid, reg)
        try:
            path = fetch(
                entry,
                accept_unpinned=args.accept_unpinned,
                progress=lambda d, t, mid=mid: print(
                    f"\r{mid}: {d / 1e6:.1f}/{t / 1e6:.1f} MB", end="", file=sys.stderr
                ),
            )
            print(f"{mid}: {path}")
        except PortraitError as exc:
            failed += 1
            print(f"{mid}: {exc}", file=sys.stderr)
    return 1 if failed else 0


def cmd_bench(args) -> int:
    """Models (float32 vs int8 per bundle) and the fused render stage, each in one run."""
    report: dict[str, Any] = {}
    if args.part in ("all", "models"):
        try:
            rows = bench_all(args.out, threads=args.threads, runs=args.runs)
            print("models:\n" + format_table(rows))
            report["models"] = rows
        except PortraitError as exc:
            if args.part == "models":
                raise
            print(f"models: skipped ({exc.what}; {exc.fix})")
    if args.part in ("all", "browser"):
        try:  # the same files in headless Chromium (issue 24), beside this run's native figures
            rows = report.get("models") or bench_all(args.out, threads=args.threads, runs=args.runs)
            browser = browser_bench(rows, args.out, runs=args.browser_runs, progress=None)
            print("models in a browser (portrait device-check --headless):\n" + format_browser_table(browser))
            report["browser"] = browser
        except PortraitError as exc:
            if args.part == "browser":
                raise
            print(f"browser: skipped ({exc.what}; {exc.fix})")
    if args.part in ("all", "render"):
        res = run_bench(threads=args.threads)
        print("render stage (fused mask-upsample-blur-composite):\n" + format_bench(res))
        report["render"] = res
    if args.part in ("all", "evaluate"):
        try:  # evaluation on the local engine vs Ray workers (issue 13 targets)
            res = run_eval_bench(
                args.out / args.eval_model if args.out else args.eval_model,
                n=args.eval_images,
                workers=args.eval_workers,
            )
            print("evaluation, local engine vs Ray:\n" + format_eval_bench(res))
            report["evaluate"] = res
        except PortraitError as exc:
            if args.part == "evaluate":
                raise
            print(f"evaluation: skipped ({exc.what}; {exc.fix})")
    if args.json:
        command = f"portrait bench --part {args.part} --threads {args.threads} --runs {args.runs}" + (
            f" --out {args.out}" if args.out else ""
        )
        report = {"written": stamp(command, host_isa()["summary"]), **report}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, default=float))
        print(f"figures written to {args.json}")
    return 0


def cmd_report(args) -> int:
    path = write_report(args.output, out_root=args.out, bench_json=args.bench, eval_dir=args.eval_dir)
    print(f"wrote {path}")
    return 0


def cmd_render(args) -> int:
    result = render_photo(
        args.model,
        args.image,
        args.out,
        depth=args.depth,
        background=args.background,
        mode=args.mode,
        f_number=args.f_number,
        max_blur_px=args.max_blur_px,
        focus_m=args.focus_m,
        implementation=args.implementation,
        precision=args.precision,
        depth_model=args.depth_model,
        alpha_out=args.alpha_out,
        foreground_out=args.foreground_out,
        depth_out=args.depth_out,
        edges=args.edges,
    )
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(
        f"wrote {args.out} (mask from {result.model_file}; focus "
        f"{result.focus_m if result.focus_m is not None else 'n/a'}, max blur {result.max_blur_px:.1f} px, "
        f"{args.implementation})"
    )
    return 0


def cmd_depth_info(args) -> int:
    photo, info = depth_info(args.file)
    if args.write:
        written = write_planes(photo, args.write, info)
        info = json.loads((Path(args.write) / "info.json").read_text())
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print("\n".join(depth_summary_lines(info)))
    if args.write:
        print(
            f"wrote {', '.join(p.name for p in written)} to {args.write}", file=sys.stderr if args.json else sys.stdout
        )
    return 0


def _search_engine(args) -> dict:
    """--engine/--address/--workers of export and parity: where the mixed-float search's candidates run."""
    if args.address and args.engine != "ray":
        raise PortraitError("--address needs --engine ray", fix="add --engine ray, or drop --address")
    return {"engine": args.engine, "address": args.address, "workers": args.workers}


def _add_search_engine(parser) -> None:
    parser.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="where the mixed-float search runs its candidates: local (this process, one at a "
        "time; the default, no Ray needed) or ray (Ray workers, one candidate each, next "
        "candidates run ahead of the search). Same layers and figures either way",
    )
    parser.add_argument(
        "--address",
        help="join this Ray cluster (e.g. 10.0.0.5:6379 or auto); default: start one "
        "here. Every node needs TMPDIR on a shared filesystem (README)",
    )
    parser.add_argument("--workers", type=int, help="Ray workers for the search (default: the cluster's CPUs)")


def cmd_parity(args) -> int:
    try:
        budgets = {k: float(v) for k, v in (b.split("=", 1) for b in args.budget)} or None
    except ValueError:
        raise PortraitError(
            f"bad --budget {args.budget}", fix="write FIGURE_min=VALUE, e.g. pixel_agreement_min=0.999"
        ) from None
    kw = dict(
        images=args.images,
        budgets=budgets,
        mixed_precision=args.mixed,
        per_layer=not args.no_layers,
        max_conversions=args.max_conversions,
        engine=_search_engine(args),
    )
    if args.all or not args.model:
        results = parity_all(args.out, **kw)
    else:
        results = [
            parity_model(
                m,
                bundle=(args.out / m) if args.out else None,
                float_path=args.float,
                quant_path=args.quant,
                out_dir=args.report_dir,
                **kw,
            )
            for m in args.model
        ]
    for r in results:
        print(summary(r))
    return 0 if all(r.get("passed") for r in results) else 1


def cmd_sim(args) -> int:
    res = simulate_all(
        args.sequence,
        args.bundle,
        out_root=args.out,
        profiles=args.profile or profile_names(),
        kernels=args.kernels,
        threads=args.threads,
        mask_source=args.mask_source,
        smoothing=not args.no_smoothing,
    )
    for r in res:
        print(format_summary(r))
        print(f"  frames, GIF and summary.json in {r.get('out_dir')}")
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "frames"} for r in res], indent=1))
    return 0


def _add_sim_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sequence",
        action="append",
        type=Path,
        help="sequence folder (repeatable); default: every sample in device_sim/sequences",
    )
    p.add_argument(
        "--bundle",
        type=Path,
        help="bundle folder; default: export/out/deeplabv3_mnv2_pascal_257, else selfie_segmenter",
    )
    p.add_argument("--profile", action="append", help="device profile name or .toml (repeatable); default: all")
    p.add_argument("--kernels", choices=("xnnpack", "reference"), default="xnnpack")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mask-source", choices=("model", "simulated"), default="model")
    p.add_argument("--no-smoothing", action="store_true")
    p.add_argument("--out", type=Path, default=Path("export/sim"), help="output folder (frames, GIF, summary.json)")
    p.add_argument("--json", action="store_true", help="also print the summaries as JSON")


def cmd_verify(args) -> int:
    """Issue 11: feed every file of a bundle (folder or zip) as its manifest says, in each client."""
    report = verify(args.bundle, mediapipe=not args.no_mediapipe, images_folder=args.images)
    print(json.dumps(report.as_dict(), indent=1, default=str) if args.json else report.format(verbose=args.verbose))
    return report.exit_code


def cmd_pack(args) -> int:
    bundle = args.bundle if args.bundle.exists() else (args.bundles or paths.out_dir()) / str(args.bundle)
    out = pack(
        bundle, args.out or paths.out_dir(), verify=not args.no_verify, progress=lambda m: print(m, file=sys.stderr)
    )
    print(out)
    return 0


def cmd_check(args) -> int:
    results = check_outputs(args.bundle, args.device_outputs)
    print(format_report(results))
    return 0 if all(r.passed for r in results) else 1


def cmd_device_check(args) -> int:
    """Issue 24: every file of a bundle on every backend of a browser, judged by `portrait check`'s checker."""
    timeout = args.timeout if args.timeout is not None else (90.0 if args.serve is None else 300.0)
    report = run_device_check(
        args.bundle,
        headless=args.serve is None,
        serve=args.serve,
        runs=args.runs,
        timeout_s=timeout,
        report_dir=args.report_dir,
        files=args.file or None,
        backends=args.backend or None,
        progress=lambda m: print(m, flush=True),
    )
    print(f"report: {report.report_dir}/device-report.json, device-report.html")
    return report.exit_code()


def cmd_evaluate(args) -> int:
    result = evaluate(
        args.model,
        args.dataset,
        task=args.task,
        engine=args.engine,
        address=args.address,
        workers=args.workers,
        shard_size=args.shard_size,
        kernels=args.kernels,
        threads=args.threads,
        align=args.align,
        out_dir=args.report_dir,
        bundles_root=args.bundles,
        limit=args.limit,
        resamples=args.resamples,
        precisions=[p for p in (args.precisions or "").split(",") if p] or None,
        progress=not args.no_progress,
    )
    print("\n".join(evaluation_summary_lines(result)))
    return 0


def cmd_dataset(args) -> int:
    try:
        h, w = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise PortraitError(f"bad --size {args.size!r}", fix="write HEIGHTxWIDTH, e.g. 240x320") from None
    ds = synth(
        args.n,
        args.out,
        task=args.task,
        seed=args.seed,
        size=(h, w),
        engine=args.engine,
        address=args.address,
        workers=args.workers,
        progress=not args.no_progress,
    )
    print(f"wrote {ds.describe()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="portrait",
        description="Export, quantize and check portrait-mode models (segmentation, depth) for phones.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    e = sub.add_parser(
        "export",
        help="export models to float32/float16/dynamic/int8 TFLite + ONNX bundles",
        description="Import each model, convert it to every precision in its recipe "
        "(export/recipes/<id>.toml), check the int8 model is all-int8, check ONNX "
        "against TF, gate int8 vs float32 parity on the recipe's budgets, and write "
        "the bundle export/out/<id>/ atomically. Exit 1 if any export fails its gate.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("model", nargs="*", help="model ids from models/registry.toml")
    e.add_argument("--all", action="store_true", help="every registered model with a recipe; missing files are skipped")
    e.add_argument("--out", type=Path, default=None, help="bundle folder (default export/out or PORTRAIT_OUT_DIR)")
    e.add_argument(
        "--images",
        type=Path,
        default=None,
        help="folder of images for parity (default: the recipe's [parity] image_sets of "
        "PORTRAIT_DATA_DIR: the photos, and the depth photos where the recipe says so)",
    )
    e.add_argument("--json", action="store_true", help="also print the results as JSON")
    e.add_argument(
        "--keep-workdir",
        action="store_true",
        help="keep each model's work folder (float SavedModel, every conversion) for inspection",
    )
    e.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="export this many models at once, each in its own process, the heaviest first and "
        "the others at nice 2, so the heaviest (the critical path) gets the cores first "
        "(default 1; local search engine only; `make export-int8` passes JOBS=2). The TFLite files "
        "and figures are the same either way",
    )
    _add_search_engine(e)
    e.set_defaults(func=cmd_export)

    m = sub.add_parser(
        "models",
        help="list, locate or fetch registered models",
        description="list: each model and where its file is; where: how to get a model "
        "(URL, SHA-256, folders searched); fetch: download missing files into the "
        "cache and verify SHA-256 (needs internet).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    m.add_argument("action", choices=["list", "where", "fetch"])
    m.add_argument("ids", nargs="*", help="model ids (default: all)")
    m.add_argument(
        "--accept-unpinned", action="store_true", help="fetch models with no pinned SHA-256 and print the digest to pin"
    )
    m.set_defaults(func=cmd_models)

    b = sub.add_parser(
        "bench",
        help="latency: exported models (float32 vs int8) and the fused render stage",
        description="Time every precision of every bundle (ai-edge-litert, XNNPACK) and the "
        "fused render stage at 4032x3024 and 1920x1080 against the notebook baseline, "
        "in one run, and print the ratios.",
    )
    b.add_argument("--all", action="store_true", help="every bundle (the default)")
    b.add_argument(
        "--part",
        choices=["all", "models", "browser", "render", "evaluate"],
        default="all",
        help="what to time (browser: the bundles in headless Chromium, beside the native figures)",
    )
    b.add_argument("--browser-runs", type=int, default=5, help="timed runs per file and backend in the browser")
    b.add_argument("--eval-model", default="deeplabv3_mnv2_pascal_257", help="bundle for the evaluation timing")
    b.add_argument("--eval-images", type=int, default=2000, help="synthetic images for the evaluation timing")
    b.add_argument("--eval-workers", type=int, default=2, help="Ray workers for the evaluation timing")
    b.add_argument("--out", type=Path, default=None, help="bundle folder")
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--runs", type=int, default=100, help="timed invokes per model (median reported)")
    b.add_argument("--json", default="export/bench/bench.json", help="write the figures here")
    b.set_defaults(func=cmd_bench)

    q = sub.add_parser(
        "parity",
        help="int8 vs float32 parity: metrics, per-layer culprits, kernel variants, report",
        description="Compare each bundle's int8 model with its float32 model on an image set, on the "
        "reference and XNNPACK kernels; rank culprit layers; optionally search for layers "
        "to keep float; write report.json + report.html. Exit 1 if a budget is missed.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument("model", nargs="*", help="model ids (default: every bundle)")
    q.add_argument("--all", action="store_true", help="every bundle in the bundle folder (the default)")
    q.add_argument("--out", type=Path, default=None, help="bundle folder (default export/out)")
    q.add_argument("--float", type=Path, default=None, help="float32 .tflite (with --quant, instead of a bundle)")
    q.add_argument("--quant", type=Path, default=None, help="quantized .tflite of the same registry entry")
    q.add_argument(
        "--images",
        default=None,
        help="photos (default: the recipe's [parity] image_sets, photos and/or depth "
        "photos of PORTRAIT_DATA_DIR), synthetic, or a folder of images",
    )
    q.add_argument(
        "--budget",
        action="append",
        default=[],
        metavar="FIGURE_min=V",
        help="replace the recipe budgets, e.g. pixel_agreement_min=0.999 (repeatable)",
    )
    q.add_argument(
        "--mixed",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="search for layers to keep float when a budget is missed (default: the recipe's "
        "[mixed_precision] enabled)",
    )
    q.add_argument("--max-conversions", type=int, default=None, help="cap on conversions in the mixed search")
    q.add_argument("--no-layers", action="store_true", help="skip the per-layer comparison")
    q.add_argument("--report-dir", type=Path, default=None, help="report folder (default export/out/parity/<id>)")
    _add_search_engine(q)
    q.set_defaults(func=cmd_parity)

    rp = sub.add_parser(
        "report",
        help="docs/results.md from the record: bundle manifests, bench JSON, evaluation reports",
        description="Write docs/results.md from every bundle's manifest.json (files, handoff choices, "
        "ladder, parity per kernel set, verify at export), export/bench/bench.json "
        "(`portrait bench`) and the evaluation reports (`portrait evaluate`). Each source "
        "is listed with its date, host ISA and the command that makes it; a missing source "
        "gets a line naming that command.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rp.add_argument("--out", type=Path, default=None, help="bundle folder (default export/out or PORTRAIT_OUT_DIR)")
    rp.add_argument("--bench", type=Path, default=None, help="bench JSON (default export/bench/bench.json)")
    rp.add_argument("--eval-dir", type=Path, default=None, help="evaluation reports (default export/eval)")
    rp.add_argument("--output", type=Path, default=None, help="the page to write (default docs/results.md)")
    rp.set_defaults(func=cmd_report)

    sm = sub.add_parser(
        "sim",
        help="device simulator: ToF sequences through a bundle and the fused stage, per phone profile",
        description="Per frame: pair RGB and DEPTH16 by timestamp, run the int8 model (ai-edge-litert), "
        "register depth, smooth over time, run the device-precision fused stage; report "
        "host time per stage, estimated time per phone profile (per-op roofline cost "
        "model), peak memory, frames over 33 ms, flicker; write frames, a GIF and "
        "summary.json.",
    )
    _add_sim_arguments(sm)
    sm.set_defaults(func=cmd_sim)
    ck = sub.add_parser(
        "check",
        help="compare outputs dumped by a phone with a bundle's golden vectors",
        description="Read <bundle>/goldens/goldens.json, compare each vector's output dumped by the "
        "device (same file names, .npy or raw .bin) within its tolerance, print pass/fail "
        "per vector with the metrics; exit 1 on any failure.",
    )
    ck.add_argument("--bundle", required=True, type=Path, help="bundle folder with goldens/")
    ck.add_argument("--device-outputs", required=True, type=Path, help="folder of outputs dumped by the phone")
    ck.set_defaults(func=cmd_check)

    vf = sub.add_parser(
        "verify",
        help="contract check: feed every bundle file as its manifest says, in LiteRT and MediaPipe",
        description="Check a bundle folder or a `portrait pack` zip the way an app developer uses it: "
        "SHA-256 of every file, the manifest's contract vs the file's tensors and TFLite "
        "metadata, each file fed as the manifest says in ai-edge-litert (goldens, float32 "
        "model) and, for segmenters, in MediaPipe Tasks ImageSegmenter (client environment "
        ".venv-client). Exit 1 on any mismatch, naming the file and the field; 3 when "
        "nothing failed but a check could not run (no client environment).",
    )
    vf.add_argument("bundle", type=Path, help="bundle folder, <id>-<version>.zip, or a model id (export/out/<id>)")
    vf.add_argument(
        "--images",
        type=Path,
        default=None,
        help="also feed these photos (resized as the manifest says) to the float and MediaPipe comparisons",
    )
    vf.add_argument("--no-mediapipe", action="store_true", help="skip the client-environment checks (reported NOT RUN)")
    vf.add_argument("--json", action="store_true", help="print the report as JSON")
    vf.add_argument("-v", "--verbose", action="store_true", help="list passed checks too")
    vf.set_defaults(func=cmd_verify)

    dc = sub.add_parser(
        "device-check",
        help="run every bundle file on every browser backend (LiteRT.js wasm/webgpu, "
        "MediaPipe web CPU/GPU) and judge the outputs like `portrait check`",
        description="Serve a check page (web/) with the bundle's files, the golden inputs and the web "
        "runtimes; the browser (this machine's headless Chromium, or a phone with --serve) "
        "runs each file on each backend and posts the raw outputs back; they are judged "
        "with the checker and tolerances of `portrait check`. Prints a file x backend table "
        "and writes device-report.json and device-report.html. Exit 1 if a file fails on a "
        "backend its manifest claims, 3 if nothing could run. See docs/device-check.md.",
    )
    dc.add_argument("bundle", help="bundle folder, <id>-<version>.zip, or a model id (export/out/<id>)")
    mode = dc.add_mutually_exclusive_group()
    mode.add_argument("--headless", action="store_true", help="run in this machine's Chromium (the default)")
    mode.add_argument(
        "--serve",
        metavar="HOST:PORT",
        default=None,
        help="serve the page for a phone on the same network (0.0.0.0:8000 prints the LAN URL and a QR code)",
    )
    dc.add_argument(
        "--runs",
        type=int,
        default=5,
        help="timed runs per file and backend after the golden runs, which are the warm-up (median)",
    )
    dc.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to wait for the browser to connect and then for each next result "
        "(default 90 headless, 300 with --serve)",
    )
    dc.add_argument("--report-dir", type=Path, default=None, help="where the reports go (default export/device/<id>)")
    dc.add_argument("--file", action="append", help="only this file of the bundle (repeatable)")
    dc.add_argument(
        "--backend",
        action="append",
        choices=("wasm", "webgpu", "cpu", "gpu"),
        help="only this backend (repeatable): LiteRT.js wasm / webgpu, MediaPipe cpu / gpu",
    )
    dc.set_defaults(func=cmd_device_check)

    pk = sub.add_parser(
        "pack",
        help="reproducible <id>-<version>.zip of a bundle with its model card and SHA256SUMS",
        description="Verify the bundle, then write <id>-<version>.zip (bundle, README.md model card, "
        "SHA256SUMS) with fixed timestamps: the same bundle gives the same bytes.",
    )
    pk.add_argument("bundle", type=Path, help="model id (export/out/<id>) or bundle folder")
    pk.add_argument(
        "--bundles", type=Path, default=None, help="bundle folder root (default export/out or PORTRAIT_OUT_DIR)"
    )
    pk.add_argument("--out", type=Path, default=None, help="where the zip goes (default: the bundle root)")
    pk.add_argument("--no-verify", action="store_true", help="pack without running `portrait verify` first")
    pk.set_defaults(func=cmd_pack)

    r = sub.add_parser(
        "render",
        help="portrait render of one photo: segment, upsample mask, depth-aware blur, composite",
        description="Run a bundle's segmentation model on a photo and render it with the fused "
        "stage (guided mask upsampling, depth-dependent bokeh, composite), or replace "
        "the background. Without --depth the background gets one constant blur.",
    )
    r.add_argument("--model", required=True, help="bundle folder or model id (export/out/<id>)")
    r.add_argument("--image", required=True, type=Path, help="photo (JPEG/PNG/BMP)")
    r.add_argument("--out", required=True, type=Path, help="output image (.png or .jpg)")
    r.add_argument("--depth", type=Path, help="depth: .npy metres, 16-bit .png mm, or a GDepth/iPhone portrait .jpg")
    r.add_argument("--background", type=Path, help="replacement background image (implies --mode replace)")
    r.add_argument("--mode", choices=["blur", "replace", "chroma"], help="default: blur (replace with --background)")
    r.add_argument("--f-number", type=float, help="aperture (f-number), e.g. 1.8")
    r.add_argument("--max-blur-px", type=float, help="blur radius at infinity in pixels (wins over --f-number)")
    r.add_argument("--focus-m", type=float, help="focus distance (default: the subject's median depth)")
    r.add_argument(
        "--implementation",
        choices=["golden", "device"],
        default="golden",
        help="golden float reference or the fixed-point device port",
    )
    r.add_argument(
        "--precision",
        default="handoff_cpu",
        help="which bundle model runs: handoff_cpu (default: the manifest's fastest file that met the "
        "parity budget on XNNPACK), handoff (its integer-only handoff), or a precision: int8, "
        "float32, w8a16, ... (run as is, met or not)",
    )
    r.add_argument(
        "--depth-model",
        help="depth bundle folder or model id: its handoff model's relative inverse "
        "depth sets the blur (no metric scale; focus on the subject) and the trimap",
    )
    r.add_argument(
        "--edges",
        choices=["matting", "guided"],
        default="matting",
        help="matting: trimap + alpha solved in the band + foreground colours (default); "
        "guided: the guided filter on the mask only",
    )
    r.add_argument("--alpha-out", type=Path, help="write the alpha as an 8-bit PNG at the photo's resolution")
    r.add_argument("--foreground-out", type=Path, help="write the subject as RGBA PNG with decontaminated colours")
    r.add_argument("--depth-out", type=Path, help="write the inverse depth used as a 16-bit PNG (nearer is brighter)")
    r.set_defaults(func=cmd_render)

    di = sub.add_parser(
        "depth-info",
        help="what a photo carries: GDepth / Apple depth, disparity, mattes, orientation",
        description="Read a Google Camera Lens Blur (GDepth) or iPhone portrait JPEG and say what it "
        "carries: GDepth depth/confidence, Apple disparity/depth, the portrait effects "
        "matte, semantic mattes (hair, skin, teeth) and the EXIF orientation (applied to "
        "every plane). A damaged file is reported with the format and field at fault.",
    )
    di.add_argument("file", type=Path, help="photo (.jpg)")
    di.add_argument(
        "--json",
        action="store_true",
        help="print JSON: keys image, depth, disparity, matte (null or "
        "{width, height, ...}), confidence, semantic_mattes, orientation",
    )
    di.add_argument(
        "--write",
        type=Path,
        metavar="DIR",
        help="write image.png, depth.png (16-bit mm), disparity.png "
        "(16-bit, nearer brighter), matte.png, <kind>_matte.png "
        "and info.json, when present",
    )
    di.set_defaults(func=cmd_depth_info)

    ev = sub.add_parser(
        "evaluate",
        help="accuracy of every model file of a bundle against ground truth, local or on Ray",
        description="Run every .tflite of the bundle (and its handoff) over a labeled set: VOC "
        "segmentation (mIoU, per-class IoU, boundary F), matting (SAD, MSE, gradient, "
        "connectivity) or depth (delta1, AbsRel, RMSE after scale-and-shift alignment). "
        "Each precision's drop vs float32 gets a bootstrap 95% CI. Bad samples are listed "
        "and skipped; exit 2 if more than 1% are bad. Writes report.json + report.html.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("model", help="model id (a bundle in export/out or --bundles) or a bundle folder")
    ev.add_argument("--dataset", required=True, type=Path, help="the labeled set (VOC, matting or depth layout)")
    ev.add_argument("--task", choices=["segmentation", "matting", "depth"], help="default: from the folder")
    ev.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process (default, no Ray needed); ray: shards on Ray workers",
    )
    ev.add_argument("--address", help="join this Ray cluster (e.g. 10.0.0.5:6379 or auto); default: start one here")
    ev.add_argument("--workers", type=int, help="Ray workers (default: the cluster's CPUs)")
    ev.add_argument("--shard-size", type=int, default=20, help="images per shard")
    ev.add_argument("--kernels", choices=["xnnpack", "reference"], default="xnnpack")
    ev.add_argument("--threads", type=int, default=1, help="TFLite threads per model (default 1)")
    ev.add_argument("--precisions", help="comma-separated, e.g. int8,int8_mixed (float32 is always run)")
    ev.add_argument(
        "--align",
        choices=["inverse", "depth"],
        help="depth: align in inverse depth (default for relative models) or in depth",
    )
    ev.add_argument("--limit", type=int, help="only the first N samples")
    ev.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    ev.add_argument("--bundles", type=Path, help="bundle folder (default export/out or PORTRAIT_OUT_DIR)")
    ev.add_argument("--report-dir", type=Path, help="default export/eval/<id>--<dataset folder name>")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev.set_defaults(func=cmd_evaluate)

    ds = sub.add_parser(
        "dataset",
        help="make labeled sets: `portrait dataset synth` (synthetic scenes, exact truth)",
        description="synth: N synthetic portrait scenes (toolchain/scenes) with exact ground truth in "
        "the VOC, matting or depth layout; seeded, so the same arguments give the same files.",
    )
    ds.add_argument("action", choices=["synth"])
    ds.add_argument("--n", type=int, required=True, help="number of scenes")
    ds.add_argument("--out", type=Path, required=True, help="folder to write (replaced if it is a synthetic set)")
    ds.add_argument("--task", choices=["segmentation", "matting", "depth"], default="segmentation")
    ds.add_argument("--seed", type=int, default=0, help="scene i uses seed + i")
    ds.add_argument("--size", default="240x320", help="HEIGHTxWIDTH in pixels")
    ds.add_argument("--engine", choices=["local", "ray"], default="local")
    ds.add_argument("--address", help="join this Ray cluster")
    ds.add_argument("--workers", type=int)
    ds.add_argument("--no-progress", action="store_true")
    ds.set_defaults(func=cmd_dataset)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PortraitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
