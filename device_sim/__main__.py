"""`python -m device_sim sim|check|goldens`: the same thin layer as `portrait sim` / `portrait check`,
usable before the `portrait` subcommands exist. Each subcommand is one library call."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def add_sim_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sequence", action="append", type=Path,
                   help="sequence folder (repeatable); default: every sample in device_sim/sequences")
    p.add_argument("--bundle", type=Path, help="bundle folder; default: export/out/deeplabv3_mnv2_pascal_257, "
                                               "else selfie_segmenter")
    p.add_argument("--profile", action="append", help="device profile name or .toml (repeatable); default: all")
    p.add_argument("--kernels", choices=("xnnpack", "reference"), default="xnnpack")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mask-source", choices=("model", "simulated"), default="model")
    p.add_argument("--no-smoothing", action="store_true")
    p.add_argument("--out", type=Path, default=Path("export/sim"), help="output folder (frames, GIF, summary.json)")
    p.add_argument("--json", action="store_true", help="also print the summaries as JSON")


def run_sim(args) -> int:
    from device_sim.cost import profile_names
    from device_sim.simulate import format_summary, simulate_all
    res = simulate_all(args.sequence, args.bundle, out_root=args.out, profiles=args.profile or profile_names(),
                       kernels=args.kernels, threads=args.threads, mask_source=args.mask_source,
                       smoothing=not args.no_smoothing)
    for r in res:
        print(format_summary(r))
        print(f"  frames, GIF and summary.json in {r.get('out_dir')}")
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "frames"} for r in res], indent=1))
    return 0


def main(argv=None) -> int:
    from toolchain.errors import PortraitError
    ap = argparse.ArgumentParser(prog="python -m device_sim")
    sub = ap.add_subparsers(dest="cmd", required=True)
    add_sim_arguments(sub.add_parser("sim", help="simulate sequences on device profiles"))
    c = sub.add_parser("check", help="compare a phone's outputs with a bundle's goldens")
    c.add_argument("--bundle", required=True, type=Path)
    c.add_argument("--device-outputs", required=True, type=Path)
    g = sub.add_parser("goldens", help="write golden vectors into a bundle")
    g.add_argument("--bundle", required=True, type=Path)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "sim":
            return run_sim(args)
        if args.cmd == "check":
            from toolchain.device.check import main as check_main
            return check_main(["--bundle", str(args.bundle), "--device-outputs", str(args.device_outputs)])
        from toolchain.device.goldens import main as goldens_main
        return goldens_main(["--bundle", str(args.bundle)])
    except PortraitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
