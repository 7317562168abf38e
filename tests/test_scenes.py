"""Synthetic scenes: determinism, ranges, soft alpha with thin structures, motion over time."""

from __future__ import annotations

import numpy as np
import pytest

from toolchain.errors import InputError
from toolchain.scenes import generate_scene


@pytest.mark.parametrize("kind", ["person", "cat"])
def test_scene_fields_and_ranges(kind):
    s = generate_scene(3, kind)
    assert s.rgb.shape == (480, 640, 3) and s.rgb.dtype == np.uint8
    assert s.alpha.dtype == np.float32 and s.alpha.shape == (480, 640)
    assert 0.0 <= s.alpha.min() and s.alpha.max() <= 1.0
    assert s.depth_m.dtype == np.float32 and np.isfinite(s.depth_m).all()
    assert s.reflectivity.dtype == np.float32 and 0 <= s.reflectivity.min() and s.reflectivity.max() <= 1
    assert s.label == kind and s.t == 0
    assert 0.4 <= s.subject_depth_m <= 2.0
    subj = s.alpha >= 0.5
    assert subj.mean() > 0.02
    d = s.depth_m[subj & ~s.foreground_mask]
    assert 0.4 <= np.median(d) <= 2.1
    bg = (s.alpha < 0.01) & ~s.foreground_mask
    assert s.depth_m[bg].min() >= 2.0 - 1e-3 and s.depth_m[bg].max() <= 8.0 + 1e-3


@pytest.mark.parametrize("kind", ["person", "cat"])
def test_alpha_is_soft_with_thin_strands(kind):
    s = generate_scene(5, kind)
    a = s.alpha
    partial = (a > 0.05) & (a < 0.95)
    assert partial.sum() > 1000  # hair / fur / whiskers give many partially covered pixels
    # thin structures: partial pixels with no fully covered pixel next to them on the left and right
    left, right = np.roll(a, 1, axis=1), np.roll(a, -1, axis=1)
    thin = partial & (left < 0.5) & (right < 0.5)
    assert thin.sum() > 150


def test_deterministic_and_seed_dependent():
    a, b = generate_scene(11, "cat", t=4), generate_scene(11, "cat", t=4)
    for f in ("rgb", "alpha", "depth_m", "reflectivity"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
    c = generate_scene(12, "cat", t=4)
    assert not np.array_equal(a.depth_m, c.depth_m)


def test_time_moves_a_little():
    s0, s1, s5 = (generate_scene(2, "person", t=t) for t in (0, 1, 5))
    for s in (s1, s5):
        changed = np.abs(s.alpha - s0.alpha) > 0.5
        assert 0 < changed.mean() < 0.1  # moved, but only a little
    assert abs(s5.subject_depth_m - s0.subject_depth_m) < 0.1


def test_other_sizes_and_errors():
    s = generate_scene(0, "person", size=(120, 160))
    assert s.rgb.shape == (120, 160, 3) and s.K[0, 2] == pytest.approx(79.5)
    with pytest.raises(InputError, match="unknown scene kind"):
        generate_scene(0, "dog")
    with pytest.raises(InputError):
        generate_scene(0, "cat", size=(8, 8))
