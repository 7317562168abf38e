"""Does a depth model order a scene like the photo's own depth map? Spearman rank correlation.

For every photo with its own depth in `depth_photos/` of the data folder (Google Camera Lens Blur GDepth
JPEGs, iPhone portrait JPEGs with disparity), run the depth bundle's handoff model
(photo.run_depth_model) on the photo the depth belongs to, and compare its relative inverse depth with
the photo's inverse depth (1 / GDepth depth, or Apple's disparity, which is inverse depth) by Spearman's
rank correlation on a regular grid of pixels. Ranks ignore the unknown scale and offset of relative
depth; +1 is the same near-to-far ordering. Usage:

    python -m experiments.depth_agreement --depth-model pydnet_pp_mobile [--json out.json]

Measured 2026-12-07, PyDNet++ handoff_cpu (float16), the only monocular model with weights reachable
here (npm and PyPI packages of other models hold code that downloads weights at run time): bust +0.839,
wood +0.372, iPhone vase -0.308 (a close-up of a vase on a table: the model's inverse depth falls from
the top of the frame to the bottom, the photo's disparity rises). That map still passes the stage's
agreement check (depth_edges.depth_regions), but with the monocular weight it only settles hesitant
pixels and never cuts the mask: the selfie alpha with it differs from the alpha without depth on 3,042
of 12.2 M pixels (by more than 0.1).

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
from toolchain.depth.readers import read_depth_photo
from toolchain.errors import PortraitError
from toolchain.render.photo import run_depth_model

GRID = (96, 128)  # pixels compared per photo (rows, cols), sampled evenly


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    return float(spearmanr(a[ok], b[ok]).statistic) if ok.sum() > 10 else float("nan")


def agreement(depth_model, photos=None) -> list[dict]:
    """[{"photo", "spearman", "pixels", "model_file"}] for every photo with its own depth."""
    folder = paths.depth_photos_dir()
    photos = sorted(folder.glob("*.jpg")) if photos is None and folder else (photos or [])
    rows = []
    for ph in photos:
        try:
            dp = read_depth_photo(ph)
        except PortraitError:
            continue  # no depth in this photo
        if dp.depth_m is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                inv_photo = np.where(dp.depth_m > 0, 1.0 / dp.depth_m, np.nan).astype(np.float32)
        elif dp.disparity is not None:
            inv_photo = np.where(dp.disparity > 0, dp.disparity, np.nan).astype(np.float32)
        else:
            continue
        inv_model, ran = run_depth_model(depth_model, dp.image)
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
        print(
            "no photo with its own depth found (set PORTRAIT_DATA_DIR to a folder with depth_photos/)", file=sys.stderr
        )
        return 1
    for r in rows:
        print(f"{r['photo']:32} Spearman {r['spearman']:+.3f} over {r['pixels']} px ({r['model_file']})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
