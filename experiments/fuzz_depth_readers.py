"""Mutation-fuzz campaign over the depth photo readers; prints the counts.

    PORTRAIT_DATA_DIR=../shared .venv/bin/python -m experiments.fuzz_depth_readers [--n 1000] [--seed 0] \
        [--readers all|fallback] [--json OUT]

Measured (1,000 mutated real photos, 3,000 reader calls, x86_64, 2 shared cores): 864 valid, 2,136 project
errors, 0 uncaught, 0 malformed results, slowest call 2.06 s on a loaded machine (about 0.4 s unloaded);
with --seed 1: 0 uncaught, 0 malformed, slowest 1.60 s. The tests keep a short derandomized version
(tests/test_depth_fuzz.py).

Seeds: the real photos in $PORTRAIT_DATA_DIR/depth_photos (../shared) when present, else the generated
iPhone / GDepth fixtures (toolchain/depth/photo_fixtures.py). Each input is mutated by 1-3 seeded ops
(bit flips, truncation, overwrite/insert/delete, corrupted XMP / headers; toolchain/depth/mutate.py) and
read by every photo reader (read_gdepth, read_apple_portrait, read_depth_photo), or only by the fallback
with --readers fallback. An outcome is "valid", "error" (the project's error), "invalid" (a malformed
result) or "uncaught"; the time of each call is measured. Exit status 1 if anything is uncaught,
invalid or over --limit-s.
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

import numpy as np

from toolchain.depth import photo_fixtures as pf
from toolchain.depth.mutate import Tally, interesting_offsets, judge, mutate, photo_readers, random_ops


def seeds() -> tuple[str, list[tuple[str, bytes]]]:
    d = Path(os.environ.get("PORTRAIT_DATA_DIR", Path(__file__).resolve().parents[2] / "shared")) / "depth_photos"
    real = sorted(d.glob("*.jpg")) if d.is_dir() else []
    if real:
        return f"real photos in {d}", [(p.name, p.read_bytes()) for p in real]
    return "generated fixtures (no ../shared)", [
        ("iphone-fixture", pf.apple_portrait(384, 512, orientation=6).data),
        ("gdepth-fixture", pf.gdepth(384, 512).data),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="mutated inputs (spread over the seed files)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--readers", choices=["all", "fallback"], default="all")
    ap.add_argument("--limit-s", type=float, default=2.0)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    where, files = seeds()
    offsets = {n: interesting_offsets(d) for n, d in files}
    readers = photo_readers() if a.readers == "all" else [r for r in photo_readers() if r[0] == "read_depth_photo"]
    rng = np.random.default_rng(a.seed)
    per_file = {n: Tally() for n, _ in files}
    total = Tally()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "m.jpg"
        for i in range(a.n):
            name, data = files[i % len(files)]
            ops = random_ops(rng)
            work.write_bytes(mutate(data, ops, offsets[name]))
            for t in (per_file[name], total):
                t.inputs += 1
            for rname, fn in readers:
                v = judge(fn, work)
                for t in (per_file[name], total):
                    t.add(v, a.limit_s, f"{name} {rname} {ops!r}"[:300])
    wall = time.perf_counter() - t0
    print(f"seeds: {where}; host {platform.machine()} ({platform.processor() or 'n/a'}), {os.cpu_count()} CPUs")
    for name, t in [*per_file.items(), ("TOTAL", total)]:
        print(
            f"{name:36} inputs {t.inputs:5}  calls {t.calls:5}  "
            + "  ".join(f"{k} {t.outcomes.get(k, 0)}" for k in ("valid", "error", "invalid", "uncaught"))
            + f"  max {t.max_seconds:.3f} s  over {a.limit_s:g} s: {t.over_limit}"
        )
    top = sorted(total.details.items(), key=lambda kv: -kv[1])[:15]
    print("most frequent verdicts:\n" + "\n".join(f"  {c:5}  {k}" for k, c in top))
    for ex in total.uncaught_examples:
        print("UNCAUGHT/INVALID:", ex)
    print(f"wall {wall:.1f} s")
    if a.json:
        a.json.write_text(
            json.dumps(
                {
                    "seeds": where,
                    "n": a.n,
                    "seed": a.seed,
                    "wall_s": wall,
                    "total": total.__dict__,
                    "per_file": {k: v.__dict__ for k, v in per_file.items()},
                },
                indent=2,
            )
        )
    bad = total.outcomes.get("uncaught", 0) + total.outcomes.get("invalid", 0) + total.over_limit
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
