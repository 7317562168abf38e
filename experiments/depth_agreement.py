"""Does a depth model order a scene like the photo's own depth map? Spearman rank correlation.

For every GDepth photo (Google Camera Lens Blur JPEG, `depth_photos/` in the data folder), run the
depth bundle's handoff model (photo.run_depth_model) on the photo the depth belongs to, and compare
its relative inverse depth with the photo's inverse depth (1 / GDepth depth) by Spearman's rank
correlation on a regular grid of pixels. Ranks ignore the unknown scale and offset of relative depth;
+1 is the same near-to-far ordering. Usage:

    python -m experiments.depth_agreement --depth-model pydnet_pp_mobile [--json out.json]

Not here: reading the photos (toolchain/depth/readers.py) or running the model (photo.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from scipy.stats import spearmanr

from toolchain import paths
from toolchain.depth.readers import read_gdepth
from toolchain.errors import PortraitError
from toolchain.render.photo import run_depth_model

GRID = (96, 128)  # pixels compared per photo (rows, cols), sampled evenly


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    return float(spearmanr(a[ok], b[ok]).statistic) if ok.sum() > 10 else float("nan")


def agreement(depth_model, photos=None) -> list[dict]:
    """[{"photo", "spearman", "pixels", "model_file"}] for every GDepth photo."""
    folder = paths.depth_photos_dir()
    photos = sorted(folder.glob("*.jpg")) if photos is None and folder else (photos or [])
    rows = []
    for ph in photos:
        try:
            dp = read_gdepth(ph)
        except PortraitError:
            continue  # not a GDepth photo (the iPhone one carries disparity only)
        if dp.depth_m is None:
            continue
        inv_model, ran = run_depth_model(depth_model, dp.image)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv_photo = np.where(dp.depth_m > 0, 1.0 / dp.depth_m, np.nan).astype(np.float32)
        size = (GRID[1], GRID[0])
        a = cv2.resize(inv_model, size, interpolation=cv2.INTER_AREA)
        b = cv2.resize(inv_photo, size, interpolation=cv2.INTER_NEAREST)
        rows.append(
            {
                "photo": Path(ph).name,
                "spearman": spearman(a.ravel(), b.ravel()),
                "pixels": int(np.isfinite(b).sum()),
                "model_file": ran,
            }
        )
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.depth_agreement", description=__doc__.split("\n")[0])
    ap.add_argument("--depth-model", required=True, help="depth bundle folder or model id")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        rows = agreement(args.depth_model)
    except PortraitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print("no GDepth photo found (set PORTRAIT_DATA_DIR to a folder with depth_photos/)", file=sys.stderr)
        return 1
    for r in rows:
        print(f"{r['photo']:32} Spearman {r['spearman']:+.3f} over {r['pixels']} px ({r['model_file']})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
