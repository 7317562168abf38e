"""Readers for real depth photos (skip without PORTRAIT_DATA_DIR) and on small synthetic files."""

from __future__ import annotations

import numpy as np
import pytest

from toolchain.depth.depth16 import encode_depth16, write_depth16
from toolchain.depth.readers import gdepth_to_depth, read_apple_portrait, read_depth16_photo, read_gdepth
from toolchain.errors import InputError, ModelFormatError


def test_gdepth_formulas():
    dn = np.array([0.0, 0.5, 1.0])
    assert gdepth_to_depth(dn, "RangeLinear", 1.0, 5.0).tolist() == pytest.approx([1.0, 3.0, 5.0])
    inv = gdepth_to_depth(dn, "RangeInverse", 1.0, 5.0)
    assert inv.tolist() == pytest.approx([1.0, 5.0 / 3.0, 5.0])
    with pytest.raises(InputError):
        gdepth_to_depth(dn, "Disparity", 1.0, 5.0)


def test_not_a_jpeg(tmp_path):
    p = tmp_path / "x.jpg"
    p.write_bytes(b"hello")
    with pytest.raises(ModelFormatError, match="not a JPEG"):
        read_gdepth(p)
    with pytest.raises(InputError, match="not found"):
        read_apple_portrait(tmp_path / "missing.jpg")


def test_depth16_photo(tmp_path):
    r = np.array([[0, 1000], [2500, 8191]], np.uint16)
    p = tmp_path / "f.depth16"
    write_depth16(p, encode_depth16(r, np.array([[0, 1], [0.5, 1]])), stride_bytes=8)
    d = read_depth16_photo(p, 2, 2, stride_bytes=8)
    assert np.isnan(d.depth_m[0, 0]) and d.depth_m[1, 0] == pytest.approx(2.5)
    assert d.format == "DEPTH16" and d.confidence[0, 1] == 1.0


@pytest.mark.shared
def test_gdepth_real(shared_depth_photos):
    for p in [p for p in shared_depth_photos if p.name.startswith("gdepth")]:
        d = read_gdepth(p)
        assert d.format == "RangeInverse"
        assert d.depth_m.shape == (2048, 1536) and d.image.shape == (2048, 1536, 3)
        assert d.near < d.far
        assert d.near - 1e-3 <= d.depth_m.min() and d.depth_m.max() <= d.far + 1e-3
        assert {"FocalDistance", "FocalPointX", "FocalPointY", "BlurAtInfinity"} <= set(d.focus)
        assert d.near <= d.focus["FocalDistance"] <= d.far
        assert not np.array_equal(d.image, d.rendered)  # original vs lens-blurred rendering


@pytest.mark.shared
def test_apple_portrait_real(shared_depth_photos):
    p = [p for p in shared_depth_photos if p.name.startswith("apple")][0]
    d = read_apple_portrait(p)
    assert d.image.shape == (4032, 3024, 3)
    assert d.disparity.shape == (768, 576) and d.depth_m is None
    assert d.disparity.min() == pytest.approx(0.650879, abs=0.01)
    assert d.disparity.max() == pytest.approx(2.509766, abs=0.01)
    assert d.near == pytest.approx(1 / d.disparity.max())
