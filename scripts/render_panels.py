"""Write the render figures: photo panels (input | mask | notebook | ours), quality vs truth, bench.

usage: PORTRAIT_DATA_DIR=../shared .venv/bin/python scripts/render_panels.py OUT_DIR [--quality] [--bench]
"""

import json
import sys
from pathlib import Path

from toolchain.render.quality import evaluate, write_panels

if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else "render_out")
    for p in write_panels(out):
        print("panel", p)
    if "--quality" in sys.argv:
        res = {impl: evaluate(implementation=impl) for impl in ("golden", "device")}
        (out / "quality.json").write_text(json.dumps(res, indent=1))
        for impl, r in res.items():
            print(impl, json.dumps(r["vs_notebook"]), json.dumps(r["mean"], indent=1))
    if "--bench" in sys.argv:
        from toolchain.render.bench import format_bench, run_bench
        print(format_bench(run_bench()))
