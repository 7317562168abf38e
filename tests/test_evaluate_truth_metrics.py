"""Accuracy metrics against ground truth: known answers, and properties (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolchain.evaluate import truth_metrics as M


def test_confusion_and_iou_known_answer():
    truth = np.array([[0, 0, 1], [1, 1, 255]])
    pred = np.array([[0, 1, 1], [1, 1, 0]])
    conf = M.confusion(truth, pred, 3)
    assert conf.tolist() == [[1, 1, 0], [0, 3, 0], [0, 0, 0]]  # the void pixel is not counted
    iou = M.class_iou(conf)
    assert iou[0] == pytest.approx(1 / 2) and iou[1] == pytest.approx(3 / 4) and np.isnan(iou[2])
    assert M.miou(conf) == pytest.approx((1 / 2 + 3 / 4) / 2)
    assert M.pixel_accuracy(conf) == pytest.approx(4 / 5)
    sparse = M.segmentation_image(truth.astype(np.uint8), pred.astype(np.uint8), 3)["confusion"]
    assert (M.dense_confusion(sparse, 3) == conf).all()


def test_boundary_f():
    m = np.zeros((100, 100), bool)
    m[30:70, 30:70] = True
    assert M.boundary_f(m, m) == 1.0
    assert M.boundary_f(np.zeros_like(m), np.zeros_like(m)) == 1.0
    assert M.boundary_f(m, np.zeros_like(m)) == 0.0
    near = np.roll(m, 1, axis=1)  # 1 px off: inside the tolerance (ceil(0.008 * 141) = 2 px)
    assert M.boundary_f(m, near) == 1.0
    far = np.roll(m, 10, axis=1)
    assert 0.2 < M.boundary_f(m, far) < 0.8


def test_matting_known_answers():
    t = np.zeros((100, 100), np.float32)
    t[:, 50:] = 1.0
    figs = M.matting_image(t, t)
    assert figs == {"sad_k": 0.0, "mse": 0.0, "grad_k": 0.0, "conn_k": 0.0, "holes": 0.0, "ghosts": 0.0}
    p = np.full_like(t, 0.5)
    assert M.sad_k(t, p) == pytest.approx(10000 * 0.5 / 1000)
    assert M.mse(t, p) == pytest.approx(0.25)
    assert M.gradient_error_k(t, p) > 0  # the edge is gone
    assert M.connectivity_error_k(t, p) > 0
    # a speck of foreground on the background: each of its 9 pixels is fully disconnected (cost 1)
    speck = t.copy()
    speck[10:13, 10:13] = 1.0
    assert M.connectivity_error_k(t, speck) == pytest.approx(9 / 1000)
    assert M.sad_k(t, speck) == pytest.approx(9 / 1000)


def test_holes_and_ghosts_exact():
    # reference: a 100x100 opaque square centred in 200x200; deep interior = pixels > 20 px from its edge
    t = np.zeros((200, 200), np.float32)
    t[50:150, 50:150] = 1.0
    inside = M.deep_region(t >= M.INSIDE_REF)
    outside = M.deep_region(t <= M.OUTSIDE_REF)
    assert inside.sum() == 60 * 60  # rows 70..129: distance to the nearest outside pixel (centres) > 20
    assert M.holes(t, t) == 0.0 and M.ghosts(t, t) == 0.0
    p = t.copy()
    p[90:100, 90:100] = 0.3  # a 10x10 hole deep inside
    p[60:62, 60:62] = 0.0  # within 20 px of the outline: not counted
    assert M.holes(t, p) == pytest.approx(100 / (60 * 60))
    p[5:10, 5:15] = 0.5  # a 5x10 ghost deep outside (> 20 px from the square)
    p[40:45, 60:70] = 0.5  # 5 px outside the outline: not counted
    assert M.ghosts(t, p) == pytest.approx(50 / outside.sum())
    assert M.holes(t, np.full_like(t, 0.9)) == 0.0 and M.holes(t, np.full_like(t, 0.89)) == 1.0
    assert M.ghosts(t, np.full_like(t, 0.1)) == 0.0 and M.ghosts(t, np.full_like(t, 0.11)) == 1.0
    # no deep interior (a thin reference): nothing to measure, 0
    thin = np.zeros_like(t)
    thin[:, 100:110] = 1
    assert M.holes(thin, np.zeros_like(t)) == 0.0


def _depth_scene(seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 8.0, (40, 50))


def test_depth_alignment_inverse_and_depth():
    d = _depth_scene()
    disparity = 3.0 / d + 0.2  # a relative inverse-depth model: exact up to scale and shift
    r = M.depth_image(d, disparity, space="inverse", pred_is_inverse=True)
    assert r["delta1"] == 1.0 and r["abs_rel"] < 1e-9 and r["rmse"] < 1e-9
    r = M.depth_image(d, 2.0 * d, space="inverse")  # depth-like output, scale only: inverted first
    assert r["delta1"] == 1.0 and r["abs_rel"] < 1e-9
    r = M.depth_image(d, 2.0 * d + 1.0, space="depth")
    assert r["abs_rel"] < 1e-9
    noisy = M.depth_image(d, d * np.random.default_rng(1).uniform(0.6, 1.6, d.shape), space="depth")
    assert noisy["delta1"] < 1.0 and noisy["abs_rel"] > 0.05
    invalid = d.copy()
    invalid[:20] = 0  # no data: not scored
    assert M.depth_image(invalid, 2 * d, space="inverse")["valid_px"] == 20 * 50
    with pytest.raises(ValueError):
        M.depth_image(d, d, space="log")


@settings(max_examples=25, deadline=None)
@given(s=st.floats(0.05, 20.0), t=st.floats(-0.05, 0.5), seed=st.integers(0, 1000))
def test_inverse_alignment_recovers_any_scale_shift(s, t, seed):
    d = _depth_scene(seed)
    r = M.depth_image(d, s / d + t, space="inverse", pred_is_inverse=True)
    assert r["delta1"] == 1.0 and r["abs_rel"] < 1e-6


def test_bootstrap_is_paired_and_covers_the_mean():
    rng = np.random.default_rng(0)
    v = rng.normal(0.7, 0.1, 300)
    w = M.bootstrap_weights(300, 500, seed=0)
    assert (w.sum(1) == 300).all()
    means = M.weighted_means(v, w)
    lo, hi = M.interval(means)
    assert lo < v.mean() < hi and hi - lo < 0.05
    assert M.interval(means - M.weighted_means(v.copy(), w)) == [0.0, 0.0]  # same model: no drop, no spread
    with_nan = v.copy()
    with_nan[:10] = np.nan
    assert np.isfinite(M.weighted_means(with_nan, w)).all()
    assert (M.bootstrap_weights(300, 5, seed=3) == M.bootstrap_weights(300, 5, seed=3)).all()


def test_weighted_miou_equals_miou_of_the_summed_matrices():
    rng = np.random.default_rng(0)
    confs = rng.integers(0, 50, (6, 3, 3))
    w = np.ones((1, 6))
    assert M.weighted_miou(confs, w)[0] == pytest.approx(M.miou(confs.sum(0)))
