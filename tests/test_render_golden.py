"""Golden stage: behaviour the issue asks for (no halo, subject not gathered, bright bokeh) and input rules."""

import numpy as np
import pytest

from toolchain.errors import InputError
from toolchain.render import render
from toolchain.render.baseline import notebook_render
from toolchain.render.model_output import simulate_model_output

H, W = 120, 160
BG = (60, 120, 200)


def _scene(subject=(20, 20, 20), bg=BG):
    img = np.empty((H, W, 3), np.uint8)
    img[:] = bg
    yy, xx = np.mgrid[:H, :W]
    alpha = (((yy - 60) / 40.0) ** 2 + ((xx - 80) / 30.0) ** 2 <= 1).astype(np.float32)
    img[alpha > 0] = subject
    low, spec = simulate_model_output(alpha, size=(65, 65), seed=0)
    return img, alpha, low, spec


def _ring(alpha, inner, outer):
    import cv2

    def k(r):
        return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))

    a = (alpha > 0.5).astype(np.uint8)
    return (cv2.dilate(a, k(outer)) > 0) & ~(cv2.dilate(a, k(inner)) > 0)


def test_no_dark_halo_and_subject_not_gathered():
    img, alpha, low, spec = _scene()
    r = render(img, low, spec, max_blur_px=8)
    ring = _ring(alpha, 3, 12)  # background just outside the subject
    err = np.abs(r.composite[ring].astype(int) - np.array(BG)).max()
    assert err <= 3, err
    base = notebook_render(img, low, spec)["composite"]
    assert np.abs(base[_ring(alpha, 0, 2)].astype(int) - np.array(BG)).max() > 20  # the notebook's halo


def test_highlights_stay_bright():
    img = np.full((H, W, 3), 30, np.uint8)
    img[58:62, 38:42] = 255  # a small light far behind the subject
    alpha = np.zeros((H, W), np.float32)
    alpha[40:80, 100:140] = 1
    low, spec = simulate_model_output(alpha, size=(65, 65), seed=0)
    r = render(img, low, spec, max_blur_px=6)
    disc = r.composite[52:68, 32:48, 0].astype(float)
    plain_mean = 30 + (255 - 30) * 16 / (np.pi * 6.5**2)  # what a plain disc average would give
    assert disc.max() > plain_mean + 15
    assert disc.max() < 255


def test_in_focus_background_stays_sharp_and_far_background_blurs():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    alpha = np.zeros((H, W), np.float32)
    alpha[40:80, 60:100] = 1
    low, spec = simulate_model_output(alpha, size=(65, 65), seed=0)
    depth = np.full((H, W), 2.0, np.float32)
    depth[:, :30] = 50.0  # far on the left; the rest at the focus distance
    r = render(img, low, spec, depth_m=depth, focus_m=2.0, max_blur_px=6)
    right = (slice(0, 30), slice(120, 160))
    assert np.abs(r.composite[right].astype(int) - img[right]).max() <= 1
    left = (slice(0, 30), slice(0, 20))
    assert r.composite[left].std() < 0.5 * img[left].std()
    assert r.coc.shape == (H, W) and r.coc[0, 0] > 5 and abs(r.coc[0, 140]) < 0.5


def test_result_fields():
    img, alpha, low, spec = _scene()
    r = render(img, low, spec)
    assert r.composite.dtype == np.uint8 and r.composite.shape == img.shape
    assert r.alpha.dtype == np.float32 and r.alpha.shape == (H, W)
    assert 0 <= r.alpha.min() and r.alpha.max() <= 1
    assert r.warnings == []


@pytest.mark.parametrize("impl", ["golden", "device"])
def test_bad_inputs_have_defined_behaviour(impl):
    img, alpha, low, spec = _scene()
    # depth of another size and aspect: stretched with a warning
    r = render(img, low, spec, depth_m=np.full((30, 30), 3.0, np.float32), implementation=impl)
    assert any("aspect" in w for w in r.warnings)
    # NaN / inf / negative depth: holes, finite output
    d = np.full((H, W), 3.0, np.float32)
    d[::2] = np.nan
    d[1::4] = np.inf
    d[3::8] = -1
    r = render(img, low, spec, depth_m=d, implementation=impl)
    assert any("holes" in w for w in r.warnings) and np.isfinite(r.coc).all()
    r = render(img, low, spec, depth_m=np.full((H, W), np.nan, np.float32), implementation=impl)
    assert any("mask-only" in w for w in r.warnings)
    # empty mask: everything blurred; full mask: unchanged
    r = render(img, np.full((65, 65), -20.0, np.float32), {"kind": "logits"}, implementation=impl)
    assert any("empty" in w for w in r.warnings)
    r = render(img, np.ones((65, 65), np.float32), {"kind": "probabilities"}, implementation=impl)
    assert any("full" in w for w in r.warnings)
    assert np.abs(r.composite.astype(int) - img).max() <= 1
    # background of another size: cover-resized
    r = render(img, low, spec, mode="replace", background=np.zeros((50, 300, 3), np.uint8), implementation=impl)
    assert r.composite.shape == img.shape and any("centre-cropped" in w for w in r.warnings)
    # grey image, RGBA background
    r = render(img[..., 0], low, spec, implementation=impl)
    assert r.composite.shape == img.shape and any("grey" in w for w in r.warnings)
    # a frame that does not divide into working pixels
    big = np.zeros((1031, 1537, 3), np.uint8)
    r = render(big, low, spec, implementation=impl)
    assert r.composite.shape == big.shape and r.alpha.shape == big.shape[:2]


def test_bad_inputs_that_are_errors():
    img, alpha, low, spec = _scene()
    with pytest.raises(InputError):
        render(img.astype(np.float32), low, spec)
    with pytest.raises(InputError):
        render(img, low, spec, mode="replace")
    with pytest.raises(InputError):
        render(img, low, spec, mode="sepia")
    with pytest.raises(InputError):
        render(img, low, spec, f_number=0)
    with pytest.raises(InputError):
        render(img, low, spec, implementation="gpu")


def test_chroma_and_replace_composite_by_alpha():
    img, alpha, low, spec = _scene(subject=(200, 30, 30))
    r = render(img, low, spec, mode="chroma", chroma_rgb=(0, 255, 0))
    assert (r.composite[5, 5] == (0, 255, 0)).all()
    assert np.abs(r.composite[60, 80].astype(int) - (200, 30, 30)).max() <= 2
    bg = np.full((H, W, 3), 7, np.uint8)
    r = render(img, low, spec, mode="replace", background=bg)
    assert (r.composite[5, 5] == 7).all()
