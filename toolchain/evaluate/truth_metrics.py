"""Accuracy against ground truth, per image, and bootstrap confidence intervals over a set.

Pure functions on arrays with known answers (tests check them):
- segmentation: confusion matrix (-> mIoU, per-class IoU, pixel accuracy) and the boundary F-score
  (DAVIS protocol: boundaries matched within 0.8% of the image diagonal);
- matting (alpha in [0, 1]): SAD and gradient and connectivity errors in thousands (as the matting
  benchmarks print them), MSE; holes and ghosts (the share of the reference's deep interior that is not
  opaque, and of its deep exterior that is not clear: defects a band-limited figure never sees);
- depth: δ1, AbsRel, RMSE after least-squares scale-and-shift alignment, in inverse depth for
  relative models (the MiDaS protocol) or in depth.
Not for: int8-vs-float parity (parity/agreement.py compares two models, not a model with the truth).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

from ..depth.align import align_scale_shift

VOID = 255
BOUNDARY_TOLERANCE = 0.008  # fraction of the image diagonal (DAVIS default)
HIGHER_IS_BETTER = {
    "miou": True,
    "pixel_accuracy": True,
    "boundary_f": True,
    "delta1": True,
    "abs_rel": False,
    "rmse": False,
    "sad_k": False,
    "mse": False,
    "grad_k": False,
    "conn_k": False,
    "holes": False,
    "ghosts": False,
}
DEEP_PX = 20  # holes / ghosts look only this many pixels or more from the reference outline
INSIDE_REF = 0.98  # reference alpha at or above this is inside the subject ...
OUTSIDE_REF = 0.02  # ... at or below this outside it
HOLE_BELOW = 0.9  # inside: our alpha below this is a hole
GHOST_ABOVE = 0.1  # outside: our alpha above this is a ghost (a patch of old background kept)


# ----------------------------------------------------------------------------------- segmentation


def confusion(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """num_classes x num_classes counts, rows = truth, columns = prediction; void (255) not counted."""
    t, p = np.asarray(truth).ravel(), np.asarray(pred).ravel()
    keep = t != VOID
    idx = t[keep].astype(np.int64) * num_classes + p[keep].astype(np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def class_iou(conf: np.ndarray) -> np.ndarray:
    """IoU per class from a confusion matrix; NaN for classes in neither truth nor prediction."""
    conf = np.asarray(conf, np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def miou(conf: np.ndarray) -> float:
    """Mean IoU over the classes present in truth or prediction (the PASCAL VOC definition)."""
    iou = class_iou(conf)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def pixel_accuracy(conf: np.ndarray) -> float:
    total = np.asarray(conf).sum()
    return float(np.trace(conf) / total) if total else float("nan")


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary of a boolean mask: pixels whose right or lower neighbour differs."""
    m = np.asarray(mask, bool)
    b = np.zeros_like(m)
    b[:, :-1] |= m[:, :-1] != m[:, 1:]
    b[:-1, :] |= m[:-1, :] != m[1:, :]
    return b


def boundary_f(
    truth_mask: np.ndarray,
    pred_mask: np.ndarray,
    *,
    tolerance: float = BOUNDARY_TOLERANCE,
    valid: np.ndarray | None = None,
) -> float:
    """Boundary F-score of two boolean masks: precision and recall of boundary pixels matched within
    ceil(tolerance * diagonal) pixels. 1.0 when neither has a boundary, 0.0 when only one has."""
    h, w = np.shape(truth_mask)
    r = max(1, int(math.ceil(tolerance * math.hypot(h, w))))
    bt, bp = boundary_map(truth_mask), boundary_map(pred_mask)
    if valid is not None:
        bt, bp = bt & valid, bp & valid
    nt, np_ = int(bt.sum()), int(bp.sum())
    if nt == 0 and np_ == 0:
        return 1.0
    if nt == 0 or np_ == 0:
        return 0.0
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    near_t = cv2.dilate(bt.astype(np.uint8), disk).astype(bool)
    near_p = cv2.dilate(bp.astype(np.uint8), disk).astype(bool)
    precision = float((bp & near_t).sum()) / np_
    recall = float((bt & near_p).sum()) / nt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def segmentation_image(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> dict:
    """Per-image figures: sparse confusion [[truth, pred, count], ...] and the boundary F-score,
    averaged over the non-background classes in truth or prediction (NaN if there are none)."""
    conf = confusion(truth, pred, num_classes)
    nz = np.argwhere(conf)
    valid = truth != VOID
    classes = sorted((set(np.unique(truth[valid]).tolist()) | set(np.unique(pred[valid]).tolist())) - {0})
    fs = [boundary_f(truth == c, pred == c, valid=valid) for c in classes]
    return {
        "confusion": [[int(i), int(j), int(conf[i, j])] for i, j in nz],
        "boundary_f": float(np.mean(fs)) if fs else float("nan"),
    }


def dense_confusion(sparse: list, num_classes: int) -> np.ndarray:
    c = np.zeros((num_classes, num_classes), np.int64)
    for i, j, n in sparse:
        c[i, j] += n
    return c


# ----------------------------------------------------------------------------------- matting


def sad_k(truth: np.ndarray, pred: np.ndarray) -> float:
    """Sum of absolute alpha differences, in thousands."""
    return float(np.abs(np.asarray(pred, np.float64) - np.asarray(truth, np.float64)).sum() / 1000.0)


def mse(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean((np.asarray(pred, np.float64) - np.asarray(truth, np.float64)) ** 2))


def _grad_mag(a: np.ndarray, sigma: float) -> np.ndarray:
    gx = gaussian_filter(a, sigma, order=(0, 1), mode="nearest")
    gy = gaussian_filter(a, sigma, order=(1, 0), mode="nearest")
    return np.hypot(gx, gy)


def gradient_error_k(truth: np.ndarray, pred: np.ndarray, sigma: float = 1.4) -> float:
    """Rhemann et al.: sum of squared differences of the alpha gradient magnitudes (Gaussian first
    derivative, sigma 1.4 px), in thousands."""
    t, p = np.asarray(truth, np.float64), np.asarray(pred, np.float64)
    return float(((_grad_mag(p, sigma) - _grad_mag(t, sigma)) ** 2).sum() / 1000.0)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    n, labels, st, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
    if n <= 1:
        return np.zeros_like(mask, bool)
    return labels == 1 + int(np.argmax(st[1:, cv2.CC_STAT_AREA]))


def connectivity_error_k(truth: np.ndarray, pred: np.ndarray, step: float = 0.1) -> float:
    """Rhemann et al.'s connectivity error, in thousands: for each pixel the alpha level at which it
    leaves the largest 4-connected component both mattes share; differences of the degrees of
    connectivity (ignoring differences under 0.15) are summed."""
    t, p = np.asarray(truth, np.float64), np.asarray(pred, np.float64)
    levels = np.arange(0.0, 1.0 + step, step)
    level_map = np.full(t.shape, -1.0)
    for i in range(1, len(levels)):
        omega = _largest_component((t >= levels[i]) & (p >= levels[i]))
        flag = (level_map == -1) & ~omega
        level_map[flag] = levels[i - 1]
    level_map[level_map == -1] = 1.0
    td, pd = t - level_map, p - level_map
    t_phi = 1.0 - td * (td >= 0.15)
    p_phi = 1.0 - pd * (pd >= 0.15)
    return float(np.abs(p_phi - t_phi).sum() / 1000.0)


def deep_region(mask: np.ndarray, px: float = DEEP_PX) -> np.ndarray:
    """Pixels of `mask` (bool HxW) more than `px` pixels (Euclidean) from every pixel outside it."""
    m = np.ascontiguousarray(mask, np.uint8)
    if not m.any():
        return np.zeros(m.shape, bool)
    if m.all():
        return np.ones(m.shape, bool)
    return cv2.distanceTransform(m, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) > px


def hole_pixels(truth: np.ndarray, pred: np.ndarray, px: float = DEEP_PX) -> tuple[np.ndarray, np.ndarray]:
    """(the deep interior, its pixels where pred < HOLE_BELOW), bool maps."""
    deep = deep_region(np.asarray(truth) >= INSIDE_REF, px)
    return deep, deep & (np.asarray(pred) < HOLE_BELOW)


def ghost_pixels(truth: np.ndarray, pred: np.ndarray, px: float = DEEP_PX) -> tuple[np.ndarray, np.ndarray]:
    """(the deep exterior, its pixels where pred > GHOST_ABOVE), bool maps."""
    deep = deep_region(np.asarray(truth) <= OUTSIDE_REF, px)
    return deep, deep & (np.asarray(pred) > GHOST_ABOVE)


def holes(truth: np.ndarray, pred: np.ndarray, px: float = DEEP_PX) -> float:
    """Share of the pixels more than `px` px inside the reference outline (truth >= INSIDE_REF) where
    pred < HOLE_BELOW: holes cut into the subject (0 when the reference has no such interior)."""
    deep, bad = hole_pixels(truth, pred, px)
    n = int(deep.sum())
    return float(bad.sum() / n) if n else 0.0


def ghosts(truth: np.ndarray, pred: np.ndarray, px: float = DEEP_PX) -> float:
    """Share of the pixels more than `px` px outside the reference outline (truth <= OUTSIDE_REF) where
    pred > GHOST_ABOVE: patches of the old background kept (0 when the reference has no such exterior)."""
    deep, bad = ghost_pixels(truth, pred, px)
    n = int(deep.sum())
    return float(bad.sum() / n) if n else 0.0


def matting_image(truth: np.ndarray, pred: np.ndarray) -> dict:
    return {
        "sad_k": sad_k(truth, pred),
        "mse": mse(truth, pred),
        "grad_k": gradient_error_k(truth, pred),
        "conn_k": connectivity_error_k(truth, pred),
        "holes": holes(truth, pred),
        "ghosts": ghosts(truth, pred),
    }


# ----------------------------------------------------------------------------------- depth


def depth_image(truth: np.ndarray, pred: np.ndarray, *, space: str = "inverse", pred_is_inverse: bool = False) -> dict:
    """δ1, AbsRel, RMSE (truth units) on pixels with positive finite truth, after least-squares
    scale s and shift t. space "inverse": s * disparity + t fitted to 1 / truth (a depth-like
    prediction is inverted first), then back to depth; space "depth": s * pred + t fitted to truth.
    The aligned depth is clamped to the truth's range on the image (as MiDaS clamps to the
    dataset's maximum depth), so a near-zero disparity cannot blow RMSE up."""
    t = np.asarray(truth, np.float64)
    p = np.asarray(pred, np.float64)
    valid = np.isfinite(t) & (t > 0) & np.isfinite(p)
    if space == "inverse" and not pred_is_inverse:
        valid &= p > 0
    if valid.sum() < 2:
        return {"delta1": float("nan"), "abs_rel": float("nan"), "rmse": float("nan"), "valid_px": int(valid.sum())}
    tv, pv = t[valid], p[valid]
    lo, hi = float(tv.min()), float(tv.max())
    if space == "inverse":
        x = pv if pred_is_inverse else 1.0 / pv
        disp = align_scale_shift(x, 1.0 / tv)
        d = np.where(disp > 0, 1.0 / np.where(disp > 0, disp, 1.0), hi)
    elif space == "depth":
        x = 1.0 / np.maximum(pv, 1e-12) if pred_is_inverse else pv
        d = align_scale_shift(x, tv)
    else:
        raise ValueError(f"alignment space {space!r}: use 'inverse' or 'depth'")
    d = np.clip(d, lo, hi)
    ratio = np.maximum(d / tv, tv / d)
    return {
        "delta1": float(np.mean(ratio < 1.25)),
        "abs_rel": float(np.mean(np.abs(d - tv) / tv)),
        "rmse": float(np.sqrt(np.mean((d - tv) ** 2))),
        "valid_px": int(valid.sum()),
    }


# ----------------------------------------------------------------------------------- bootstrap


def bootstrap_weights(n: int, resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """resamples x n counts: how often each image is drawn in each resample (paired across models)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    return np.stack([np.bincount(d, minlength=n) for d in draws]).astype(np.float64)


def weighted_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean of per-image values under each resample's weights, NaN values left out."""
    v = np.asarray(values, np.float64)
    ok = np.isfinite(v)
    num = weights @ np.where(ok, v, 0.0)
    den = weights @ ok.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def weighted_miou(confusions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """mIoU of each resample: per-image confusion matrices (n x C x C) summed under the weights."""
    n, c, _ = confusions.shape
    sums = weights @ confusions.reshape(n, c * c).astype(np.float64)
    return np.array([miou(s.reshape(c, c)) for s in sums])


def interval(samples: np.ndarray, level: float = 0.95) -> list[float]:
    s = np.asarray(samples, np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return [float("nan"), float("nan")]
    a = (1 - level) / 2
    return [float(np.quantile(s, a)), float(np.quantile(s, 1 - a))]
