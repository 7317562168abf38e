"""What int16 activations on the last layers only give: the w8a8 file with its tail from the 16x8 file.

    PORTRAIT_MODELS_DIR=../shared/models PORTRAIT_DATA_DIR=../shared \\
    .venv/bin/python -m experiments.tail16_measure pydnet_pp_mobile --cuts 1 5 8 14

Takes a bundle's `_int8.tflite` and its 16x8 file (`_w8a16.tflite`, or --w16), splices them with
`experiments.partial16.splice_tail` at each cut (the Nth candidate of `tail_cuts`: the tail
is that many of the 16x8 file's last ops), and judges each spliced file against float32 with
`portrait parity` (both kernel sets, the recipe's images). This is the measurement behind the
README's note on the `w8a16_partial` rung; the files are written to --out.

Measured (PyDNet++, min/max w8a8 file, XNNPACK / reference, worst image δ1): the last op alone
0.531 / 0.563, 5 ops 0.535 / 0.617, 8 ops 0.535 / 0.650, 14 ops 0.809 / 0.904: a short int16 tail does
not reach δ1 0.99, so `w8a16_partial` is not a ladder rung.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from experiments.partial16 import splice_tail, tail_cuts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--bundles", type=Path, default=Path("export/out"))
    ap.add_argument("--w16", type=Path, help="the 16x8 file (default: the bundle's _w8a16.tflite)")
    ap.add_argument(
        "--cuts",
        type=int,
        nargs="+",
        default=[1, 5, 8, 14],
        help="tail lengths to try, as positions in tail_cuts (1 = the shortest tail)",
    )
    ap.add_argument("--out", type=Path, default=Path("export/tail16"))
    args = ap.parse_args(argv)

    bundle = args.bundles / args.model
    int8 = bundle / f"{args.model}_int8.tflite"
    w16 = args.w16 or bundle / f"{args.model}_w8a16.tflite"
    for p in (int8, w16):
        if not p.exists():
            print(f"error: {p} not found (run `make export-int8` first, or pass --w16)", file=sys.stderr)
            return 2
    cuts = tail_cuts(w16.read_bytes(), max(args.cuts) + 8)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{args.model}: {len(cuts)} single-tensor cuts; the shortest tails first: {[c[0] for c in cuts[:5]]}")
    for n in args.cuts:
        if n < 1 or n > len(cuts):
            print(f"cut {n}: out of range (1..{len(cuts)})")
            continue
        cut = cuts[n - 1]
        path = args.out / f"{args.model}_tail16_{n}.tflite"
        path.write_bytes(splice_tail(int8.read_bytes(), w16.read_bytes(), cut))
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "toolchain.cli",
                "parity",
                args.model,
                "--float",
                str(bundle / f"{args.model}_float32.tflite"),
                "--quant",
                str(path),
                "--no-layers",
                "--no-mixed",
                "--report-dir",
                str(args.out / f"report_{n}"),
            ],
            capture_output=True,
            text=True,
        )
        line = next((x for x in r.stdout.splitlines() if x.startswith(args.model)), r.stderr.strip()[-400:])
        print(f"cut {n} at {cut[0]}: {line}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
