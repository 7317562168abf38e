"""Registration on synthetic scenes: accuracy away from depth edges, holes and edges marked."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from toolchain.depth.camera import Intrinsics
from toolchain.depth.registration import register_depth, register_depth_detailed
from toolchain.depth.tof import simulate_tof_frame
from toolchain.errors import InputError
from toolchain.scenes import generate_scene


def depth_edges(gt: np.ndarray, grow: int = 9) -> np.ndarray:
    k = np.ones((3, 3), np.uint8)
    e = (cv2.dilate(gt, k) - cv2.erode(gt, k)) > 0.05 * gt
    return cv2.dilate(e.astype(np.uint8), np.ones((grow, grow), np.uint8)).astype(bool)


@pytest.mark.parametrize(
    "kind,seed,profile", [("person", 1, "tof_320x240"), ("cat", 0, "tof_240x180"), ("cat", 1, "tof_320x240")]
)
def test_median_error_within_one_percent(kind, seed, profile):
    s = generate_scene(seed, kind)
    f = simulate_tof_frame(s, profile, seed=seed)
    depth, conf, hole = register_depth(f.range_mm, f.confidence, f.intrinsics, s.K, f.extrinsics, s.rgb)
    assert depth.shape == s.depth_m.shape and depth.dtype == np.float32
    assert np.isnan(depth[hole]).all() and np.isfinite(depth[~hole]).all()
    assert (conf[hole] == 0).all() and (conf[~hole] > 0).all()
    m = ~hole & ~depth_edges(s.depth_m)
    assert m.mean() > 0.3
    rel = np.abs(depth[m] - s.depth_m[m]) / s.depth_m[m]
    assert np.median(rel) <= 0.01


def test_holes_and_edges_are_marked_not_invented():
    s = generate_scene(1, "person")
    f = simulate_tof_frame(s, "tof_240x180", seed=0)
    r = register_depth_detailed(f.range_mm, f.confidence, f.intrinsics, s.K, f.extrinsics, s.rgb)
    # the wall beyond the 6 m range of this sensor comes back as holes, not as depth
    far = s.depth_m > 6.3
    assert far.any() and r.hole_mask[far].mean() > 0.95
    # outside the ToF field of view (narrower than the RGB one): holes at the image border
    assert r.hole_mask[:, :3].all() and r.hole_mask[:, -3:].all()
    # flying pixels become marked edge holes; no registered pixel invents a depth between surfaces
    assert r.edge_mask.sum() > 50
    e = depth_edges(s.depth_m, grow=3) & ~r.hole_mask
    near_a_surface = np.zeros_like(e)
    d = np.nan_to_num(r.depth_m)
    for dy in range(-4, 5):
        for dx in range(-4, 5):
            g = np.roll(s.depth_m, (dy, dx), axis=(0, 1))
            near_a_surface |= np.abs(d - g) < 0.03 * g
    assert near_a_surface[e].mean() > 0.97


def test_confidence_travels_along():
    s = generate_scene(2, "cat")
    f = simulate_tof_frame(s, "tof_320x240", seed=0)
    low = f.confidence.copy()
    low[:, :160] *= 0.2
    _, c_hi, h = register_depth(f.range_mm, f.confidence, f.intrinsics, s.K, f.extrinsics, s.rgb)
    _, c_lo, h2 = register_depth(f.range_mm, low, f.intrinsics, s.K, f.extrinsics, s.rgb)
    both = ~h & ~h2
    left = both.copy()
    left[:, 320:] = False
    assert c_lo[left].mean() < 0.5 * c_hi[left].mean()


def test_shape_mismatch_is_an_input_error():
    s = generate_scene(0, "cat", size=(120, 160))
    f = simulate_tof_frame(s, "tof_240x180")
    with pytest.raises(InputError, match="intrinsics"):
        register_depth(f.range_mm, f.confidence, Intrinsics.from_fov(100, 80, 60), s.K, f.extrinsics, s.rgb)
