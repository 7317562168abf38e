"""Depth in the alpha and an opaque interior (toolchain/render/trimap.py, depth_edges.py): each rule on
a synthetic scene where its effect is exact, then the whole stage on a 'gap between the legs' scene."""

import numpy as np
import pytest

from toolchain.render import depth_edges, device, trimap
from toolchain.render.api import render
from toolchain.render.plan import DEPTH_SOURCES, make_plan

BAND = 3


def _square(h=80, w=80, value=1.0):
    p = np.zeros((h, w), np.float32)
    p[20:60, 20:60] = value
    return p


def _cue(z, subject, conf=None, margin=1):
    valid = np.isfinite(z) & (z > 0)
    c = np.ones(z.shape, np.float32) if conf is None else conf
    return depth_edges.depth_regions(
        z, valid, valid & (c >= depth_edges.SETTLE_CONF), valid & (c >= depth_edges.CUT_CONF), subject, margin
    )


def test_opaque_interior_hesitant_subject_far_inside_is_sure():
    # a 60x60 subject, hesitant (P 0.7) in its middle, and a hesitant (P 0.3) patch far outside it
    p = np.zeros((120, 120), np.float32)
    p[10:70, 10:70] = 1.0
    p[30:50, 30:50] = 0.7  # 20 px from the outline: beyond UNCERTAIN_REACH * BAND = 9
    p[90:110, 90:110] = 0.3
    tri = trimap.make_trimap(p, BAND)
    assert (tri[30:50, 30:50] == 1).all()  # rule 2: sure subject (alpha 1)
    assert (tri[92:108, 92:108] == trimap.KEEP).all()  # the background side keeps its soft value
    near_edge = p.copy()
    near_edge[10:70, 62:70] = 0.7  # within reach of the outline: solved
    assert (trimap.make_trimap(near_edge, BAND)[40, 64:70] == trimap.UNKNOWN).all()
    # a hesitant region that runs off the frame (a dark shoulder on a dark wall) is not enclosed: KEEP
    off = np.zeros((120, 120), np.float32)
    off[10:120, 10:120] = 1.0
    off[60:120, 40:80] = 0.7
    assert (trimap.make_trimap(off, BAND)[100:120, 50:70] == trimap.KEEP).all()


def test_depth_regions_read_the_subjects_own_depth_range():
    z = np.full((60, 80), 4.0, np.float32)  # wall at 4 m
    z[10:50, 10:40] = 1.5  # subject at 1.5 m
    z[10:50, 40:44] = 1.8  # a little behind it (x 1.2 < 1.25): not far
    subject = np.zeros(z.shape, bool)
    subject[10:50, 10:40] = True
    cue = _cue(z, subject, margin=0)
    assert cue.near == cue.far_depth == pytest.approx(1.5)
    assert cue.far[0, 0] and not cue.far[30, 42] and not cue.far[30, 20]
    assert cue.at_subject[30, 20] and not cue.at_subject[30, 42]  # 1.8 > 1.5 x 1.1
    # holes (NaN) say nothing; too few subject pixels with depth: no cue at all
    z2 = z.copy()
    z2[:, 60:] = np.nan
    assert not _cue(z2, subject, margin=0).far[:, 60:].any()
    assert _cue(np.full_like(z, np.nan), subject) is None


def test_depth_margin_keeps_depths_soft_edge_out_of_the_verdict():
    z = np.full((60, 80), 4.0, np.float32)
    z[:, :40] = 1.5
    subject = np.zeros(z.shape, bool)
    subject[:, :40] = True
    cue = _cue(z, subject, margin=5)
    far_cols = np.nonzero(cue.far[30])[0]
    assert far_cols.min() == 45  # 5 px from depth's edge at x = 40
    assert np.nonzero(cue.at_subject[30])[0].max() == 34
    # the margin is the source's edge width in depth pixels, in working pixels: wider for monocular
    plan = make_plan(480, 640, (257, 257), 8.0)
    assert depth_edges.margin_px(plan, (120, 160), "sensor") == DEPTH_SOURCES["sensor"]["edge_px"] * 4
    assert depth_edges.margin_px(plan, (120, 160), "monocular") == DEPTH_SOURCES["monocular"]["edge_px"] * 4


def _legs(h=120, w=160):
    """Two legs (P 1) joined at the hips, the wall between them inside the mask's outline (P 1 there too:
    the model's mistake), depth 1.5 m on the legs and 4 m on the wall."""
    p = np.zeros((h, w), np.float32)
    p[10:110, 40:120] = 1.0
    z = np.full((h, w), 4.0, np.float32)
    z[10:110, 40:70] = z[10:110, 90:120] = z[10:40, 40:120] = 1.5
    gap = np.zeros((h, w), bool)
    gap[40:110, 70:90] = True
    return p, z, gap


def test_far_depth_cuts_the_gap_out_of_the_mask_with_sensor_depth_only():
    p, z, gap = _legs()
    assert (trimap.make_trimap(p, BAND)[gap] != 0).all()  # without depth the gap is subject
    cue = _cue(z, p >= trimap.P_SURE, margin=1)
    tri = trimap.make_trimap(p, BAND, cue)
    core = np.zeros_like(gap)
    core[45:100, 75:85] = True  # the gap's middle: sure background (rule 3)
    assert (tri[core] == 0).all()
    # rule 5: a band of unknown on either side of the gap's edges; the legs' middles stay sure subject
    assert (tri[60, 68:71] == trimap.UNKNOWN).all() and (tri[60, 89:92] == trimap.UNKNOWN).all()
    assert (tri[60, 52:58] == 1).all() and (tri[60, 102:108] == 1).all()
    # monocular confidence (weight 0.5) settles a hesitant mask but never overrules a confident one
    mono = _cue(z, p >= trimap.P_SURE, conf=np.full(z.shape, DEPTH_SOURCES["monocular"]["weight"], np.float32))
    assert (trimap.make_trimap(p, BAND, mono)[core] == 1).all()
    p_hes, z_w = p.copy(), z.copy()
    p_hes[40:110, 60:100] = 0.3  # the model hesitates on a wider gap: its own
    z_w[40:110, 60:100] = 4.0  # outline is DEPTH_CLEAR_BANDS bands off
    mono = _cue(z_w, p_hes >= trimap.P_SURE, conf=np.full(z.shape, 0.5, np.float32))
    assert (trimap.make_trimap(p_hes, BAND, mono)[52:97, 75:85] == 0).all()


def test_subject_depth_settles_a_hesitant_subject_within_reach_of_the_outline():
    p = _square(value=1.0)
    p[24:56, 24:30] = 0.7  # hesitant, 4-9 px inside the left outline (within reach: 9)
    tri = trimap.make_trimap(p, BAND)
    assert (tri[40, 24:30] == trimap.UNKNOWN).all()
    z = np.where(p > 0, 1.5, 4.0).astype(np.float32)
    tri_d = trimap.make_trimap(p, BAND, _cue(z, p >= trimap.P_SURE, margin=1))
    assert (tri_d[40, 24:30] == 1).all()  # rule 4, a band or more inside
    assert (tri_d[40, 20:24] == trimap.UNKNOWN).all()  # the outline's own band stays colour's
    # depth that says "far" there does not make it subject
    z_far = z.copy()
    z_far[24:56, 24:30] = 4.0
    assert (trimap.make_trimap(p, BAND, _cue(z_far, p >= trimap.P_SURE, margin=0))[40, 24:30] != 1).all()


def test_enclosed_holes_fill_only_what_the_subject_surrounds_and_the_mask_calls_subject():
    a = np.zeros((80, 100), np.float32)
    a[10:70, 10:90] = 1.0
    p = a.copy()
    a[30:40, 20:30] = 0.3  # a logo the solve made translucent: filled
    a[30:40, 50:60] = 0.0  # a real gap the mask saw (P 0): kept
    p[30:40, 50:60] = 0.0
    a[10:14, 70:80] = 0.7  # the rim at the outline, a little translucent ...
    a[14:25, 72:78] = 0.2  # ... and a hole that reaches it: enclosed at 0.5, not at 0.9
    settled = np.zeros(a.shape, bool)
    holes = trimap.enclosed_holes(a, settled, p)
    assert holes[30:40, 20:30].all() and not holes[30:40, 50:60].any()
    assert holes[14:25, 72:78].all()
    assert not holes[:10].any() and not holes[a == 1].any()
    # a region with a settled background pixel (depth said far) is not a hole; uint8 gives the same
    settled[35, 25] = True
    assert not trimap.enclosed_holes(a, settled, p)[30:40, 20:30].any()
    # `deep`: a region lying mostly within a band of the outline (a gap between hair strands) is kept
    deep = np.zeros(a.shape, bool)
    deep[20:60, 20:80] = True
    held = trimap.enclosed_holes(a, np.zeros_like(settled), p, deep=deep)
    assert held[30:40, 20:30].all() and not held[14:25, 72:78].any()
    # a gap whose rim is translucent strands (background seen through the hair's fringe) is kept
    fringe = a.copy()
    fringe[8:26, 34:48] = 0.6  # strands at the outline (they run into the background at row 8)
    fringe[14:20, 39:43] = 0.1
    assert not trimap.enclosed_holes(fringe, np.zeros_like(settled), p)[14:20, 39:43].any()
    # a gap a strand away from the clear outside (HOLE_WALL_PX) is kept even inside an opaque rim
    thin = a.copy()
    thin[12:16, 60:64] = 0.1  # 2 px below the outline at row 10
    assert not trimap.enclosed_holes(thin, np.zeros_like(settled), p)[12:16, 60:64].any()
    a8, p8 = np.round(a * 255).astype(np.uint8), np.round(p * 255).astype(np.uint8)
    assert (trimap.enclosed_holes(a8, np.zeros_like(settled), p8, one=255) == holes).all()


def _legs_scene(h=120, w=160):
    rng = np.random.default_rng(0)
    p, z, gap = _legs(h, w)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (128, 128, 128)
    subj = (z < 2) & (p > 0)
    img[subj] = (200, 60, 40)
    img = np.clip(img.astype(np.int16) + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)
    return img, p, z, gap, subj


@pytest.mark.parametrize("implementation", ["golden", "device"])
def test_stage_with_sensor_depth_clears_the_gap_and_keeps_the_legs_opaque(implementation):
    img, p, z, gap, subj = _legs_scene()
    spec = {"kind": "probabilities", "dtype": "float32"}
    without = render(img, p, spec, mode="chroma", implementation=implementation)
    with_d = render(img, p, spec, depth_m=z, mode="chroma", implementation=implementation)
    core = np.zeros_like(gap)
    core[50:90, 76:84] = True  # the gap's middle, 2 bands (band 6 px here) from the mask's outline
    assert (without.alpha[core] > 0.5).all()  # the mask's mistake stands without depth
    assert (with_d.alpha[core] == 0).all()  # depth cuts it out exactly
    inner = np.zeros_like(gap)
    inner[20:100, 48:62] = inner[20:100, 98:112] = True
    assert (with_d.alpha[inner] == 1).all()  # and the legs stay opaque
    # the trimap's depth rule works without a blur: chroma mode with no aperture
    zero = render(img, p, spec, depth_m=z, mode="chroma", max_blur_px=0, implementation=implementation)
    assert (zero.alpha[core] == 0).all()


def test_device_cue_matches_golden_on_integer_depth():
    p, z, _ = _legs()
    plan = make_plan(*p.shape, p.shape, 8.0)
    subject = p >= trimap.P_SURE
    from toolchain.render.plan import prepare_frame

    fr = prepare_frame(np.zeros(p.shape + (3,), np.uint8), p, {"kind": "probabilities"}, depth_m=z)
    g = depth_edges.golden_cue(fr, plan, subject)
    d = device.device_cue(fr, plan, np.round(p * 255).astype(np.uint8))
    for k in ("far", "far_sure", "at_subject", "recedes"):
        assert (getattr(g, k) == getattr(d, k)).all()


def test_depth_that_disagrees_with_the_confident_mask_stays_out():
    # a cat and its wall at one depth (a monocular map that cannot tell them apart): at_subject would
    # cover the whole confident background, so depth says nothing about subject
    p = _square()
    z = np.full(p.shape, 1.5, np.float32)
    cue = depth_edges.depth_regions(
        z,
        np.ones(p.shape, bool),
        np.ones(p.shape, bool),
        np.ones(p.shape, bool),
        p >= trimap.P_SURE,
        0,
        p <= 1 - trimap.P_SURE,
    )
    assert cue is None
    # depth registered to another frame: most of the confident subject is "far"; no far verdict at all
    z2 = np.where(p > 0, 1.5, 4.0).astype(np.float32)
    z2[20:60, 20:36] = 4.0  # 40 % of the subject
    cue2 = depth_edges.depth_regions(
        z2,
        np.ones(p.shape, bool),
        np.ones(p.shape, bool),
        np.ones(p.shape, bool),
        p >= trimap.P_SURE,
        0,
        p <= 1 - trimap.P_SURE,
    )
    assert cue2 is not None and not cue2.far.any() and cue2.at_subject[40, 50]
    # agreeing depth passes both checks
    z3 = np.where(p > 0, 1.5, 4.0).astype(np.float32)
    cue3 = depth_edges.depth_regions(
        z3,
        np.ones(p.shape, bool),
        np.ones(p.shape, bool),
        np.ones(p.shape, bool),
        p >= trimap.P_SURE,
        0,
        p <= 1 - trimap.P_SURE,
    )
    assert cue3.far[5, 5] and cue3.at_subject[40, 40]


def test_depths_data_term_settles_flat_colour():
    from toolchain.render import matting

    img = np.full((40, 60, 3), 120, np.uint8)  # flat: colour cannot tell anything
    tri = np.full((40, 60), trimap.UNKNOWN, np.float32)
    tri[:, :5], tri[:, -5:] = 1.0, 0.0
    p = np.full((40, 60), 0.7, np.float32)
    base = matting.solve_alpha(img, tri, p)
    target = np.zeros((40, 60), np.float32)
    pulled = matting.solve_alpha(img, tri, p, None, target, np.full((40, 60), 1e-2, np.float32))
    assert pulled[:, 20:40].mean() < base[:, 20:40].mean() - 0.2


def test_far_from_clear_ramps_translucent_interior_to_opaque_but_not_the_fringe():
    """A translucent patch deep inside the subject (dark hair on a dark wall) goes opaque, ramped with its
    distance from the clear background; translucent pixels near the clear background (the fringe), on
    KEEP, outside the mask's subject, or in a region that runs off the frame are left as they were."""
    h = w = 100
    alpha = np.zeros((h, w), np.float32)
    alpha[20:80, 20:80] = 1.0
    alpha[40:60, 40:60] = 0.7  # the colour solve's translucent patch, 20 px inside
    alpha[20:80, 20:23] = 0.6  # the soft fringe next to the clear background
    alpha[85:100, 40:60] = 0.7  # a hesitant region running off the frame (a dark shoulder)
    subject = alpha >= 0.5
    keep = np.zeros((h, w), bool)
    none_settled = np.zeros((h, w), bool)
    wgt = trimap.far_from_clear(alpha, none_settled, subject, keep, BAND)
    lo, hi = (b * BAND for b in trimap.CLEAR_RAMP_BANDS)
    assert wgt[50, 50] == 1.0  # 20 px from the clear background > hi
    assert (wgt[20:80, 20:23] == 0).all()  # the fringe is within lo of the clear outside
    assert (wgt[85:100, 40:60] == 0).all()  # runs off the frame
    assert (wgt[alpha == 1] == 0).all() and (wgt[~subject] == 0).all()
    ramp = wgt[40:60, 40:60]
    assert 0 <= ramp.min() <= ramp.max() <= 1
    a8 = np.round(alpha * 255).astype(np.uint8)  # the device path's uint8 alpha gives the same weights
    np.testing.assert_array_equal(trimap.far_from_clear(a8, none_settled, subject, keep, BAND, one=255), wgt)
    # the ramp: zero up to lo px from the clear background, one from hi px on
    a2 = np.zeros((h, w), np.float32)
    a2[:, 30:] = 0.7
    a2[0, :] = a2[-1, :] = a2[:, -1] = 0.0  # clear all round except the left, so no region reaches the border
    w2 = trimap.far_from_clear(a2, none_settled, a2 >= 0.5, keep, BAND)
    row = w2[50]
    assert row[29 + int(lo)] == 0 and 0 < row[30 + int(lo)] < 1 and row[29 + int(hi)] == 1.0  # distance from column 29
    keep[40:60, 40:60] = True
    assert (trimap.far_from_clear(alpha, none_settled, subject, keep, BAND)[40:60, 40:60] == 0).all()
    settled = np.zeros((h, w), bool)
    settled[45:55, 45:55] = True  # depth or the mask settled background there: it is clear background
    assert (trimap.far_from_clear(alpha, settled, subject, np.zeros_like(keep), BAND)[45:55, 45:55] == 0).all()


def _vase_on_table(h=160, w=120):
    """A vase (P 1, depth 1.0 m) standing on a table seen from above: the table's depth grows upwards
    from 0.8 m at the bottom row to 2.0 m at row 100, where a far wall (4 m) begins; the vase's foot
    (rows 96-104) and a strip of table beside it are hesitant (P 0.3), and both are at the vase's depth."""
    rows = np.arange(h, dtype=np.float32)[:, None]
    z = np.broadcast_to(np.where(rows < 100, 4.0, 2.0 - (rows - 100) * (1.2 / 60)), (h, w)).astype(np.float32).copy()
    p = np.zeros((h, w), np.float32)
    p[30:96, 40:80] = 1.0
    z[30:105, 40:80] = 1.0
    p[96:105, 40:80] = 0.3  # the foot
    p[105:125, 30:90] = 0.3  # the table in front of it
    # at the vase's distance where they touch (within NEAR_RATIO), still receding upwards
    z[105:125, 30:90] = 0.915 + (124 - rows[105:125]) * 0.0095
    return p, z


def test_receding_marks_a_table_seen_from_above_not_an_upright_front():
    p, z = _vase_on_table()
    valid = np.isfinite(z) & (z > 0)
    rec = depth_edges.receding(z, valid)
    assert rec[130:150, 10:110].mean() > 0.95  # the open table
    assert not rec[40:90, 45:75].any()  # the vase's front
    # integer millimetres give the same map as float metres
    z_mm = np.round(z * 1000).astype(np.uint16)
    assert (depth_edges.receding(z_mm, z_mm > 0) == rec).mean() > 0.99


def test_subject_depth_never_makes_subject_of_a_receding_support_surface():
    p, z = _vase_on_table()
    cue = _cue(z, p >= trimap.P_SURE, margin=0)
    assert cue.at_subject[110:120, 35:85].all()  # the table strip is at the vase's distance
    assert cue.recedes[110:125, 35:85].mean() > 0.5
    tri = trimap.make_trimap(p, BAND, cue)
    assert (tri[112:120, 35:85] != 1).all()  # the table stays the mask's
    assert (tri[100, 45:75] == 1).all()  # the upright foot is the vase's
    cue.recedes = None  # without the support-surface test the table would become subject
    assert (trimap.make_trimap(p, BAND, cue)[112:120, 35:85] == 1).any()


def test_subject_depth_closes_a_confident_background_speck_it_rings():
    # the mask finds the vase's body (P 1) but hesitates on its lip (P 0.3) and calls a dark blemish on
    # the lip confidently background (P 0); depth puts lip and blemish at the vase's distance
    p = np.zeros((100, 100), np.float32)
    p[40:90, 30:70] = 1.0
    p[20:40, 30:70] = 0.3
    p[28:32, 48:52] = 0.0  # the blemish, ringed by the lip
    p[36:40, 66:70] = 0.0  # a notch at the lip's edge, open to the outside
    z = np.full(p.shape, 5.0, np.float32)
    z[20:90, 30:70] = 1.0
    z[36:40, 66:70] = 5.0  # the wall seen through the notch
    cue = _cue(z, p >= trimap.P_SURE, margin=0)
    tri = trimap.make_trimap(p, BAND, cue)
    assert (tri[28:32, 48:52] == 1).all()  # a speck, not a hole through the lip
    assert (trimap.make_trimap(p, BAND)[28:32, 48:52] != 1).all()  # without depth it is the mask's
    blemish = np.zeros(p.shape, bool)
    blemish[28:32, 48:52] = True
    # the notch and the outside reach the frame's border through background: only the blemish is ringed
    assert (trimap.enclosed_by(p == 0, p > 0) == blemish).all()
    assert (tri[36:40, 66:70] != 1).all()


def test_depth_bridges_the_masks_outline_band_where_it_runs_across_the_subject():
    # the mask stops at a vase's body (P 1, rows 20-59) and leans to background on its foot (P 0.3,
    # rows 60-79); depth puts both at the vase's distance, the wall behind far; a notch of wall (far)
    # cuts into the body from the left
    p = np.zeros((100, 100), np.float32)
    p[20:60, 30:70] = 1.0
    p[60:80, 30:70] = 0.3
    p[35:45, 30:40] = 0.0  # the notch
    z = np.full(p.shape, 5.0, np.float32)
    z[20:80, 30:70] = 1.0
    z[35:45, 30:40] = 5.0
    cue = _cue(z, p >= trimap.P_SURE, margin=0)
    tri = trimap.make_trimap(p, BAND, cue)
    assert (tri[56:64, 40:60] == 1).all()  # the outline band between body and foot: bridged
    sure_fg, sure_bg, _ = trimap.make_trimap_maps(p >= 0.5, p >= trimap.P_SURE, p <= 1 - trimap.P_SURE, BAND, cue)
    assert sure_fg[56:64, 40:60].all()
    assert (tri[36:44, 30:38] != 1).all()  # the notch is far: never bridged
    assert (trimap.make_trimap(p, BAND)[56:64, 40:60] != 1).any()  # without depth: colour's band
    # the rule alone: a gap of two bands closes, a wider one does not
    fg = np.zeros((60, 60), bool)
    fg[10:50, 5:25] = True
    fg[10:50, 25 + 2 * BAND + 1 :] = True
    assert trimap.bridged(fg, np.ones_like(fg), BAND)[20:40, 25 : 25 + 2 * BAND + 1].all()
    fg2 = np.zeros((60, 60), bool)
    fg2[10:50, 5:25] = True
    fg2[10:50, 25 + 4 * BAND :] = True
    assert not trimap.bridged(fg2, np.ones_like(fg2), BAND)[20:40, 25 + 2 * BAND].any()
