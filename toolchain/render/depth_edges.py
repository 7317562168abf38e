"""Depth on the stage's working grid, read for the alpha: where it says "far behind the subject" and
where it says "at the subject's distance", each only where depth is confident and away from its own
edges.

Depth maps are coarse (a 576x768 iPhone disparity under a 12 MP photo, a 640 px monocular map, a
240x180 ToF sensor) and their edges are soft: near an outline they bleed onto the other side. So
depth here decides *regions* only. Both verdicts are eroded by the depth's own edge width
(`margin_px`: a few depth pixels in working pixels, wider for monocular depth), and the trimap
(trimap.py) keeps a colour-solved band between any depth-made region and the mask's outline: the
fine edge, hair and whiskers stay with colour.

Each source has a weight (plan.DEPTH_SOURCES): it scales the confidence map where the format has one (GDepth
confidence, DEPTH16's confidence bits, the ToF model's) and stands for it where it has none. Rules
that overrule the mask need more confidence than rules that only settle a hesitant mask
(DepthCue.far_sure vs DepthCue.far), so monocular depth (weight 0.5) may settle hesitant pixels but
never cuts into a confident mask.

The subject's depth range comes from the depth under the confident mask (SUBJECT_PERCENTILES), not
from the focus distance: the focus may be set anywhere.

`depth_regions` is written for any numeric depth: golden.py passes float metres (NaN = hole),
device.py uint16 millimetres (0 = hole) with integer confidence thresholds; the ratios are rational
(num, den), so the device's comparisons are exact integer ones.
Not here: the trimap rules (trimap.py), the band solve (matting.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from .plan import DEPTH_SOURCES as SOURCES
from .plan import depth_sample_index

FAR_RATIO = (5, 4)  # depth > 1.25 x the subject's far depth: far behind the subject
NEAR_RATIO = (11, 10)  # depth within [near / 1.1, far * 1.1]: at the subject's distance
SUBJECT_PERCENTILES = (10, 90)  # the subject's near and far depth, over the confident mask ...
SPAN_RATIO = (3, 2)  # ... where depth is within 1.5 x the median of it
MIN_SUBJECT_PX = 64  # fewer confident subject pixels with depth than this: depth is not read
SETTLE_CONF = 0.5  # confidence from which depth settles a hesitant mask (either way)
CUT_CONF = 0.75  # confidence from which a far depth overrules a mask that says subject
RECEDE_RATIO = (1, 2)  # depth growing upwards by more than half of itself per frame height: a surface
RECEDE_STEP_DIV = 160  # seen from above (a table, a floor); measured over +-(height / this) rows, >= 2
AT_SUBJECT_MAX = 0.4  # agreement with the confident mask: at most this share of its background at the
FAR_MAX = 0.3  # subject's depth, at most this share of its subject far behind


@dataclass
class DepthCue:
    """What depth says on the working grid (bool HxW each), eroded by its edge width."""

    far: np.ndarray  # far behind the subject, confidence >= SETTLE_CONF
    far_sure: np.ndarray  # the same, confidence >= CUT_CONF (may overrule the mask)
    at_subject: np.ndarray  # at the subject's depth, confidence >= SETTLE_CONF
    margin_px: int  # the erosion used (working px)
    near: float  # the subject's near and far depth (the depth's own unit)
    far_depth: float
    z: np.ndarray  # the depth these verdicts came from, and where it is valid: `recedes` derives from them
    valid: np.ndarray

    @cached_property
    def recedes(self) -> np.ndarray | None:
        """Where depth grows upwards like a table or a floor seen from above (receding; not eroded),
        computed when rule 4 first asks (~20 ms on the working grid); None switches the test off."""
        return receding(self.z, self.valid)


def margin_px(plan, depth_hw: tuple[int, int], source: str = "sensor") -> int:
    """The depth's soft edge width in working pixels: SOURCES[source]["edge_px"] depth pixels."""
    per = max(plan.work_h / max(depth_hw[0], 1), plan.work_w / max(depth_hw[1], 1))
    return max(1, int(math.ceil(SOURCES[source]["edge_px"] * per)))


def source_weight(source: str) -> float:
    return float(SOURCES[source]["weight"])


def _box_sum(x: np.ndarray, r: int) -> np.ndarray:
    """Sum over the (2r+1)^2 box around each pixel (the frame's outside counts 0), exact for integers
    (int64 prefix sums) and float64 otherwise."""
    a = np.pad(x, r + 1)[: x.shape[0] + 2 * r + 1, : x.shape[1] + 2 * r + 1]
    c = a.cumsum(0).cumsum(1)
    n = 2 * r + 1
    return c[n:, n:] - c[:-n, n:] - c[n:, :-n] + c[:-n, :-n]


def receding(z: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Pixels where depth grows upwards by more than RECEDE_RATIO of itself per frame height (bool): a
    surface seen from above, like the table under a vase, recedes; the front of a subject does not.
    Means over (2k+1)^2 boxes of valid depth, k rows above and below; the comparison is done on integer
    sums (exact for integer depth), cross-multiplied, so no division. On the working grid (<= 1024 px,
    k <= 6) and uint16 millimetres the products stay below 1e15, far inside int64."""
    h = z.shape[0]
    k = max(2, h // RECEDE_STEP_DIV)
    out = np.zeros(z.shape, bool)
    if h <= 2 * k:
        return out
    integer = np.issubdtype(z.dtype, np.integer)
    zz = np.where(valid, z, 0).astype(np.int64 if integer else np.float64)
    s = _box_sum(zz, k)
    c = _box_sum(valid.astype(np.int64), k)
    su, cu = s[: -2 * k], c[: -2 * k]  # k rows above the centre
    sd, cd = s[2 * k :], c[2 * k :]  # k rows below
    sc, cc = s[k:-k], c[k:-k]
    num, den = RECEDE_RATIO
    # mean_up - mean_down > (num / den) * (2k / h) * mean_centre, times cu * cd * cc * den * h
    lhs = (su * cd - sd * cu) * cc * den * h
    rhs = num * 2 * k * sc * cu * cd
    ok = (cu > 0) & (cd > 0) & (cc > 0)
    out[k:-k] = ok & (lhs > rhs)
    return out & valid


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    if r <= 0:
        return mask
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    # outside the frame counts as inside the region: a region that runs off the frame keeps its edge there
    return cv2.erode(mask.astype(np.uint8), k, borderType=cv2.BORDER_CONSTANT, borderValue=1).astype(bool)


def depth_regions(
    z: np.ndarray,
    valid: np.ndarray,
    settle: np.ndarray,
    cut: np.ndarray,
    subject: np.ndarray,
    margin: int,
    background: np.ndarray | None = None,
) -> DepthCue | None:
    """far / far_sure / at_subject from depth `z` (any unit; compared as ratios), `valid` (finite,
    positive), `settle` / `cut` (confidence at or above SETTLE_CONF / CUT_CONF), `subject` and
    `background` (the confident mask on either side). None when the subject has too few pixels with
    depth to know its distance.
    Depth must agree with the mask where the mask is confident before it decides where the mask
    hesitates: if more than AT_SUBJECT_MAX of the confident background is at the subject's depth, depth
    says nothing about subject (at_subject is empty); if more than FAR_MAX of the confident subject is far,
    nothing about background (far is empty). A monocular map that cannot tell a cat from its wall, or
    depth registered to another frame, stays out of the alpha."""
    sel = subject & valid & settle
    if int(sel.sum()) < MIN_SUBJECT_PX:
        return None
    zs = z[sel]
    # the mask may hold background (the wall between the legs): depth beyond SPAN_RATIO x the median
    # is not the subject's, so it does not stretch the subject's range
    med = np.percentile(zs, 50, method="nearest")
    sn, sd = SPAN_RATIO
    zs = zs[zs * sd <= med * sn]
    near, far_d = np.percentile(zs, SUBJECT_PERCENTILES, method="nearest")
    fn, fd = FAR_RATIO
    nn, nd = NEAR_RATIO
    zz = np.where(valid, z, 0)
    far = valid & (zz * fd > far_d * fn)
    at = valid & (zz * nn >= near * nd) & (zz * nd <= far_d * nn)
    far &= settle
    at &= settle
    if (far & sel).sum() > FAR_MAX * sel.sum():
        far = np.zeros_like(far)
    if background is not None:
        bg = background & settle
        if bg.any() and (at & bg).sum() > AT_SUBJECT_MAX * bg.sum():
            at = np.zeros_like(at)
    if not far.any() and not at.any():
        return None
    return DepthCue(
        far=_erode(far, margin),
        far_sure=_erode(far & cut, margin),
        at_subject=_erode(at, margin),
        margin_px=margin,
        near=float(near),
        far_depth=float(far_d),
        z=z,
        valid=valid,
    )


def sample(depth: np.ndarray, plan) -> np.ndarray:
    """Nearest depth pixel for each working pixel (plan.depth_sample_index): never interpolated."""
    rows, cols = depth_sample_index(plan, depth.shape[:2])
    return depth[rows[:, None], cols[None, :]]


def golden_cue(frame, plan, subject: np.ndarray, background: np.ndarray | None = None) -> DepthCue | None:
    """DepthCue from the frame's float depth (metres or pseudo-depth) and confidence."""
    if frame.depth_m is None or frame.confidence is None:
        return None
    z = sample(frame.depth_m, plan)
    conf = sample(frame.confidence, plan).astype(np.float32) * np.float32(source_weight(frame.depth_source))
    valid = np.isfinite(z) & (z > 0)
    m = margin_px(plan, frame.depth_m.shape, frame.depth_source)
    return depth_regions(z, valid, valid & (conf >= SETTLE_CONF), valid & (conf >= CUT_CONF), subject, m, background)


def device_cue(
    depth_mm: np.ndarray,
    conf8: np.ndarray,
    source: str,
    plan,
    subject: np.ndarray,
    background: np.ndarray | None = None,
) -> DepthCue | None:
    """DepthCue from uint16 millimetres (0 = hole) and uint8 confidence, in integers: the source's
    weight is folded into the thresholds (conf8 >= ceil(255 * threshold / weight))."""
    z = sample(depth_mm, plan).astype(np.int64)
    c8 = sample(conf8, plan).astype(np.int32)
    w = source_weight(source)
    valid = z > 0
    settle = valid & (c8 >= math.ceil(255 * SETTLE_CONF / w - 1e-9))
    cut = valid & (c8 >= math.ceil(255 * CUT_CONF / w - 1e-9)) if CUT_CONF <= w else np.zeros_like(valid)
    return depth_regions(z, valid, settle, cut, subject, margin_px(plan, depth_mm.shape, source), background)
