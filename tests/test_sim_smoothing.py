"""Temporal smoothing and the flicker metric (toolchain/sim/smoothing.py)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sim_fixtures import tiny_bundle

from toolchain.sim import simulate
from toolchain.sim.smoothing import DepthSmoother, flicker, mask_uncertainty, smooth_mask

probs = arrays(np.float32, (6, 7), elements=st.floats(0, 1, width=32))


def test_uncertainty_is_one_at_half_and_zero_when_sure():
    u = mask_uncertainty(np.array([0.0, 0.5, 1.0, 0.02, 0.98], np.float32))
    assert u[1] == pytest.approx(1.0, abs=1e-3)
    assert u[0] < 1e-3 and u[2] < 1e-3 and u[3] < 0.2 and u[4] < 0.2  # polynomial: ~4e-5 at 0 and 1


@settings(max_examples=50, deadline=None)
@given(probs, probs)
def test_smoothed_mask_lies_between_new_and_previous(new, prev):
    out = smooth_mask(new, prev)
    assert np.all(out >= np.minimum(new, prev) - 1e-6) and np.all(out <= np.maximum(new, prev) + 1e-6)
    sure = (new == 0) | (new == 1)
    assert np.allclose(out[sure], new[sure], atol=1e-3)  # confident pixels follow the new frame at once


def test_first_frame_and_shape_change_pass_through():
    a = np.full((4, 4), 0.5, np.float32)
    assert np.array_equal(smooth_mask(a, None), a)
    assert np.array_equal(smooth_mask(a, np.zeros((3, 3), np.float32)), a)


def test_depth_smoother_holds_over_holes_and_resets_on_motion():
    s = DepthSmoother()
    d = np.full((2, 2), 1.0, np.float32)
    c = np.ones((2, 2), np.float32)
    s.update(d, c)
    d2 = d.copy()
    d2[0, 0] = np.nan  # hole: the old depth is held with less confidence
    d2[0, 1] = 2.0  # moved: the new depth wins at once
    out, conf = s.update(d2, np.where(np.isnan(d2), 0, 1).astype(np.float32))
    assert out[0, 0] == pytest.approx(1.0) and conf[0, 0] < 1
    assert out[0, 1] == pytest.approx(2.0)


def test_flicker_counts_only_where_truth_is_static():
    truth = [np.zeros((40, 40), np.float32) for _ in range(3)]
    truth[2][:10, :10] = 1.0  # the truth changes here: excluded
    alphas = [np.zeros((40, 40), np.float32) for _ in range(3)]
    alphas[2][:10, :10] = 1.0
    assert flicker(alphas, truth) == 0
    alphas[1][30:, 30:] = 0.5  # flicker where nothing moved
    assert flicker(alphas, truth) > 0


def test_smoothing_cuts_flicker_2x_without_raising_alpha_error_10pct():
    # simulated model output (per-frame noise on the true matte) isolates smoothing from the tiny model
    s = simulate.simulate_sequence(
        simulate.SEQUENCES_DIR / "cat_turn",
        tiny_bundle(),
        profiles=["flagship"],
        mask_source="simulated",
        max_frames=10,
    )
    q = s["quality"]
    assert q["flicker_reduction"] >= 2.0, q
    assert q["alpha_mae_change"] <= 0.10, q


def test_motion_gate_follows_moving_pixels_and_averages_still_ones():
    import numpy as np

    from toolchain.sim.smoothing import image_stillness, smooth_mask

    prev_img = np.zeros((8, 8, 3), np.uint8)
    img = prev_img.copy()
    img[:, 4:] = 200  # the right half moved
    still = image_stillness(img, prev_img)
    assert still[:, :2].min() == 1.0 and still[:, 6:].max() == 0.0
    assert image_stillness(img, None) is None
    new, prev = np.full((8, 8), 0.5, np.float32), np.full((8, 8), 0.9, np.float32)
    out = smooth_mask(new, prev, 0.9, still)
    assert out[0, 0] > 0.8 and out[0, 7] == 0.5  # still pixel pulled to the past; moving one follows now
