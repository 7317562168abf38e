"""The blur radius a depth map gives (toolchain/depth/blur.py) and the depth task figures in the gate."""

import numpy as np
import pytest

from toolchain.depth.blur import blur_radius_px, signed_coc
from toolchain.parity import gate


def test_signed_coc_is_the_thin_lens_formula():
    z = np.array([1.0, 2.0, 4.0, np.inf, 0.5, 0.1, np.nan, 0.0], np.float32)
    coc = signed_coc(z, focus=2.0, k=50.0)
    assert coc[:4].tolist() == [-50.0, 0.0, 25.0, 50.0]  # 50 * (1 - 2/z); infinity = K
    assert coc[4] == -50.0 and coc[5] == -50.0  # clipped to -K in front
    assert coc[6] == 0.0 and coc[7] == 0.0  # holes (NaN, z = 0) give 0, as in the render


def test_golden_render_uses_the_same_coc():
    """render/golden.circle_of_confusion is this formula on the working grid (a refactor, same numbers)."""
    from toolchain.render.golden import circle_of_confusion
    from toolchain.render.plan import make_plan, prepare_frame

    img = np.full((64, 96, 3), 128, np.uint8)
    mask = np.zeros((16, 24, 1), np.float32)
    mask[4:12, 8:16] = 1.0
    depth = np.linspace(0.5, 5.0, 64 * 96, dtype=np.float32).reshape(64, 96)
    frame = prepare_frame(img, mask, {"kind": "probabilities"}, depth_m=depth, focus_m=1.5, max_blur_px=8.0)
    plan = make_plan(64, 96, (16, 24), frame.max_blur_px)
    coc, _ = circle_of_confusion(frame, plan)
    assert np.array_equal(coc, signed_coc(depth, 1.5, plan.max_coc_work))


def test_blur_radius_focuses_on_the_subject_median():
    inv = np.full((10, 10), 0.25)  # background at depth 4
    subject = np.zeros((10, 10), bool)
    subject[3:7, 3:7] = True
    inv[subject] = 1.0  # subject at depth 1: in focus
    r = blur_radius_px(inv, subject, 50.0)
    assert np.all(r[subject] == 0) and np.allclose(r[~subject], 50 * (1 - 1 / 4))


def test_blur_error_is_zero_for_an_affine_copy_and_counts_pixels():
    rng = np.random.default_rng(0)
    inv = rng.uniform(0.2, 2.0, (40, 40))
    same = gate.blur_error(inv, 3.0 * inv + 0.5, inverse=True)  # aligned away (scale and shift)
    assert same["blur_mean_px"] < 1e-4 and same["blur_p99_px"] < 1e-3
    off = inv.copy()
    off[:4, :4] *= 0.5  # 1 % of the pixels twice as far
    e = gate.blur_error(inv, off, inverse=True)
    assert 0 < e["blur_mean_px"] < e["blur_p99_px"]


def test_depth_figures_report_blur_when_the_recipe_asks():
    rng = np.random.default_rng(1)
    refs = [rng.uniform(0.2, 2.0, (32, 32, 1)) for _ in range(2)]
    outs = [refs[0], refs[1] * np.where(np.arange(32) < 16, 1.0, 1.3)[None, :, None]]
    figs = gate.depth_figures(refs, outs, ["a", "b"], inverse=True, blur={"max_blur_px": 50, "subject_fraction": 0.25})
    assert figs["per_image"][0]["blur_mean_px"] < 1e-6
    assert figs["blur_mean_px"] == pytest.approx(figs["per_image"][1]["blur_mean_px"]) and figs["blur_mean_px"] > 0.5
    assert gate._judge(figs, {"blur_mean_px_max": 0.5}) and not gate._judge(figs, {"blur_mean_px_max": 50.0})
    assert "blur_mean_px" not in gate.depth_figures(refs, outs, ["a", "b"], inverse=True)
