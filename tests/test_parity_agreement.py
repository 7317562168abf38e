import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolchain.depth.align import align_scale_shift
from toolchain.parity import agreement


def test_pixel_agreement_and_iou_known_answers():
    a = np.array([[0, 15], [15, 8]])
    b = np.array([[0, 15], [8, 8]])
    assert agreement.pixel_agreement(a, b) == 0.75
    assert agreement.class_iou(a, b, 15) == 0.5
    assert agreement.class_iou(a, b, 8) == 0.5
    assert agreement.iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0


def test_snr_cosine_maxabs_known_answers():
    ref = np.array([1.0, -1.0, 1.0, -1.0])
    assert agreement.snr_db(ref, ref) == math.inf
    assert agreement.snr_db(ref, ref * 0.9) == pytest.approx(20.0)  # noise = 0.01 of signal power
    assert agreement.cosine_similarity(ref, 2 * ref) == pytest.approx(1.0)
    assert agreement.cosine_similarity(ref, -ref) == pytest.approx(-1.0)
    assert agreement.max_abs_error(ref, ref + [0, 0.5, 0, 0]) == 0.5


def test_depth_metrics_ignore_scale_and_shift():
    rng = np.random.default_rng(0)
    d = rng.uniform(1, 5, (32, 32))
    m = agreement.depth_metrics(3.0 * d + 2.0, d)
    assert m["delta1"] == 1.0 and m["abs_rel"] < 1e-9 and m["rmse"] < 1e-9
    off = agreement.depth_metrics(d * np.where(np.arange(32) < 16, 1.0, 1.5)[None, :], d, align=False)
    assert off["delta1"] == pytest.approx(0.5)


def test_edge_band_agreement_counts_only_the_band():
    ref = np.zeros((40, 40), int)
    ref[10:30, 10:30] = 15
    test = ref.copy()
    test[0:3, 0:3] = 8  # far from the edge: outside the band
    assert agreement.band_agreement(ref, test, [15]) == 1.0
    test[10, 10:30] = 0  # on the edge
    assert agreement.band_agreement(ref, test, [15]) < 1.0


@settings(max_examples=30, deadline=None)
@given(st.floats(0.1, 10), st.floats(-5, 5))
def test_alignment_recovers_any_affine_map(s, t):
    ref = np.linspace(1, 10, 50)
    aligned = align_scale_shift(ref * s + t, ref)
    assert np.allclose(aligned, ref, atol=1e-6)


def test_recipe_image_sets_choose_the_parity_folders(tmp_path, monkeypatch):
    """[parity] image_sets picks the folders of PORTRAIT_DATA_DIR a budget is judged on; the default is
    the photos (plus the depth photos for a depth model); a bad value is a recipe error."""
    import cv2

    from toolchain.errors import RecipeError
    from toolchain.parity.gate import parity_images
    from toolchain.recipes import merge_defaults
    from toolchain.registry import load_registry

    for folder, names in (("photos", ["a.jpg", "a_alpha_pred.png"]), ("depth_photos", ["d.jpg"])):
        (tmp_path / folder).mkdir()
        for n in names:
            cv2.imwrite(str(tmp_path / folder / n), np.full((40, 30, 3), 100, np.uint8))
    monkeypatch.setenv("PORTRAIT_DATA_DIR", str(tmp_path))
    reg = load_registry()
    seg, depth = reg["selfie_segmenter"], reg["pydnet_pp_mobile"]
    assert [n for n, _ in parity_images(seg)] == ["a.jpg"]
    assert [n for n, _ in parity_images(depth)] == ["a.jpg", "d.jpg"]
    assert [n for n, _ in parity_images(seg, image_sets=["photos", "depth_photos"])] == ["a.jpg", "d.jpg"]
    assert [n for n, _ in parity_images(depth, image_sets=["depth_photos"])] == ["d.jpg"]
    assert merge_defaults({"parity": {"image_sets": ["depth_photos"]}})["parity"]["image_sets"] == ["depth_photos"]
    for bad in (["phots"], [], "photos"):
        with pytest.raises(RecipeError):
            merge_defaults({"parity": {"image_sets": bad}})
