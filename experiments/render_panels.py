"""Write the render figures: photo panels (input | mask | notebook | ours), quality vs truth, bench.

usage: PORTRAIT_DATA_DIR=../shared .venv/bin/python -m experiments.render_panels OUT_DIR [--quality] [--bench]
(`make render-report` writes them to export/render)

Panels: with an exported DeepLab bundle (export/out/deeplabv3_mnv2_pascal_257) the mask comes from
its int8 model, for every photo (matte-based panels go to OUT_DIR/matte/); without
one, from each photo's matte (`*_alpha_pred.png`) where there is one.
"""

import json
import sys
from pathlib import Path

from experiments.render_quality import evaluate, write_panels
from toolchain import paths
from toolchain.render.stage_timing import format_bench, run_bench


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv if argv is None else [sys.argv[0], *argv]
    out = Path(argv[1] if len(argv) > 1 and not argv[1].startswith("--") else "render_out")
    bundle = paths.out_dir() / "deeplabv3_mnv2_pascal_257"
    if (bundle / "manifest.json").is_file():
        for p in write_panels(out, bundle=bundle):
            print("panel (model mask)", p)
        for p in write_panels(out / "matte"):
            print("panel (matte mask)", p)
    else:
        for p in write_panels(out):
            print("panel (matte mask)", p)
    if "--quality" in argv:
        res = {impl: evaluate(implementation=impl) for impl in ("golden", "device")}
        (out / "quality.json").write_text(json.dumps(res, indent=1))
        for impl, r in res.items():
            print(impl, json.dumps(r["vs_notebook"]), json.dumps(r["mean"], indent=1))
    if "--bench" in argv:
        print(format_bench(run_bench()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
