"""The trimap: sure subject / sure background / unknown (solved from colour) / KEEP, on the working grid,
from the model's P(subject) and, when there is depth, from what depth says (depth_edges.DepthCue).

Each rule is one function on boolean maps, so golden.py (float P) and device.py (P in Q8) apply the
same rules to the maps their own thresholds give; morphology on binary maps is exact in both.

Rules, in the order make_trimap applies them:
1. mask_regions: confident mask pixels (P >= P_SURE or <= 1 - P_SURE) a band or more from the 0.5
   outline are sure; the model's hesitation widens the unknown band up to UNCERTAIN_REACH bands.
2. opaque_interior: hesitant pixels that the mask calls subject and that lie beyond UNCERTAIN_REACH
   bands inside the outline are sure subject (alpha 1): matting cannot settle a wide hesitant region,
   and a translucent arm or cap is a worse failure than a slightly wrong opaque one. On the background
   side such pixels stay KEEP (held near the guided stage's soft value).
3. depth_background: depth far behind the subject makes pixels sure background, more than
   DEPTH_CLEAR_BANDS bands from the outline (nearer, hair over the background has the background's
   depth). Where the mask says background or hesitates this needs depth's settle confidence; where
   the mask says subject (the wall between the legs) it needs the cut confidence.
4. depth_subject: depth at the subject's distance makes pixels sure subject where the mask is not
   confidently background (P > 1 - P_SURE), a band or more from the outline: the hesitant mask on a
   cap, a hand or a vase's lip is decided by depth. Where the mask leans to background, never a
   surface whose depth recedes upwards (DepthCue.recedes: the table a vase stands on). A region at the
   subject's depth that the mask calls confidently background but that those pixels ring on every side
   (enclosed_by: a dark blemish on the lip) is subject too.
5. reopen: a band of unknown pixels around every depth-made background region, so that colour, not
   depth's coarse edge, places the outline there.
6. bridged: with depth, pixels at the subject's distance in a narrow gap (about two bands) of the sure
   subject are sure subject: the mask's outline band where it runs across the subject.
After the solve, enclosed_holes (no depth needed): a region below HOLE_ALPHA that the subject
encloses, that the mask calls subject and that nothing settled as background is filled (alpha 1): a
hesitant mask never cuts a hole into a region surrounded by subject. Then far_from_clear: a pixel the
mask calls subject that the solve left partly translucent (alpha >= CLEAR_ALPHA_MIN) is ramped to
opaque with its distance from the clear background (solved alpha < 0.1 or settled background), from
CLEAR_RAMP_BANDS[0] to [1] bands: background can only show through near where it is seen (dark hair
on a dark wall, a patterned shirt: the colour solve's translucent patches inside the subject). Regions
that run off the frame, and KEEP pixels, are left as they were, as in rule 2.
Not here: depth on the working grid (depth_edges.py), the solve (matting.py).
"""

from __future__ import annotations

import cv2
import numpy as np

from .depth_edges import DepthCue

P_SURE = 0.95  # P(subject) above this (or below 1 - this) is not uncertain by itself
UNCERTAIN_REACH = 3  # uncertain mask values are unknown only within this many bands of the outline
DEPTH_CLEAR_BANDS = 3  # depth may make background only this many bands or more from the outline (2 cut hair)
LEAN_REACH_BANDS = 6  # depth may make subject of a mask leaning to background only this near the subject
UNKNOWN = 0.5  # trimap codes: 0 sure background, 1 sure subject, UNKNOWN solved, and
KEEP = -1.0  # KEEP: hesitant far from the outline: pulled towards the guided stage's alpha
HOLE_LEVELS = (0.5, 0.7, 0.9)  # enclosed_holes: a hole is a region below one of these alpha levels ...
HOLE_SUBJECT = 0.5  # ... where the mask's mean P(subject) is at least this, ...
HOLE_ALPHA = 0.9  # ... with its rim below this ...
HOLE_RIM_PX = 2  # ... within this many working px; its enclosing ring must be mostly at least
HOLE_RIM_OPAQUE = 0.8  # ... this opaque, and it must lie
HOLE_WALL_PX = 4  # ... this many working px or more from the clear outside
BRIDGE_EXTRA_PX = 2  # rule 6 closes gaps in the sure subject up to a disc of a band plus this (working px)
CLEAR_ALPHA_MIN = 0.5  # far_from_clear: solved alpha from this up, where the mask says subject, ...
CLEAR_BELOW = 0.1  # ... at a distance from the clear background (alpha below this, or settled) ...
CLEAR_RAMP_BANDS = (1.0, 2.0)  # ... of more than [0] bands is ramped to 1, reaching 1 at [1] bands


def disc(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def near(mask: np.ndarray, r: int) -> np.ndarray:
    """Pixels within r px (a disc) of `mask`."""
    return cv2.dilate(mask.astype(np.uint8), disc(r)).astype(bool) if r > 0 else mask.astype(bool)


def mask_regions(subject: np.ndarray, sure_subject: np.ndarray, sure_background: np.ndarray, band_px: int):
    """Rule 1. subject: P >= 0.5; sure_subject / sure_background: P >= P_SURE / P <= 1 - P_SURE (bool
    maps). Returns (sure_fg, sure_bg, keep, outline)."""
    k = disc(band_px)
    sure_fg = cv2.erode(sure_subject.astype(np.uint8), k).astype(bool) & subject
    sure_bg = cv2.erode(sure_background.astype(np.uint8), k).astype(bool) & ~subject
    # the model's uncertainty widens the band, but only up to UNCERTAIN_REACH bands from its outline:
    # a wide hesitant region (dark shirt on a dark room) is not something matting can settle
    outline = cv2.morphologyEx(subject.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(bool)
    far_from_outline = ~near(outline, UNCERTAIN_REACH * band_px)
    confident = sure_subject | sure_background
    sure_fg |= subject & far_from_outline & confident
    sure_bg |= ~subject & far_from_outline & confident
    keep = far_from_outline & ~confident
    return sure_fg, sure_bg, keep, outline


def off_the_border(mask: np.ndarray) -> np.ndarray:
    """The 8-connected regions of `mask` (bool) that do not reach the frame's border."""
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return _off_border_ids(labels, n)[labels]


def _off_border_ids(labels: np.ndarray, n: int) -> np.ndarray:
    """ok[label] for connectedComponents' labels: False for the background (0) and every region that
    reaches the frame's border."""
    ok = np.ones(n, bool)
    ok[0] = False
    ok[np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))] = False
    return ok


def opaque_interior(subject: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Rule 2: the hesitant pixels far inside the outline (KEEP on the subject side) that become sure
    subject: regions of them that the subject encloses (they do not reach the frame's border; one that
    does, like a dark shoulder running off the frame on a dark wall, stays KEEP)."""
    cand = keep & subject
    return off_the_border(cand) if cand.any() else cand


def depth_background(cue: DepthCue, subject: np.ndarray, outline: np.ndarray, band_px: int) -> np.ndarray:
    """Rule 3: pixels depth makes sure background. Where the mask says subject, only far regions that
    hold a disc of a band's radius (a morphological opening): a gap between the legs is that wide, a
    speck of bad depth on dark trousers is not."""
    cut = cue.far_sure & subject
    if cut.any():
        cut = cv2.morphologyEx(cut.astype(np.uint8), cv2.MORPH_OPEN, disc(band_px)).astype(bool)
    far = np.where(subject, cut, cue.far)
    return far & ~near(outline, DEPTH_CLEAR_BANDS * band_px)


def depth_subject(
    cue: DepthCue, subject: np.ndarray, sure_background: np.ndarray, outline: np.ndarray, band_px: int
) -> np.ndarray:
    """Rule 4: pixels depth makes sure subject: at the subject's depth, a band or more from the outline,
    and not confidently background by the mask (a hesitant mask is decided by depth). Where the mask
    leans to background (P < 0.5), only regions joined to the mask's subject and within LEAN_REACH_BANDS
    bands of it count, and never a surface that recedes like a table seen from above
    (DepthCue.recedes): a table or a sofa at the subject's distance stays the mask's."""
    reach = cue.at_subject & ~sure_background
    at = reach & ~near(outline, band_px)
    if (at & ~subject).any():
        if cue.recedes is not None:
            # the surface a vase stands on is at the vase's distance where they touch; the vase's foot,
            # upright, does not recede
            reach &= ~cue.recedes
        at &= subject | (joined_to(reach, subject) & near(subject, LEAN_REACH_BANDS * band_px))
    return at | enclosed_by(cue.at_subject & ~at, at)


def enclosed_by(region: np.ndarray, wall: np.ndarray) -> np.ndarray:
    """The 8-connected regions of `region` that do not reach the frame's border and whose every
    neighbour (3x3) outside them is in `wall`: a dark blemish on a vase's lip that the mask calls
    confidently background, at the lip's depth and ringed by the pixels depth made subject, is a speck,
    not a hole through the vase."""
    if not region.any() or not wall.any():
        return np.zeros(region.shape, bool)
    n, labels = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
    grown = cv2.dilate(labels.astype(np.float32), np.ones((3, 3), np.uint8)).astype(np.int64)
    ring = (grown > 0) & (labels == 0)
    ok = _off_border_ids(labels, n) & (np.bincount(grown[ring & ~wall], minlength=n) == 0)
    return ok[labels]


def joined_to(region: np.ndarray, subject: np.ndarray) -> np.ndarray:
    """The pixels of `region` in an 8-connected region of region | subject that holds subject."""
    n, labels = cv2.connectedComponents((region | subject).astype(np.uint8), connectivity=8)
    joined = np.zeros(n, bool)
    joined[np.unique(labels[subject])] = True
    joined[0] = False
    return joined[labels] & region


def reopen(depth_bg: np.ndarray, band_px: int) -> np.ndarray:
    """Rule 5: the unknown band around depth-made background."""
    return near(depth_bg, band_px) & ~depth_bg


def make_trimap_maps(subject, sure_subject, sure_background, band_px: int, cue: DepthCue | None = None):
    """Rules 1-6 on boolean maps -> (sure_fg, sure_bg, keep), disjoint; the rest is unknown."""
    sure_fg, sure_bg, keep, outline = mask_regions(subject, sure_subject, sure_background, band_px)
    interior = opaque_interior(subject, keep)
    sure_fg |= interior
    keep &= ~interior
    if cue is not None:
        dbg = depth_background(cue, subject, outline, band_px)
        dfg = depth_subject(cue, subject, sure_background, outline, band_px) & ~near(dbg, band_px)
        sure_fg = (sure_fg | dfg) & ~dbg & ~reopen(dbg, band_px)
        sure_bg = (sure_bg | dbg) & ~sure_fg
        keep &= ~sure_bg & ~sure_fg
        sure_fg |= bridged(sure_fg, cue.at_subject & ~sure_bg, band_px)
    sure_bg &= ~sure_fg
    keep &= ~sure_fg & ~sure_bg
    return sure_fg, sure_bg, keep


def bridged(sure_fg: np.ndarray, at_subject: np.ndarray, band_px: int) -> np.ndarray:
    """Rule 6: pixels at the subject's depth in a gap of the sure subject no wider than about two bands
    (a morphological closing with a disc of BRIDGE_EXTRA_PX more than a band): the mask's own outline
    band where it crosses the subject, between the mask's subject and what depth added beside it (the
    foot of a vase below a mask that stops at its body). Rules 1 and 4 keep a band either side of that
    outline for colour; the golden solve fills it from colour, the device path, which has no band solve,
    would leave it translucent."""
    closed = cv2.morphologyEx(sure_fg.astype(np.uint8), cv2.MORPH_CLOSE, disc(band_px + BRIDGE_EXTRA_PX))
    return closed.astype(bool) & at_subject & ~sure_fg


def deep_inside(subject: np.ndarray, band_px: int) -> np.ndarray:
    """Pixels a band or more inside the outline of `subject` (bool)."""
    return cv2.erode(subject.astype(np.uint8), disc(band_px)).astype(bool)


def make_trimap(p: np.ndarray, band_px: int, cue: DepthCue | None = None) -> np.ndarray:
    """Trimap (float32: 0 / UNKNOWN / KEEP / 1) from P(subject) (float32 HxW in [0, 1]) on the working
    grid. band_px: unknown half-width around the 0.5 outline (working px). cue: what depth says."""
    sure_fg, sure_bg, keep = make_trimap_maps(p >= 0.5, p >= P_SURE, p <= 1 - P_SURE, band_px, cue)
    tri = np.full(p.shape, UNKNOWN, np.float32)
    tri[keep] = KEEP
    tri[sure_fg] = 1.0
    tri[sure_bg] = 0.0
    return tri


def enclosed_holes(
    alpha: np.ndarray,
    settled_background: np.ndarray,
    subject_share: np.ndarray,
    one: int | float = 1,
    deep: np.ndarray | None = None,
) -> np.ndarray:
    """The pixels to fill: for each level t in HOLE_LEVELS, regions of alpha < t (4-connected, so a
    diagonal gap between subject pixels does not enclose) that touch neither the frame's border nor a
    settled background pixel and where `subject_share` (P(subject), `one` = 1) averages HOLE_SUBJECT or
    more; plus their rim (HOLE_RIM_PX) below HOLE_ALPHA. Several levels, because a hole's rim is often
    itself a little translucent where it meets the outline (a logo near the top of a cap): enclosed at
    0.5, not at 0.9. alpha: float in [0, 1] with one = 1, or uint8 with one = 255. deep (bool, optional):
    pixels a band or more inside the mask's outline; a region must lie mostly there (gaps between hair
    strands in the band are the solve's to keep)."""
    holes = np.zeros(alpha.shape, bool)
    border = np.zeros(alpha.shape, bool)
    border[0], border[-1], border[:, 0], border[:, -1] = True, True, True, True
    outside = border | settled_background
    share_map = subject_share.ravel().astype(np.float64)
    # the clear outside: alpha below the lowest level, joined to the border or a settled background pixel;
    # a hole must be HOLE_WALL_PX or more from it (a gap between curls at the fringe is a strand away)
    n0, lab0 = cv2.connectedComponents((alpha < HOLE_LEVELS[0] * one).astype(np.uint8), connectivity=4)
    out_ids = np.zeros(n0, bool)
    out_ids[np.unique(lab0[outside])] = True
    out_ids[0] = False
    clear = out_ids[lab0]
    near_clear = near(clear, HOLE_WALL_PX) if clear.any() else clear
    for level in HOLE_LEVELS:
        below = alpha < level * one
        n, labels, stats, _ = cv2.connectedComponentsWithStats(below.astype(np.uint8), connectivity=4)
        if n <= 1:
            continue
        ok = np.ones(n, bool)
        ok[0] = False
        ok[np.unique(labels[outside])] = False
        ok[np.unique(labels[near_clear])] = False
        share = np.bincount(labels.ravel(), weights=share_map, minlength=n)
        ok &= share >= HOLE_SUBJECT * one * stats[:, cv2.CC_STAT_AREA]
        if deep is not None:
            ok &= 2 * np.bincount(labels.ravel(), weights=deep.ravel(), minlength=n) >= stats[:, cv2.CC_STAT_AREA]
        # the region's rim must be mostly opaque subject (a logo inside a cap), not more translucent
        # strands (a gap between curls at the hair's fringe, which is background seen through hair)
        # (a ring 2-3 px out: the region's own soft edge, 1 px out, is never opaque)
        ring_label = cv2.dilate(labels.astype(np.float32), np.ones((7, 7), np.uint8)).astype(np.int64)
        ring = ~below & (ring_label > 0) & ~cv2.dilate(below.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        rim_n = np.bincount(ring_label[ring], minlength=n)
        rim_opaque = np.bincount(ring_label[ring], weights=(alpha[ring] >= HOLE_RIM_OPAQUE * one), minlength=n)
        ok &= 2 * rim_opaque >= rim_n
        if ok[1:].any():
            holes |= ok[labels]
    if holes.any():
        holes |= near(holes, HOLE_RIM_PX) & (alpha < HOLE_ALPHA * one) & ~settled_background
    return holes


def far_from_clear(
    alpha: np.ndarray,
    settled_background: np.ndarray,
    subject: np.ndarray,
    keep: np.ndarray,
    band_px: int,
    one: int | float = 1,
) -> np.ndarray:
    """After the solve: the weight (0..1, float32) that takes each pixel's alpha towards 1, alpha +
    w (1 - alpha); nonzero only where `subject` (P >= 0.5) and alpha >= CLEAR_ALPHA_MIN, not `keep`,
    more than CLEAR_RAMP_BANDS[0] bands from the clear background (alpha < CLEAR_BELOW or
    `settled_background`), in a region of such pixels that does not reach the frame's border. alpha:
    float in [0, 1] with one = 1, or uint8 with one = 255 (the device path)."""
    clear = (alpha < CLEAR_BELOW * one) | settled_background
    dist = cv2.distanceTransform((~clear).astype(np.uint8), cv2.DIST_L2, 5)
    lo, hi = CLEAR_RAMP_BANDS[0] * band_px, CLEAR_RAMP_BANDS[1] * band_px
    cand = (dist > lo) & subject & ~keep & (alpha >= CLEAR_ALPHA_MIN * one) & (alpha < one)
    if not cand.any():
        return np.zeros(alpha.shape, np.float32)
    w = np.clip((dist - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)
    return np.where(off_the_border(cand), w, np.float32(0))
