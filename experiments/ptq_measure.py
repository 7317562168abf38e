"""What each w8a8 post-training technique gives on a real model, on both kernel sets.

    PORTRAIT_MODELS_DIR=../shared/models PORTRAIT_DATA_DIR=../shared \\
    .venv/bin/python -m experiments.ptq_measure selfie_segmenter \\
        --variants minmax mse cle:mse adaround:mse bias_correction:mse cle+adaround+bias_correction:mse

A variant is `techniques:ranges` (techniques joined by "+", empty for none). The float32 file is
the model's export (imported here from the registry source, as `portrait export` does, unless
--float names one). Each variant is built with toolchain.quantize.ptq.w8a8 (the w8a8 rung) and
judged against float32 with the parity figures of toolchain/parity/gate.py on the recipe's parity images,
on XNNPACK and the reference kernels; also the XNNPACK partition count and, with --latency, the
median latency vs float32 (host ISA printed). Writes <out>/<model>/ptq_measure.json.
Figures are measurements of this run; the export's own gate (`make export-int8`) is the final word.

Measured: DeepLab 257 worst-photo pixel agreement / IoU (XNNPACK) minmax 0.9928 / 0.9697,
adaround+bias_correction:mse 0.9965 / 0.9904, adaround+bias_correction:percentile 0.9968 / 0.9909 (its
recipe); selfie worst-photo IoU minmax 0.867, adaround:minmax 0.896 (its recipe), mse 0.356.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from toolchain import calibration_set, quantize
from toolchain.parity.gate import _first, parity_images, task_figures
from toolchain.quantize import ptq
from toolchain.quantize.xnnpack import delegation, summary
from toolchain.recipes import load_recipe
from toolchain.registry import get_entry, locate_or_fetch_embedded
from toolchain.runtime import TfliteRunner
from toolchain.sources import import_model


def host_isa() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags |= set(line.split(":", 1)[1].split())
    names = ["avx2", "avx512f", "avx512_vnni", "avx_vnni", "asimddp", "i8mm"]
    return " ".join(f for f in names if f in flags) or "none of avx2/avx512_vnni/avx_vnni/asimddp/i8mm"


def float_file(entry, recipe, workdir: Path) -> Path:
    model = import_model(entry, locate_or_fetch_embedded(entry), workdir, outputs=recipe["outputs"])
    return quantize.convert(model, "float32", workdir / f"{entry.id}_float32.tflite")


def figures(entry, recipe, float_path: Path, quant_path: Path, images) -> dict:
    names = [n for n, _ in images]
    f = TfliteRunner(float_path)
    refs = [_first(f.run(img)) for _, img in images]
    out = {}
    for kernels in ("xnnpack", "reference"):
        q = TfliteRunner(quant_path, kernels=kernels)
        figs = task_figures(entry, recipe, refs, [_first(q.run(img)) for _, img in images], names)
        row = {k: v for k, v in figs.items() if k != "per_image" and not isinstance(v, dict)}
        per = figs["per_image"]
        if per and "iou" in per[0] or any("iou" in p for p in per):
            ious = sorted((p["iou"], p["image"]) for p in per if "iou" in p)
            row["iou_mean"], row["iou_worst_image"] = float(np.mean([i for i, _ in ious])), ious[0][1]
        if "class_iou" in figs:
            row["class_iou_min"] = {c: v["min"] for c, v in figs["class_iou"].items()}
        out[kernels] = row
    return out


def latency(path: Path, runs: int = 30, threads: int = 2) -> float:
    r = TfliteRunner(path, threads=threads)
    x = np.random.default_rng(0).integers(0, 256, tuple(r.input["shape"])).astype(np.uint8)
    for _ in range(3):
        r.run(x)
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        r.run(x)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1000)


def time_only(float_path: Path, files: list[Path]) -> int:
    isa = host_isa()
    f32 = latency(float_path)
    print(f"{float_path.name}: {f32:.2f} ms (float32, XNNPACK, 2 threads, median of 30) [host ISA: {isa}]")
    for p in files:
        ms = latency(p)
        print(f"{p.name}: {ms:.2f} ms = {ms / f32:.2f}x float32 [host ISA: {isa}] | {summary(delegation(p))}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--variants", nargs="+", default=["minmax", "mse", "cle+adaround+bias_correction:mse"])
    ap.add_argument("--float", type=Path, help="float32 .tflite of the export (default: import it here)")
    ap.add_argument("--out", type=Path, default=Path("export/ptq"))
    ap.add_argument("--latency", action="store_true")
    ap.add_argument(
        "--time-only",
        nargs="+",
        type=Path,
        metavar="TFLITE",
        help="only time these files against --float (and list their XNNPACK partitions)",
    )
    args = ap.parse_args(argv)
    if args.time_only:
        return time_only(args.float, args.time_only)

    entry = get_entry(args.model)
    recipe = load_recipe(entry.recipe or args.model)
    out = args.out / args.model
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ptq-measure-"))
    float_path = args.float or float_file(entry, recipe, work)
    rep = calibration_set.for_recipe(entry.input.size, recipe["calibration"])
    images = parity_images(entry, image_sets=recipe.get("parity", {}).get("image_sets"))  # as the gate judges
    isa = host_isa()
    print(f"{args.model}: {len(images)} parity images, {len(rep)} calibration samples; host ISA: {isa}", flush=True)
    results = {"model": args.model, "float": str(float_path), "host_isa": isa, "variants": {}}
    if args.latency:
        results["float32_ms"] = latency(float_path)
    for variant in args.variants:
        techs, _, ranges = variant.rpartition(":") if ":" in variant else ("", "", variant)
        techniques = [t for t in techs.split("+") if t]
        path = out / f"{args.model}_w8a8_{variant.replace(':', '_').replace('+', '-')}.tflite"
        t0 = time.monotonic()
        record = ptq.w8a8(
            entry,
            float_path,
            rep,
            path,
            work / variant.replace(":", "_"),
            techniques=techniques,
            ranges=ranges,
            outputs_positions=recipe["outputs"],
        )
        row = {
            "record": record,
            "build_seconds": round(time.monotonic() - t0, 1),
            "figures": figures(entry, recipe, float_path, path, images),
            "xnnpack": delegation(path),
        }
        if args.latency:
            row["ms"] = latency(path)
            row["ratio_vs_float32"] = row["ms"] / results["float32_ms"]
        results["variants"][variant] = row
        line = "; ".join(
            f"{k}: " + ", ".join(f"{m} {v:.4f}" for m, v in f.items() if isinstance(v, float))
            for k, f in row["figures"].items()
        )
        print(
            f"[{variant}] {line} | {summary(row['xnnpack'])}"
            + (f" | {row['ms']:.1f} ms = {row['ratio_vs_float32']:.2f}x float32 [ISA: {isa}]" if args.latency else "")
            + f" | built in {row['build_seconds']} s",
            flush=True,
        )
    (out / "ptq_measure.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"written: {out / 'ptq_measure.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
