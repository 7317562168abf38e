"""The circle of confusion (blur radius) that a depth map gives: the one formula the render's golden
stage (render/golden.py) and the depth parity figures (parity/gate.py) both use.

Thin lens, focused at `focus`: coc = K * (1 - focus / z), K = the CoC radius at infinity (the render's
maximum blur). Negative in front of the focus plane, clipped to [-K, K]; holes (NaN, z <= 0) give 0.
Units: z and focus in the same unit (metres or relative depth: only their ratio counts); coc in the
unit of K (pixels).

Not for: the blur itself (render/).
"""

from __future__ import annotations

import numpy as np

F32 = np.float32


def signed_coc(z: np.ndarray, focus: float, k: float) -> np.ndarray:
    """Signed CoC radius (unit of k) at depth z for focus distance `focus`; 0 where z is not a depth."""
    kk = F32(k)
    with np.errstate(invalid="ignore", divide="ignore"):
        coc = kk * (F32(1) - F32(focus) / np.asarray(z, F32))
    ok = np.isfinite(coc)
    return np.where(ok, np.clip(coc, -kk, kk), F32(0)).astype(F32)


def blur_radius_px(inverse_depth: np.ndarray, subject: np.ndarray, max_blur_px: float) -> np.ndarray:
    """Blur radius (px, >= 0) at each pixel of a relative inverse-depth map, focused on the subject's
    median depth (`subject`: boolean mask of the same shape), as the render does without a focus point."""
    inv = np.asarray(inverse_depth, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(inv > 0, 1.0 / inv, np.nan)
    sel = z[subject & np.isfinite(z)]
    if sel.size == 0:
        raise ValueError("no valid depth on the subject")
    return np.abs(signed_coc(z, float(np.median(sel)), max_blur_px))
