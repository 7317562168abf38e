"""How well can any file with an N-bit logits output agree with float? A bound, from float alone.

    PORTRAIT_MODELS_DIR=../shared/models PORTRAIT_DATA_DIR=../shared \\
    .venv/bin/python -m experiments.output_grid_bound \\
        export/out/deeplabv3_mnv2_pascal_257/deeplabv3_mnv2_pascal_257_float32.tflite \\
        --int8 export/out/deeplabv3_mnv2_pascal_257/deeplabv3_mnv2_pascal_257_int8.tflite

Runs the float32 file on the parity images of photos and depth_photos, rounds its logits onto an
output grid (the int8 file's own range with --int8, and the ranges / bit widths given), and reports
the parity figures of the rounded logits against float: argmax pixel agreement and the worst IoU of
each foreground class (images where float finds it on >= 1 % of the pixels). Every layer before
the output is exact here, so no quantized file with that output grid can do better than this on
these images except by luck. Not a gate: the gate computes the bound of the judged file itself
(toolchain/parity/bound.py, recipe `relative_to_bound`); this script tries other grids (--grid).

Measured (DeepLab 257, its int8 output grid): 0.9856 pixel agreement on the Apple portrait and person
IoU 0.863 on the wood photo; a narrowed 8-bit grid [5, 25] 0.9925 / 0.929, 10 bits 0.9963 / 0.974,
12 bits 0.9992 / 0.995: no file with an int8 logits output meets 0.995 / 0.98 on the depth photos.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from toolchain.parity.gate import parity_images
from toolchain.registry import get_entry
from toolchain.runtime import TfliteRunner


def rounded(x: np.ndarray, lo: float, hi: float, bits: int) -> np.ndarray:
    step = (hi - lo) / (2**bits - 1)
    return np.round((np.clip(x, lo, hi) - lo) / step) * step + lo


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("float32", type=Path, help="the bundle's float32 .tflite (logits output)")
    ap.add_argument("--model", default="deeplabv3_mnv2_pascal_257", help="registry id (default: %(default)s)")
    ap.add_argument("--int8", type=Path, default=None, help="take the output range from this file's output tensor")
    ap.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="LO:HI:BITS",
        help="a further grid to try, repeatable: --grid=5:25:8 --grid=0:32:10",
    )
    args = ap.parse_args(argv)

    entry = get_entry(args.model)
    grids = []
    if args.int8:
        d = next(iter(TfliteRunner(args.int8).output_details().values()))
        s, z = d["quantization"]
        grids.append(((-128 - z) * s, (127 - z) * s, 8, f"{args.int8.name} output grid"))
    for g in args.grid:
        lo, hi, bits = g.split(":")
        grids.append((float(lo), float(hi), int(bits), "given"))
    if not grids:
        ap.error("give --int8 FILE and/or --grid LO:HI:BITS")
    classes = {name: idx for name, idx in entry.foreground_classes.items()}
    runner = TfliteRunner(args.float32)
    images = parity_images(entry, image_sets=["photos", "depth_photos"])
    logits = {n: next(iter(runner.run(img).values()))[0] for n, img in images}
    print(f"{args.model}: {len(images)} images ({', '.join(n for n, _ in images)})")
    for lo, hi, bits, what in grids:
        rows = []
        for n, f in logits.items():
            a, b = f.argmax(-1), rounded(f, lo, hi, bits).argmax(-1)
            ious = {
                c: float(((a == i) & (b == i)).sum() / ((a == i) | (b == i)).sum())
                for c, i in classes.items()
                if (a == i).mean() >= 0.01
            }
            rows.append((float(np.mean(a == b)), ious, n))
        worst_ag = min(rows, key=lambda r: r[0])
        iou_rows = [(v, c, r[2]) for r in rows for c, v in r[1].items()]
        worst_iou = min(iou_rows) if iou_rows else None
        print(
            f"  [{lo:.2f}, {hi:.2f}] {bits} bits ({what}): worst pixel agreement {worst_ag[0]:.4f} ({worst_ag[2]}), "
            + (
                f"worst class IoU {worst_iou[0]:.4f} ({worst_iou[1]}, {worst_iou[2]})"
                if worst_iou
                else "no class found"
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
