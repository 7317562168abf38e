"""ToF simulator: profiles, noise statistics against the configured model, invalid pixels,
flying pixels, timestamps."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from toolchain.depth.depth16 import decode_depth16
from toolchain.depth.tof import get_profile, profile_names, simulate_tof_frame
from toolchain.errors import InputError
from toolchain.scenes import generate_scene, rgb_intrinsics


def flat(depth_m: float, refl: float, size=(360, 480)):
    return SimpleNamespace(
        depth_m=np.full(size, depth_m, np.float32),
        reflectivity=np.full(size, refl, np.float32),
        K=rgb_intrinsics(size),
        t=0,
    )


def test_profiles():
    assert {"tof_240x180", "tof_320x240"} <= set(profile_names())
    for name, (w, h) in (("tof_240x180", (240, 180)), ("tof_320x240", (320, 240))):
        p = get_profile(name)
        assert (p.width, p.height, p.fps) == (w, h, 30.0)
        assert 0.008 <= np.linalg.norm(p.translation_m) <= 0.015  # about 1 cm baseline
        assert p.intrinsics.width == w
    with pytest.raises(InputError, match="unknown ToF profile"):
        get_profile("tof_1x1")


@pytest.mark.parametrize("profile", ["tof_240x180", "tof_320x240"])
@pytest.mark.parametrize("depth_m,refl", [(1.0, 0.5), (4.0, 0.5), (2.5, 0.15)])
def test_noise_follows_model(profile, depth_m, refl):
    p = get_profile(profile)
    f = simulate_tof_frame(flat(depth_m, refl), p, seed=1)
    valid = f.range_mm > 0
    assert valid.mean() > 0.99
    err_mm = f.range_mm[valid].astype(np.float64) - f.true_depth_m[valid] * 1000.0
    sigma = float(p.sigma_mm(depth_m, refl))
    assert abs(err_mm.mean()) < 0.05 * sigma + 0.5  # unbiased on a flat wall
    assert err_mm.std() == pytest.approx(np.sqrt(sigma**2 + 1 / 12), rel=0.05)
    # the truth is the wall seen from the ToF camera (a small rotation tilts it by a few mm)
    assert np.abs(f.true_depth_m - depth_m).max() < 0.005 * depth_m + 0.002


def test_noise_is_temporal_and_seeded():
    sc = flat(2.0, 0.5)
    a, b = (
        simulate_tof_frame(sc, "tof_240x180", seed=1, frame_index=0),
        simulate_tof_frame(sc, "tof_240x180", seed=1, frame_index=1),
    )
    a2 = simulate_tof_frame(sc, "tof_240x180", seed=1, frame_index=0)
    assert np.array_equal(a.range_mm, a2.range_mm)
    assert not np.array_equal(a.range_mm, b.range_mm)
    p = get_profile("tof_240x180")
    assert b.timestamp_ns - a.timestamp_ns == pytest.approx(p.frame_period_ns, abs=2e6)
    assert a.timestamp_ns - 1_000_000_000 == pytest.approx(p.timestamp_offset_ns, abs=1e6)


def test_invalid_pixels():
    p = get_profile("tof_240x180")
    assert (simulate_tof_frame(flat(7.0, 0.5), p).range_mm == 0).all()  # beyond range
    assert (simulate_tof_frame(flat(2.0, 0.002), p).range_mm == 0).all()  # absorbing
    assert (simulate_tof_frame(flat(0.18, 1.0), p).range_mm == 0).all()  # saturated
    f = simulate_tof_frame(flat(1.0, 0.5), p)
    assert (f.confidence[f.range_mm > 0] > 0.9).all()
    assert (f.confidence[f.range_mm == 0] == 0).all()


def test_scene_frame_has_flying_pixels_and_depth16():
    s = generate_scene(1, "cat")
    f = simulate_tof_frame(s, "tof_320x240", seed=0)
    assert f.range_mm.shape == (240, 320)
    assert 0.002 < f.flying_mask.mean() < 0.1
    assert f.confidence[f.flying_mask].mean() < f.confidence[(f.range_mm > 0) & ~f.flying_mask].mean()
    r, c = decode_depth16(f.depth16)
    assert np.array_equal(r, f.range_mm)
    assert np.abs(c - f.confidence).max() <= 1 / 14 + 1e-6


def test_multipath_bias_in_concave_corner():
    # the inside of a room corner: two walls meeting at the image centre
    size = (360, 480)
    K = rgb_intrinsics(size)
    x = (np.arange(size[1]) - K[0, 2]) / K[0, 0]
    z = 3.0 / (1.0 + 0.6 * np.abs(x))  # planes z = 3 - 0.6 |X|: farthest in the middle
    sc = SimpleNamespace(
        depth_m=np.tile(z.astype(np.float32), (size[0], 1)), reflectivity=np.full(size, 0.6, np.float32), K=K, t=0
    )
    with_mp = simulate_tof_frame(sc, "tof_240x180", noise=False)
    without = simulate_tof_frame(sc, "tof_240x180", noise=False, multipath=False)
    diff = with_mp.range_mm.astype(int) - without.range_mm.astype(int)
    assert (diff >= 0).all()
    cols = np.abs(np.arange(240) - 119.5)
    assert diff[:, cols < 3].mean() > 5 and diff[:, cols > 40].mean() < 1
