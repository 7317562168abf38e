"""Depth as a fourth channel of the closed-form affinity (an RGB-D Laplacian). Not kept.

    PORTRAIT_MODELS_DIR=../shared/models PORTRAIT_DATA_DIR=../shared .venv/bin/python -m \\
        experiments.rgbd_affinity --lam 0.1 -- export/out/deeplabv3_mnv2_pascal_257 \\
        export/out/selfie_segmenter --synthetic --depth-model export/out/pydnet_pp_mobile

With depth, the band solve runs on [R, G, B, lam * weight * q] instead of [R, G, B]: q is inverse depth
on the working grid, smoothed over one depth pixel, divided by its median under the confident mask
(the subject at 1, the background below) and clipped to [0, 2], times the source's weight
(plan.DEPTH_SOURCES) and the depth's confidence. The window covariance becomes 4x4, so where colour
is ambiguous and depth changes inside a 3x3 window, alpha may follow depth. Everything else is the
golden stage. The rows printed are experiments.render_quality's ("matting+depth" is this).

Measured 2026-12-07 (`matting+depth` IoU / band accuracy against the code's own, which has depth in the
trimap only): lam 0.5 worse on every frame (ToF person_1 0.9978 -> 0.9791, DeepLab cat_01 0.9891 ->
0.9830); lam 0.1 worse on every ToF scene (person_0 0.9970 -> 0.9871) and on the photos but DeepLab
person_01's holes (0.32 -> 0.22 %); lam 0.02 lower IoU on 7 of the 8 ToF scenes (by up to 0.0035,
person_3 0.9880 -> 0.9845; person_1 +0.0001), the photos within 0.001. The depth is soft and a few
working pixels off the colour edge, so inside the band its slope competes with the colour edge instead
of settling ambiguous colour. Depth stays in the trimap only.
"""

from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np
from numba import njit

from experiments import render_quality
from toolchain.render import depth_edges
from toolchain.render import golden as G
from toolchain.render import matting as M
from toolchain.render.plan import DEPTH_SOURCES

_ORIG: dict = {}
_STATE: dict = {"lam": 0.0, "chan": None}


@njit(cache=True)
def window_stats_n(img, cy, cx, eps):
    n = cy.size
    C = img.shape[2]
    mu = np.empty((n, C))
    inv = np.empty((n, C, C))
    for k in range(n):
        y, x = cy[k], cx[k]
        m = np.zeros(C)
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                for ch in range(C):
                    m[ch] += img[y + dy, x + dx, ch]
        m /= 9.0
        c = np.zeros((C, C))
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                for i in range(C):
                    di = img[y + dy, x + dx, i] - m[i]
                    for j in range(C):
                        c[i, j] += di * (img[y + dy, x + dx, j] - m[j])
        c /= 9.0
        for i in range(C):
            c[i, i] += eps / 9.0
        inv[k] = np.linalg.inv(c)
        mu[k] = m
    return mu, inv


def pixel_rows_n(img, uy, ux, centre, mu, inv):
    """matting's pixel_rows for any channel count, vectorised over the unknown pixels (numpy, not numba:
    an experiment): each row's 25 affinities summed over the 3x3 windows that hold the pixel."""
    h, w = centre.shape
    vals = np.zeros((uy.size, 25))
    for wy in (-1, 0, 1):
        for wx in (-1, 0, 1):
            yc, xc = uy + wy, ux + wx
            ok = (yc >= 0) & (yc < h) & (xc >= 0) & (xc < w)
            cid = np.where(ok, centre[np.clip(yc, 0, h - 1), np.clip(xc, 0, w - 1)], -1)
            ok &= cid >= 0
            k, c = np.nonzero(ok)[0], cid[ok]
            t = np.einsum("kij,kj->ki", inv[c], img[uy[k], ux[k]] - mu[c])
            for qy in (-1, 0, 1):
                for qx in (-1, 0, 1):
                    dq = img[yc[k] + qy, xc[k] + qx] - mu[c]
                    vals[k, (wy + qy + 2) * 5 + (wx + qx + 2)] += (1.0 + np.einsum("ki,ki->k", t, dq)) / 9.0
    return vals


def band_laplacian_n(image, unknown, epsilon=M.CF_EPSILON):
    """matting.band_laplacian for any number of channels (a 4x4 window covariance for RGB-D)."""
    if image.shape[2] == 3:
        return _ORIG["band_laplacian"](image, unknown, epsilon)
    return _ORIG["band_laplacian"](image, unknown, epsilon, kernels=(window_stats_n, pixel_rows_n))


def matte_rgbd(work_rgb, p, plan, cue=None, foreground=True, keep=None):
    """matting.matte with the depth channel appended to the image the band solve sees."""
    d = _STATE["chan"]
    if d is None or cue is None:
        return _ORIG["matte"](work_rgb, p, plan, cue, foreground, keep)
    rgb = work_rgb.astype(np.float64) / 255.0 if work_rgb.dtype == np.uint8 else work_rgb.astype(np.float64)
    est = M.estimate_foreground
    M.estimate_foreground = lambda img, a, t: est(img[..., :3], a, t)
    try:
        return _ORIG["matte"](np.dstack([rgb, d]), p, plan, cue, foreground, keep)
    finally:
        M.estimate_foreground = est


def matte_mask(frame, plan, work, coc, conf):
    """golden.matte_mask after computing the depth channel for this frame."""
    _STATE["chan"] = None
    if frame.depth_m is not None and _STATE["lam"] > 0:
        z = depth_edges.sample(frame.depth_m, plan).astype(np.float64)
        c = np.ones_like(z) if frame.confidence is None else depth_edges.sample(frame.confidence, plan).astype(float)
        valid = np.isfinite(z) & (z > 0)
        q = np.where(valid, 1.0 / np.where(valid, z, 1), 0)
        sig = max(plan.work_h / frame.depth_m.shape[0], 1.0)
        wv = cv2.GaussianBlur(valid.astype(np.float64), (0, 0), sig)
        qs = cv2.GaussianBlur(q, (0, 0), sig) / np.maximum(wv, 1e-6)
        pw = cv2.resize(G.decode_probability(frame.low_res, frame.spec), (plan.work_w, plan.work_h))
        sel = (pw >= 0.95) & valid
        if sel.sum() > 64:
            w = DEPTH_SOURCES[frame.depth_source]["weight"]
            conf_s = np.clip(cv2.GaussianBlur(c, (0, 0), sig), 0, 1)
            _STATE["chan"] = _STATE["lam"] * w * np.clip(qs / np.median(qs[sel]), 0, 2) * conf_s
    return _ORIG["matte_mask"](frame, plan, work, coc, conf)


def install(lam: float) -> None:
    """Patch the golden stage (this process only) to solve the band on RGB-D with weight lam."""
    if not _ORIG:
        _ORIG.update(band_laplacian=M.band_laplacian, matte=M.matte, matte_mask=G.matte_mask)
    _STATE["lam"] = lam
    M.band_laplacian = band_laplacian_n
    M.matte = matte_rgbd
    G.matte_mask = matte_mask


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lam", type=float, default=0.1, help="weight of the depth channel (colour is in [0, 1])")
    ap.add_argument("rest", nargs=argparse.REMAINDER, help="-- then experiments.render_quality's arguments")
    args = ap.parse_args(argv)
    install(args.lam)
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    return render_quality.main(rest)


if __name__ == "__main__":
    sys.exit(main())
