"""Mutation-fuzz campaign over the bundle consumers; prints the figures (mutants, uncaught, passed while
damaged, max time to the verdict).

    python -m experiments.fuzz_bundles [--n 1000] [--seed 0] [--bundle ID|FOLDER] [--json OUT]

The bundle (default: selfie_segmenter in the bundle root, PORTRAIT_OUT_DIR or export/out) is copied
to a temporary folder and never changed. Each mutant is a copy with one damage (toolchain/bundle_fuzz.py
lists them); the loader, `portrait verify` (no MediaPipe), `portrait check` and `portrait render` run on
each. Exit status 1 if anything is uncaught, a consumer accepts a damaged bundle, or a call takes longer
than --limit-s before its verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from toolchain import bundle_fuzz
from toolchain.errors import PortraitError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.fuzz_bundles", description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="mutated bundles")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bundle", default="selfie_segmenter", help="model id (in the bundle root) or bundle folder")
    ap.add_argument("--limit-s", type=float, default=bundle_fuzz.LIMIT_S)
    ap.add_argument("--json", type=Path, help="write the tally here")
    a = ap.parse_args(argv)
    bundle_fuzz.LIMIT_S = a.limit_s
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="fuzz-bundles-") as tmp:
            tally = bundle_fuzz.campaign(a.bundle, Path(tmp), a.n, a.seed, progress=lambda m: print(m, file=sys.stderr))
    except PortraitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - t0
    print(f"bundle {a.bundle}, seed {a.seed}; host {platform.machine()} ({platform.processor() or 'n/a'}), "
          f"{os.cpu_count()} CPUs; wall {wall:.0f} s")
    print(tally.report())
    print("most frequent first damage named by the loader:")
    for k, c in sorted(tally.details.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {c:5}  {k}")
    for line in tally.uncaught:
        print("UNCAUGHT:", line)
    for line in tally.accepted:
        print("ACCEPTED WHILE DAMAGED:", line)
    if a.json:
        a.json.write_text(json.dumps({"bundle": a.bundle, "n": a.n, "seed": a.seed, "wall_s": wall, **tally.__dict__},
                                     indent=2))
    bad = tally.count("uncaught") + len(tally.accepted) + tally.over_limit
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
