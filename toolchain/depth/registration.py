"""Registration: ToF depth reprojected into the RGB camera and upsampled to RGB resolution.

Steps: drop flying pixels (a depth strictly between its neighbours across an edge); move every
ToF pixel into the RGB camera with the intrinsics and extrinsics; resolve occlusions with a
z-buffer of the pixels' footprints (nearest wins); then fill each RGB pixel from the ToF samples
around it with weights for distance, colour similarity in the RGB image, confidence and agreement
with the surface that won the z-buffer there (a joint bilateral filter in inverse depth, which is
exact on planes). Pixels with no trusted sample (outside the ToF view, behind invalid ToF pixels,
flying pixels, uncovered by the 1 cm baseline) are holes: NaN depth, zero confidence, marked in
hole_mask; nothing is invented there. Not for filling holes: a later stage may inpaint them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from toolchain.depth.camera import Extrinsics, Intrinsics, backproject, project, splat_nearest
from toolchain.errors import InputError


@dataclass
class RegisteredDepth:
    """Registered depth at RGB resolution."""

    depth_m: np.ndarray  # float32 H x W z-depth in the RGB camera, metres; NaN at holes
    confidence: np.ndarray  # float32 H x W in [0, 1]; 0 at holes
    hole_mask: np.ndarray  # bool H x W, True where there is no trusted depth
    edge_mask: np.ndarray  # bool H x W, hole pixels caused by ToF flying pixels at depth edges


def _as_intrinsics(x, shape, what: str) -> Intrinsics:
    if isinstance(x, Intrinsics):
        return x
    if isinstance(x, dict):
        return Intrinsics.from_dict(x)
    K = np.asarray(x, np.float64)
    if K.shape != (3, 3):
        raise InputError(
            f"{what} must be Intrinsics, a dict or a 3x3 matrix, got shape {K.shape}",
            where=f"register_depth({what}=...)",
            fix="pass Intrinsics",
        )
    return Intrinsics.from_matrix(K, shape[1], shape[0])


def _as_extrinsics(x) -> Extrinsics:
    if isinstance(x, Extrinsics):
        return x
    if isinstance(x, dict):
        return Extrinsics.from_dict(x)
    M = np.asarray(x, np.float64)
    if M.shape in ((4, 4), (3, 4)):
        return Extrinsics(M[:3, :3], M[:3, 3])
    raise InputError(
        f"extrinsics must be Extrinsics, a dict or a 4x4 matrix, got shape {M.shape}",
        where="register_depth(extrinsics=...)",
        fix="pass Extrinsics (ToF -> RGB)",
    )


def flying_pixels(
    z: np.ndarray,
    valid: np.ndarray,
    conf: np.ndarray | None = None,
    jump_rel: float = 0.02,
    slope_ratio: float = 3.0,
    low_conf: float = 0.6,
) -> np.ndarray:
    """ToF pixels that sit between two surfaces (mixed returns at depth edges and in hair or fur).

    Two cues: (a) along a row or a column the pixel jumps away from both neighbours by more than
    jump_rel of its depth and by much more than the surface slopes on either side (so steep but
    smooth surfaces such as a floor near the horizon are kept); (b) runs of mixed pixels, as in a
    hair fringe: the 5x5 neighbourhood spans more than 10 % in depth, the pixel is more than 3 % away
    from both its nearest and farthest neighbour, and its confidence is below low_conf (a mixed
    return is weak)."""
    zn = np.where(valid, z, np.nan).astype(np.float32)
    p = np.pad(zn, 2, constant_values=np.nan)
    H, W = z.shape
    c = p[2 : 2 + H, 2 : 2 + W]
    out = np.zeros((H, W), bool)
    with np.errstate(invalid="ignore"):
        for dy, dx in ((0, 1), (1, 0)):
            a1 = p[2 - dy : 2 - dy + H, 2 - dx : 2 - dx + W]
            a2 = p[2 - 2 * dy : 2 - 2 * dy + H, 2 - 2 * dx : 2 - 2 * dx + W]
            b1 = p[2 + dy : 2 + dy + H, 2 + dx : 2 + dx + W]
            b2 = p[2 + 2 * dy : 2 + 2 * dy + H, 2 + 2 * dx : 2 + 2 * dx + W]
            ja, jb = np.abs(c - a1), np.abs(c - b1)
            between = (c - a1) * (c - b1) < 0  # strictly between the two neighbours
            step = (np.minimum(ja, jb) > jump_rel * c) & between
            flat_a = ja > slope_ratio * np.nan_to_num(np.abs(a1 - a2), nan=np.inf)
            flat_b = jb > slope_ratio * np.nan_to_num(np.abs(b1 - b2), nan=np.inf)
            out |= step & flat_a & flat_b
    if conf is not None:
        k = np.ones((5, 5), np.uint8)
        zmax = cv2.dilate(np.where(valid, z, 0).astype(np.float32), k)
        zmin = cv2.erode(np.where(valid, z, np.inf).astype(np.float32), k)
        between = (zmax - zmin > 0.1 * z) & (np.minimum(z - zmin, zmax - z) > 0.03 * z)
        out |= between & (conf < low_conf)
    return out & valid


def register_depth_detailed(
    tof_range_mm,
    tof_confidence,
    tof_intrinsics,
    rgb_intrinsics,
    extrinsics,
    rgb_image,
    *,
    min_confidence: float = 0.0,
    sigma_color: float = 24.0,
    surface_rel: float = 0.04,
) -> RegisteredDepth:
    """Register a ToF frame to the RGB image (see the module docstring); all results at RGB size.

    tof_range_mm: uint16 H x W z-depth (mm, 0 = invalid); tof_confidence: H x W in [0, 1];
    extrinsics: ToF -> RGB (X_rgb = R X_tof + t, metres); rgb_image: uint8 H x W x 3 (guide).
    """
    rng_mm = np.asarray(tof_range_mm)
    conf = np.asarray(tof_confidence, np.float32)
    img = np.asarray(rgb_image)
    if rng_mm.ndim != 2 or conf.shape != rng_mm.shape:
        raise InputError(
            f"ToF range {rng_mm.shape} and confidence {conf.shape} must be equal 2-D arrays",
            where="register_depth",
            fix="decode the DEPTH16 frame with decode_depth16",
        )
    if img.ndim != 3 or img.shape[2] != 3:
        raise InputError(
            f"RGB guide must be H x W x 3, got {img.shape}",
            where="register_depth(rgb_image=...)",
            fix="pass the RGB frame",
        )
    H, W = img.shape[:2]
    tof = _as_intrinsics(tof_intrinsics, rng_mm.shape, "tof_intrinsics")
    rgb = _as_intrinsics(rgb_intrinsics, (H, W), "rgb_intrinsics")
    if (tof.height, tof.width) != rng_mm.shape or (rgb.height, rgb.width) != (H, W):
        raise InputError(
            f"intrinsics are for {tof.width}x{tof.height} / {rgb.width}x{rgb.height} but the "
            f"frames are {rng_mm.shape[1]}x{rng_mm.shape[0]} / {W}x{H}",
            where="register_depth",
            fix="pass the intrinsics of these frames",
        )
    ext = _as_extrinsics(extrinsics)

    z = rng_mm.astype(np.float32) / 1000.0
    valid = (rng_mm > 0) & (conf > min_confidence)
    flying = flying_pixels(z, valid, conf)
    good = valid & ~flying
    # untrusted pixels still occlude: give them the nearest trusted depth around them
    z_est = cv2.erode(np.where(good, z, np.inf).astype(np.float32), np.ones((5, 5), np.uint8))
    z_occ = np.where(good, z, np.where(z_est < 100.0, z_est, 0.0))  # erode pads with FLT_MAX

    ratio = max(rgb.fx / tof.fx, rgb.fy / tof.fy)
    s = max(1, int(math.ceil(1.5 * ratio)))
    vv, uu = np.mgrid[0 : tof.height, 0 : tof.width].astype(np.float64)
    offs = (np.arange(s) + 0.5) / s - 0.5
    ou, ov = np.meshgrid(offs, offs)
    U = (uu.ravel()[:, None] + ou.ravel()[None, :]).ravel()
    V = (vv.ravel()[:, None] + ov.ravel()[None, :]).ravel()
    Z = np.repeat(z_occ.ravel().astype(np.float64), s * s)
    keep = Z > 0
    src = np.repeat(np.arange(z.size), s * s)[keep]
    u, v, zr = project(ext.apply(backproject(U[keep], V[keep], Z[keep], tof)), rgb)
    zbuf, win = splat_nearest(u, v, zr, (H, W))
    covered = win >= 0
    fp_src = np.where(covered, src[np.maximum(win, 0)], 0)
    fp_good = covered & good.ravel()[fp_src]
    fp_conf = np.where(fp_good, conf.ravel()[fp_src], 0.0).astype(np.float32)
    edge_hole = covered & flying.ravel()[fp_src]

    # sparse samples: trusted ToF pixel centres that are visible (not behind the footprint z-buffer)
    gi = np.nonzero(good.ravel())[0]
    Xc = backproject(uu.ravel()[gi], vv.ravel()[gi], z.ravel()[gi].astype(np.float64), tof)
    uc, vc, zc = project(ext.apply(Xc), rgb)
    zs, ws = splat_nearest(uc, vc, zc, (H, W))
    has_s = ws >= 0
    zs_vis = np.where(has_s & (zs <= np.where(covered, zbuf, np.inf) * 1.03), zs, 0.0)
    samp_w = np.where(zs_vis > 0, conf.ravel()[gi][np.maximum(ws, 0)], 0.0).astype(np.float32)
    inv = np.where(zs_vis > 0, 1.0 / np.maximum(zs_vis, 1e-6), 0.0).astype(np.float32)
    inv_ref = np.where(fp_good, 1.0 / np.maximum(zbuf, 1e-6), 0.0).astype(np.float32)

    r = max(2, int(math.ceil(1.6 * ratio)))
    sig_s = max(1.0, 0.8 * r)
    guide = img.astype(np.float32)
    pad = lambda a: cv2.copyMakeBorder(a, r, r, r, r, cv2.BORDER_CONSTANT, value=0)  # noqa: E731
    P_inv, P_w, P_g = pad(inv), pad(samp_w), pad(guide)
    num = np.zeros((H, W), np.float32)
    den = np.zeros((H, W), np.float32)
    inv_c = 1.0 / (2.0 * sigma_color**2)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            ws_ = math.exp(-(dx * dx + dy * dy) / (2.0 * sig_s**2))
            if ws_ < 0.05:
                continue
            sl = (slice(r + dy, r + dy + H), slice(r + dx, r + dx + W))
            q_w, q_inv = P_w[sl], P_inv[sl]
            dc = P_g[sl] - guide
            wc = np.exp(-(dc * dc).sum(-1) * inv_c)
            same = np.abs(q_inv - inv_ref) <= surface_rel * inv_ref
            wt = ws_ * wc * q_w * same
            num += wt * q_inv
            den += wt
    ok = fp_good & (den > 1e-4)
    depth = np.full((H, W), np.nan, np.float32)
    depth[ok] = 1.0 / (num[ok] / den[ok])
    hole = ~ok
    return RegisteredDepth(
        depth_m=depth,
        confidence=np.where(ok, fp_conf, 0.0).astype(np.float32),
        hole_mask=hole,
        edge_mask=edge_hole & hole,
    )


def register_depth(
    tof_range_mm, tof_confidence, tof_intrinsics, rgb_intrinsics, extrinsics, rgb_image, **kw
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(depth_m float32 H x W at RGB size with NaN at holes, confidence float32 H x W, hole_mask bool).

    See register_depth_detailed for the arguments and units.
    """
    r = register_depth_detailed(
        tof_range_mm, tof_confidence, tof_intrinsics, rgb_intrinsics, extrinsics, rgb_image, **kw
    )
    return r.depth_m, r.confidence, r.hole_mask
