"""Matting-quality edges: trimap -> alpha solved in the unknown band -> foreground colours.

The fused stage's guided filter alone moves a segmentation outline only a pixel or two; hair,
whiskers and tails need the alpha *solved* from the photo. This module does it in three steps, on the
stage's working grid (plan.py), and hands full-resolution results back to golden.py / device.py:

1. `trimap.make_trimap`: sure subject / sure background / unknown from the model's P(subject), its
   uncertainty and, when present, depth (trimap.py has the rules, depth_edges.py what depth says). The
   unknown band is at least BAND_MODEL_PX model pixels wide on either side of the 0.5 outline (the
   model cannot place its edge better than that).
2. `solve_alpha`: closed-form matting (Levin et al., pymatting's `cf_laplacian`) restricted to the
   unknown pixels: L_uu x = -L_uk a_k, solved by conjugate gradients with pymatting's incomplete
   Cholesky preconditioner, on the bounding box of the band only. Sure pixels keep 0 / 1, so a
   confident interior stays opaque.
3. `estimate_foreground`: blur fusion (Forte & Pitie 2021: box-filtered local subject / background
   means, coarse to fine) on the same crop, or pymatting's `estimate_foreground_ml` (FG_METHOD "ml");
   measured on the photos and scenes blur fusion spills no more (README) at a tenth of the time at
   12 MP, while ML is far better on a wide two-colour ramp (tests).
   Between 2 and 3, `trimap.enclosed_holes`: a region the solve left translucent that the subject
   encloses and the mask calls subject is filled (a white logo on a cap against a pale sky); then
   `trimap.far_from_clear` ramps to opaque what the solve left translucent inside the subject, far from
   any clear background (dark hair on a dark wall). Its correction F - I is what
   golden.py upsamples and adds to the full-resolution photo, so fine detail stays while the
   background colour leaves the subject's edge.

Why closed form and not pymatting's KNN or large-kernel (LKM) solvers: on cat_01 with the DeepLab
trimap (experiments/matting_methods.py, 810x540 grid, 69k unknown pixels, 2026-11-29) closed form took
1.8 s CPU for band SAD 2.37 / accuracy 0.978, KNN 14.4 s for 4.75 / 0.948, LKM 25.2 s for 3.05 / 0.980.

Not here: the guided upsampling to full resolution and the composite (golden.py), the fixed-point
port of the same steps (device.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
import scipy.sparse as sp
from numba import njit
from pymatting import estimate_foreground_ml, ichol, jacobi
from scipy.sparse.linalg import LinearOperator
from scipy.sparse.linalg import cg as scipy_cg

from .depth_edges import DepthCue
from .trimap import KEEP, UNKNOWN, deep_inside, enclosed_holes, far_from_clear, make_trimap

if TYPE_CHECKING:
    import scipy.sparse

BAND_MODEL_PX = 3.0  # unknown band half-width around the 0.5 outline, in model-output pixels, unless
# the model's output spec sets edge_band_model_px (registry -> manifest -> spec)
BAND_MIN_PX = 3  # ... and at least this many working pixels
CF_EPSILON = 1e-6  # closed-form regulariser (pymatting's default is 1e-7; 1e-6 is smoother, faster)
CF_RADIUS = 1  # 3x3 windows
ALPHA_SNAP = 0.05  # solved alpha below this is 0, above 1 - this is 1 (linear in between)
PRIOR_WEIGHT = 1e-5  # pull of the solve towards the model's P(subject) (the Laplacian's diagonal is ~1)
ICHOL_SHIFTS = [1e-4, 1e-3, 1e-2]  # diagonal shifts pymatting's ichol tries in turn (0 often breaks down)
CG_RTOL = 1e-4  # conjugate-gradient stopping tolerance (relative residual)
CG_MAXITER = 400
FG_REGULARIZATION = 1e-5  # estimate_foreground_ml defaults
FG_METHOD = "blur"  # foreground colours: "blur" (blur fusion) or "ml" (pymatting's estimate_foreground_ml)
FG_RADII = (15, 8, 4, 2)  # blur fusion box radii, working px, coarse to fine
KEEP_WEIGHT = 1e-1  # ... with this weight (None: held exactly; measured in README)
DEPTH_DATA_WEIGHT = 0.0  # pull of the solve towards depth's verdict where depth is sure; 0: depth only in the trimap
# (1e-2 measured on the ToF scenes: IoU +0.001..+0.002 on four, -0.0017 on person_1)


@dataclass
class Matte:
    """What the matting step gives the rest of the stage, all on the working grid."""

    trimap: np.ndarray  # float32: 0 sure background, 1 sure subject, UNKNOWN (0.5), KEEP (-1)
    alpha: np.ndarray  # float32 in [0, 1]
    fg_delta: np.ndarray | None  # float32 HxWx3 in [-1, 1]: estimated foreground minus the photo (None: not asked)


def band_radius(plan) -> int:
    """Unknown band half-width in working pixels for this plan (model pixels -> working pixels): the
    plan's band_model_px (from the model's output spec) or BAND_MODEL_PX."""
    model_px = plan.band_model_px if plan.band_model_px is not None else BAND_MODEL_PX
    return int(max(BAND_MIN_PX, round(model_px * plan.guide_radius)))  # guide_radius: one model px


def _disc(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _crop_box(unknown: np.ndarray, margin: int):
    ys, xs = np.nonzero(unknown)
    h, w = unknown.shape
    return (
        max(0, ys.min() - margin),
        min(h, ys.max() + margin + 1),
        max(0, xs.min() - margin),
        min(w, xs.max() + margin + 1),
    )


_KERNELS = None


def _kernels():
    """The band Laplacian's two loops, compiled by numba (pymatting's own dependency) on first use:
    per-window mean and inverse covariance, then each unknown pixel's 5x5 row of affinities summed
    over the 3x3 windows that hold it (each pixel writes only its own row). Serial and without the
    GIL: numba's parallel loops gained nothing here (37 vs 39 ms for 31k unknown pixels) and its
    default thread pool may not be entered from two threads at once. Compiled code is cached beside
    this file (or in numba's user cache)."""
    global _KERNELS
    if _KERNELS is not None:
        return _KERNELS

    @njit(cache=True, nogil=True)
    def window_stats(img, cy, cx, eps):
        n = cy.size
        mu = np.empty((n, 3))
        inv = np.empty((n, 3, 3))
        for k in range(n):
            y, x = cy[k], cx[k]
            m = np.zeros(3)
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    for ch in range(3):
                        m[ch] += img[y + dy, x + dx, ch]
            m /= 9.0
            c = np.zeros((3, 3))
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    for i in range(3):
                        di = img[y + dy, x + dx, i] - m[i]
                        for j in range(3):
                            c[i, j] += di * (img[y + dy, x + dx, j] - m[j])
            for i in range(3):
                for j in range(3):
                    c[i, j] /= 9.0
                c[i, i] += eps / 9.0
            a, b, cc = c[0, 0], c[0, 1], c[0, 2]
            d, e, f = c[1, 1], c[1, 2], c[2, 2]
            A, B, C = d * f - e * e, cc * e - b * f, b * e - cc * d
            D, E, F = a * f - cc * cc, b * cc - a * e, a * d - b * b
            r = 1.0 / (a * A + b * B + cc * C)
            inv[k, 0, 0], inv[k, 0, 1], inv[k, 0, 2] = A * r, B * r, C * r
            inv[k, 1, 0], inv[k, 1, 1], inv[k, 1, 2] = B * r, D * r, E * r
            inv[k, 2, 0], inv[k, 2, 1], inv[k, 2, 2] = C * r, E * r, F * r
            mu[k, 0], mu[k, 1], mu[k, 2] = m[0], m[1], m[2]
        return mu, inv

    @njit(cache=True, nogil=True)
    def pixel_rows(img, uy, ux, centre, mu, inv):
        h, w = centre.shape
        n = uy.size
        vals = np.zeros((n, 25))
        for k in range(n):
            y, x = uy[k], ux[k]
            for wy in range(-1, 2):
                for wx in range(-1, 2):
                    yc, xc = y + wy, x + wx
                    if yc < 0 or yc >= h or xc < 0 or xc >= w:
                        continue
                    cid = centre[yc, xc]
                    if cid < 0:
                        continue
                    t0 = t1 = t2 = 0.0
                    for j in range(3):
                        dp = img[y, x, j] - mu[cid, j]
                        t0 += inv[cid, 0, j] * dp
                        t1 += inv[cid, 1, j] * dp
                        t2 += inv[cid, 2, j] * dp
                    for qy in range(-1, 2):
                        for qx in range(-1, 2):
                            yq, xq = yc + qy, xc + qx
                            s = (
                                t0 * (img[yq, xq, 0] - mu[cid, 0])
                                + t1 * (img[yq, xq, 1] - mu[cid, 1])
                                + t2 * (img[yq, xq, 2] - mu[cid, 2])
                            )
                            vals[k, (yq - y + 2) * 5 + (xq - x + 2)] += (1.0 + s) / 9.0
        return vals

    _KERNELS = (window_stats, pixel_rows)
    return _KERNELS


def band_laplacian(
    image: np.ndarray, unknown: np.ndarray, epsilon: float = CF_EPSILON, kernels=None
) -> scipy.sparse.csr_matrix:
    """Rows of the closed-form matting Laplacian (Levin et al.; pymatting's `cf_laplacian` with radius 1)
    for the unknown pixels only (other rows are empty), built from the 3x3 windows that touch an
    unknown pixel, so its cost follows the band, not the frame: each row has the 25 entries of its 5x5
    neighbourhood. They equal pymatting's rows (tests/test_render_matting.py). image: float64 HxWx3.
    The loops are numba kernels (_kernels): the numpy version of the same sums took 0.2-0.45 s of the
    1.1-1.7 s golden frame at 12 MP."""
    window_stats, pixel_rows = kernels or _kernels()  # kernels: (window_stats, pixel_rows) for other channels
    h, w, _ = image.shape
    img = np.ascontiguousarray(image, dtype=np.float64)
    touch = cv2.dilate(unknown.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    touch[0, :] = touch[-1, :] = touch[:, 0] = touch[:, -1] = False  # window centres need a full 3x3
    cy, cx = np.nonzero(touch)
    centre = np.full((h, w), -1, np.int64)
    centre[cy, cx] = np.arange(cy.size)
    mu, inv = window_stats(img, cy.astype(np.int64), cx.astype(np.int64), float(epsilon))
    uy, ux = np.nonzero(unknown)
    vals = pixel_rows(img, uy.astype(np.int64), ux.astype(np.int64), centre, mu, inv)
    # L = D - W with D the row sums of W: off the diagonal -W, on it the sum of the row's other weights
    ey, ex = np.divmod(np.arange(25), 5)
    offsets = (ey - 2) * w + (ex - 2)
    rows_u = uy.astype(np.int64) * w + ux
    data = -vals
    data[:, 12] = vals.sum(axis=1) - vals[:, 12]
    keep = vals != 0
    keep[:, 12] = True
    counts = np.zeros(h * w, np.int64)
    counts[rows_u] = keep.sum(axis=1)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    cols = rows_u[:, None] + offsets[None, :]
    return sp.csr_matrix((data[keep], cols[keep], indptr), shape=(h * w, h * w))


def known_alpha(trimap: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Alpha where the trimap knows it: 1 / 0 on the sure pixels, `keep` (the guided stage's alpha; 0.5
    without one) on KEEP pixels, 0 on unknown ones (float32)."""
    alpha = np.where(trimap >= 1.0, 1.0, 0.0).astype(np.float32)
    sel = trimap == KEEP
    if sel.any():
        alpha[sel] = 0.5 if keep is None else keep[sel]
    return alpha


def solve_alpha(
    image_rgb: np.ndarray,
    trimap: np.ndarray,
    prior: np.ndarray | None = None,
    keep: np.ndarray | None = None,
    depth_target: np.ndarray | None = None,
    depth_weight: np.ndarray | None = None,
) -> np.ndarray:
    """Closed-form alpha in the unknown band, weakly pulled (PRIOR_WEIGHT) towards `prior` (the model's
    P(subject); 0.5 when None). KEEP pixels are solved too but pulled hard (KEEP_WEIGHT) towards `keep`
    (the guided stage's alpha), so only a clear edge of the photo moves them. image_rgb: uint8 or float
    in [0, 1]; returns float32 HxW."""

    alpha = known_alpha(trimap, keep)
    is_keep = trimap == KEEP
    solve = (trimap == UNKNOWN) | (is_keep if KEEP_WEIGHT is not None else False)
    if not solve.any():
        return alpha
    y0, y1, x0, x1 = _crop_box(solve, CF_RADIUS + 1)
    img = image_rgb[y0:y1, x0:x1]
    img = img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else img.astype(np.float64)
    unk = solve[y0:y1, x0:x1]
    is_unknown = unk.ravel()
    known = alpha[y0:y1, x0:x1].ravel().astype(np.float64)
    target = np.full(known.shape, 0.5) if prior is None else prior[y0:y1, x0:x1].ravel().astype(np.float64)
    weight = np.full(known.shape, PRIOR_WEIGHT)
    kp = is_keep[y0:y1, x0:x1].ravel()
    target[kp], weight[kp] = known[kp], (KEEP_WEIGHT or 0.0)
    if depth_target is not None and depth_weight is not None:
        # depth's data term: where depth is sure (its regions, clear of its own edges) it pulls the solve
        # towards its verdict with a weight far below the colour affinities', so it settles flat,
        # ambiguous colour and leaves strands with a colour edge to colour
        dw = depth_weight[y0:y1, x0:x1].ravel().astype(np.float64)
        sel = (dw > weight) & ~kp
        target[sel] = depth_target[y0:y1, x0:x1].ravel()[sel]
        weight[sel] = dw[sel]
    known[is_unknown] = 0
    L = band_laplacian(img, unk)
    # a weak pull towards the model's own P(subject) keeps the system positive definite in flat
    # regions (where the closed form alone is singular and ichol fails) and settles them as the model did
    w_u = weight[is_unknown]
    L_u = (L[is_unknown][:, is_unknown] + sp.diags(w_u, format="csr")).tocsc()
    rhs = -(L[is_unknown] @ known) + w_u * target[is_unknown]
    try:  # a shifted factorisation is still a good preconditioner where the plain one breaks down
        precond = ichol(L_u, shifts=ICHOL_SHIFTS)
    except Exception:  # ichol refuses every shift: Jacobi (slower to converge, never fails)
        precond = jacobi(L_u)
    M = LinearOperator(L_u.shape, matvec=precond, dtype=np.float64)
    # scipy's CG returns its last iterate when it hits maxiter (pymatting's raises): never a failed frame
    x, _info = scipy_cg(L_u, rhs, x0=np.full(int(is_unknown.sum()), 0.5), M=M, rtol=CG_RTOL, maxiter=CG_MAXITER)
    crop = alpha[y0:y1, x0:x1].ravel().copy()
    # snap near-certain values: closed form leaves textured subject pixels in the band a few percent
    # short of 1 (key colour showing through) and background texture a few percent above 0
    x = np.clip((x - ALPHA_SNAP) / (1 - 2 * ALPHA_SNAP), 0, 1)
    crop[is_unknown] = x
    alpha[y0:y1, x0:x1] = crop.reshape(unk.shape)
    return alpha


def _fuse(img, a, f_src, b_src, r):
    def box(x):
        return cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT_101)

    a3 = a[..., None]
    f_hat = box(f_src * a3) / (box(a)[..., None] + np.float32(1e-5))
    b_hat = box(b_src * (1 - a3)) / (box(1 - a)[..., None] + np.float32(1e-5))
    f = f_hat + a3 * (img - a3 * f_hat - (1 - a3) * b_hat)
    return np.clip(f, 0, 1), np.clip(b_hat, 0, 1)


def blur_fusion_foreground(img: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Foreground colours by blur fusion (Forte & Pitie 2021, "Approximate fast foreground colour
    estimation"): local means of subject and background colour from box filters, coarse to fine
    (FG_RADII), each pass correcting F so that alpha F + (1 - alpha) B = I. img float32 HxWx3 in [0, 1]."""
    f, b = img, img
    for r in FG_RADII:
        f, b = _fuse(img, a, f, b, r)
    return f


def estimate_foreground(image_rgb: np.ndarray, alpha: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """Foreground colour minus the photo (float32 HxWx3, in [-1, 1]), non-zero only near the band."""

    delta = np.zeros(alpha.shape + (3,), np.float32)
    unknown = trimap == UNKNOWN
    if not unknown.any():
        return delta
    y0, y1, x0, x1 = _crop_box(unknown, 8)
    if FG_METHOD == "blur":
        img = image_rgb[y0:y1, x0:x1].astype(np.float32) / np.float32(255)
        a = np.clip(alpha[y0:y1, x0:x1].astype(np.float32), 0, 1)
        fg = blur_fusion_foreground(img, a)
    else:
        img = image_rgb[y0:y1, x0:x1].astype(np.float64) / 255.0
        a = alpha[y0:y1, x0:x1].astype(np.float64)
        fg = estimate_foreground_ml(img, a, regularization=FG_REGULARIZATION)
    d = (fg - img).astype(np.float32)
    d[a <= 0] = 0  # no subject there: nothing to correct (and F is meaningless)
    d[trimap[y0:y1, x0:x1] >= 1] = 0  # the sure subject is the photo itself
    delta[y0:y1, x0:x1] = d
    return delta


def fill_holes(alpha: np.ndarray, trimap: np.ndarray, p: np.ndarray, band_px: int) -> np.ndarray:
    """trimap.enclosed_holes on the solved alpha: the filled pixels (bool), set to 1 / sure in place."""
    holes = enclosed_holes(alpha, trimap == 0, p, deep=deep_inside(p >= 0.5, max(1, band_px // 2)))
    alpha[holes] = 1.0
    trimap[holes] = 1.0
    return holes


def matte(
    work_rgb: np.ndarray,
    p: np.ndarray,
    plan,
    cue: DepthCue | None = None,
    foreground: bool = True,
    keep: np.ndarray | None = None,
) -> Matte:
    """Trimap, solved alpha (enclosed holes filled) and foreground correction on the working grid.
    cue: what depth says (depth_edges.py) or None; keep: the guided stage's alpha on the working grid
    (held where the trimap says KEEP)."""
    band = band_radius(plan)
    tri = make_trimap(p, band, cue)
    d_target = d_weight = None
    if cue is not None and DEPTH_DATA_WEIGHT:
        d_target = cue.at_subject.astype(np.float32)
        d_weight = np.where(cue.far | cue.at_subject, np.float32(DEPTH_DATA_WEIGHT), np.float32(0))
    alpha = solve_alpha(work_rgb, tri, p, keep, d_target, d_weight)
    fill_holes(alpha, tri, p, band)
    w = far_from_clear(alpha, tri == 0, p >= 0.5, tri == KEEP, band)
    alpha += (1 - alpha) * w
    tri[w >= 1] = 1.0
    delta = estimate_foreground(work_rgb, alpha, tri) if foreground else None
    return Matte(tri, alpha, delta)
