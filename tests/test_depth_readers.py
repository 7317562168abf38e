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


# ------------------------------------------------------------------- fixtures in the phones' byte layouts

import json  # noqa: E402
import struct  # noqa: E402

import cv2  # noqa: E402

from toolchain.depth import photo_fixtures as pf  # noqa: E402
from toolchain.depth.readers import _classify, apply_orientation, read_depth_photo  # noqa: E402
from toolchain.errors import PhotoFormatError  # noqa: E402


@pytest.mark.parametrize("orientation", range(1, 9))
def test_apple_fixture_all_planes_upright(tmp_path, orientation):
    fx = pf.apple_portrait(orientation=orientation)
    p = fx.write(tmp_path / "a.jpg")
    d = read_apple_portrait(p)
    t = fx.truth
    assert d.format == "disparity" and d.orientation == orientation and d.units == "1/m"
    # the upright image equals OpenCV's own EXIF-orientation handling of the primary (an independent reference)
    ref = cv2.cvtColor(cv2.imdecode(np.frombuffer(fx.data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert d.image.shape == (128, 96, 3) and np.array_equal(d.image, ref)
    assert d.disparity.shape == (64, 48)
    assert np.abs(d.disparity - t["disparity"]).max() < 2 * (t["float_max"] - t["float_min"]) / 255  # JPEG q100
    assert d.disparity.min() == pytest.approx(t["float_min"], abs=1e-5)
    assert d.matte is not None and np.abs(d.matte - t["matte"]).max() < 0.02
    assert set(d.semantic) == {"hair", "skin", "teeth"}
    for k in ("hair", "skin", "teeth"):
        assert np.abs(d.semantic[k] - t[k]).max() < 0.02
    assert [a["kind"] for a in d.aux] == ["disparity", "matte", "semantic:hair", "semantic:skin", "semantic:teeth"]


def test_apple_matte_written_as_depth_is_a_matte(tmp_path):
    """ImageIO writes the portrait matte with AuxiliaryImageType=depth: it must not become depth (the old bug)."""
    p = pf.apple_portrait(planes=("matte",)).write(tmp_path / "m.jpg")
    d = read_apple_portrait(p, require_depth=False)
    assert d.matte is not None and d.format is None and d.depth_m is None and d.disparity is None
    with pytest.raises(PhotoFormatError, match="no Apple disparity or depth") as e:
        read_apple_portrait(p)
    assert e.value.absent and "image 1: matte" in str(e.value)


def test_apple_depth_aux_is_metres(tmp_path):
    fx = pf.apple_portrait(planes=("disparity",))
    data = fx.data.replace(b">disparity</apdi:AuxiliaryImageType>", b">depth    </apdi:AuxiliaryImageType>", 1)
    d = read_apple_portrait(pf.FixturePhoto(data).write(tmp_path / "d.jpg"))
    assert d.format == "depth" and d.disparity is None and d.units == "m"
    assert d.depth_m.max() == pytest.approx(fx.truth["float_max"], abs=1e-5)


@pytest.mark.parametrize(
    "xmp, kind",
    [
        ("<apdi:AuxiliaryImageType>disparity</apdi:AuxiliaryImageType>", "disparity"),
        ('apdi:AuxiliaryImageType="depth"', "depth"),
        (
            "<apdi:AuxiliaryImageType>depth</apdi:AuxiliaryImageType><apdi:AuxiliaryImageSubType>portraiteffectsmatte"
            "</apdi:AuxiliaryImageSubType>",
            "matte",
        ),
        ('xmlns:portraitEffectsMatte="http://ns.apple.com/portraitEffectsMatte/1.0/"', "matte"),
        (
            "<apdi:AuxiliaryImageType>urn:com:apple:photo:2019:aux:semanticskinmatte</apdi:AuxiliaryImageType>",
            "semantic:skin",
        ),
        (
            "<apdi:AuxiliaryImageSubType>urn:com:apple:photo:2019:aux:semanticteethmatte</apdi:AuxiliaryImageSubType>",
            "semantic:teeth",
        ),
        (
            "<apdi:AuxiliaryImageType>kCGImageAuxiliaryDataTypeSemanticSegmentationHairMatte</apdi:AuxiliaryImageType>",
            "semantic:hair",
        ),
        ('xmlns:semanticSegmentationMatte="http://ns.apple.com/semanticSegmentationMatte/1.0/"', "semantic:?"),
        ("<apdi:AuxiliaryImageType>urn:com:apple:photo:2020:aux:hdrgainmap</apdi:AuxiliaryImageType>", "hdrgainmap"),
        ("<x:xmpmeta/>", None),
    ],
)
def test_apple_aux_classification(xmp, kind):
    assert _classify(xmp)[0] == kind


@pytest.mark.parametrize("orientation", [1, 6, 7])
@pytest.mark.parametrize("fmt", ["RangeInverse", "RangeLinear"])
def test_gdepth_fixture(tmp_path, fmt, orientation):
    fx = pf.gdepth(fmt=fmt, orientation=orientation, chunk=1500)  # several extended-XMP chunks
    d = read_gdepth(fx.write(tmp_path / "g.jpg"))
    t = fx.truth
    assert d.format == fmt and d.orientation == orientation and d.image.shape == (128, 96, 3)
    inside = t["depth_m"] <= t["far"]
    step = (t["far"] - t["near"]) / 255 * (t["far"] / t["near"] if fmt == "RangeInverse" else 1)
    assert np.abs(d.depth_m - np.clip(t["depth_m"], t["near"], t["far"]))[inside].max() <= step
    assert np.abs(d.confidence - t["confidence"]).max() < 1e-6
    assert np.abs(d.image.astype(int) - t["rgb"]).mean() < 8  # GImage (original), JPEG-compressed
    assert np.abs(d.rendered.astype(int) - t["rendered"]).mean() < 8
    assert d.focus["FocalDistance"] == 1.2 and d.image_source.startswith("GImage")


def test_gdepth_units_mm(tmp_path):
    fx = pf.gdepth(near=500.0, far=4000.0, units="mm", confidence=False, original=False)
    d = read_gdepth(fx.write(tmp_path / "g.jpg"))
    assert d.units == "m" and d.near == pytest.approx(0.5) and d.far == pytest.approx(4.0)
    assert d.confidence is None and d.image_source.startswith("primary")


def test_apply_orientation_matches_opencv():
    """Our EXIF orientation table against OpenCV's decoder for all eight values."""
    img = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3) * 3
    for o in range(1, 9):
        stored = apply_orientation(img, pf.INVERSE_ORIENTATION[o])
        assert np.array_equal(apply_orientation(stored, o), img)
    fx = pf.apple_portrait(orientation=1, planes=())
    raw = cv2.imdecode(np.frombuffer(fx.data, np.uint8), cv2.IMREAD_UNCHANGED)
    for o in range(2, 9):
        seg = pf.exif_segment(o)
        data = fx.data[:2] + seg + fx.data[2 + len(pf.exif_segment(1)) :]
        ref = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert np.array_equal(apply_orientation(raw, o), ref), o


# ------------------------------------------------------------------- bad input: format and field named


def _gdepth_bytes(**kw) -> bytes:
    return pf.gdepth(confidence=False, **kw).data


def _err(tmp_path, data: bytes, reader=read_gdepth) -> PhotoFormatError:
    p = tmp_path / "bad.jpg"
    p.write_bytes(data)
    with pytest.raises(PhotoFormatError) as e:
        reader(p)
    return e.value


def test_gdepth_non_ascii_base64_is_a_project_error(tmp_path):
    """The fuzzing bug: a non-ASCII byte in GDepth:Data raised a raw ValueError from base64."""
    data = _gdepth_bytes()
    i = data.find(b'GDepth:Data="') + len(b'GDepth:Data="') + 10
    e = _err(tmp_path, data[:i] + "é".encode() + data[i + 2 :])
    assert e.format == "GDepth JPEG" and e.field == "GDepth:Data" and not e.absent
    assert "non-ASCII" in str(e)


@pytest.mark.parametrize(
    "old, new, field",
    [
        (b'GDepth:Near="1.0"', b'GDepth:Near="7.0"', "GDepth:Near / GDepth:Far"),
        (b'GDepth:Near="1.0"', b'GDepth:Near="x.0"', "GDepth:Near"),
        (b'GDepth:Far="6.0"', b'GDepth:Far="inf"', "GDepth:Far"),
        (b'GDepth:Format="RangeInverse"', b'GDepth:Format="RangeInvers3"', "GDepth:Format"),
        (b'GDepth:Format="RangeInverse"', b'GDepth:Formax="RangeInverse"', "GDepth:Format"),
        (b'GDepth:Data="', b'GDepth:Dat4="', "GDepth:Data"),
    ],
)
def test_gdepth_bad_fields(tmp_path, old, new, field):
    data = _gdepth_bytes()
    assert old in data
    e = _err(tmp_path, data.replace(old, new, 1))
    assert e.format == "GDepth JPEG" and e.field == field


def test_gdepth_corrupt_png_and_base64(tmp_path):
    data = _gdepth_bytes()
    i = data.find(b'GDepth:Data="') + len(b'GDepth:Data="')
    assert _err(tmp_path, data[:i] + b"AAAA" + data[i + 4 :]).field.startswith("GDepth:Data")  # not a PNG
    assert _err(tmp_path, data[:i] + b"A=AA" + data[i + 4 :]).field == "GDepth:Data (base64)"  # '=' inside


def test_oversized_frame_refused_before_decoding(tmp_path):
    fx = pf.apple_portrait(planes=("disparity",))
    data = bytearray(fx.data)
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, 60000, 60000)  # 3.6 gigapixels
    e = _err(tmp_path, bytes(data), read_apple_portrait)
    assert e.format == "Apple MPF JPEG" and "frame size" in e.field


def test_apple_bad_fields(tmp_path):
    fx = pf.apple_portrait(planes=("disparity", "matte"))
    e = _err(tmp_path, fx.data.replace(b"apdi:FloatMinValue", b"apdi:FloatMinValuf"), read_apple_portrait)
    assert e.field == "apdi:FloatMinValue" and "missing" in str(e)
    e = _err(tmp_path, fx.data[:-200], read_apple_portrait)  # truncated: last aux image cut
    assert e.field.startswith("MPF MPEntry 2") and not e.absent


def test_fallback_reports_each_reader(tmp_path):
    data = _gdepth_bytes()
    i = data.find(b'GDepth:Data="') + len(b'GDepth:Data="') + 10
    p = tmp_path / "bad.jpg"
    p.write_bytes(data[:i] + "é".encode() + data[i + 2 :])
    with pytest.raises(PhotoFormatError) as e:
        read_depth_photo(p)
    msg = str(e.value)
    assert "GDepth JPEG: GDepth:Data: is not base64" in msg and "Apple MPF JPEG: MPF index" in msg
    assert e.value.format == "GDepth JPEG" and not e.value.absent
    with pytest.raises(PhotoFormatError):  # depth-info does not hide it either
        read_depth_photo(p, require_depth=False)
    from toolchain.render.photo import read_depth

    with pytest.raises(PhotoFormatError, match="GDepth:Data"):
        read_depth(p)
    plain = tmp_path / "plain.jpg"
    cv2.imwrite(str(plain), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(PhotoFormatError) as e:
        read_depth_photo(plain)
    assert e.value.absent and "no GDepth:* properties" in str(e.value)
    d = read_depth_photo(plain, require_depth=False)
    assert d.format is None and d.image.shape == (8, 8, 3)


# ------------------------------------------------------------------- portrait depth-info


def _cli(argv, capsys):
    from toolchain.cli import main

    rc = main(argv)
    return rc, capsys.readouterr()


def test_depth_info_apple_fixture(tmp_path, capsys):
    fx = pf.apple_portrait(orientation=6)
    p = fx.write(tmp_path / "iphone.jpg")
    rc, out = _cli(["depth-info", str(p), "--json"], capsys)
    assert rc == 0
    info = json.loads(out.out)
    assert {"image", "depth", "disparity", "matte", "semantic_mattes", "orientation"} <= set(info)
    assert info["image"]["width"] == 96 and info["image"]["height"] == 128
    assert info["depth"] is None
    assert (info["disparity"]["width"], info["disparity"]["height"]) == (48, 64)
    assert info["disparity"]["min"] == pytest.approx(fx.truth["float_min"], abs=1e-5)
    assert (info["matte"]["width"], info["matte"]["height"]) == (48, 64)
    assert set(info["semantic_mattes"]) == {"hair", "skin", "teeth"}
    assert info["orientation"] == {"exif": 6, "name": "rotate 90 CW", "applied": True}
    rc, out = _cli(["depth-info", str(p), "--write", str(tmp_path / "w")], capsys)
    assert rc == 0 and "matte" in out.out
    w = tmp_path / "w"
    names = {q.name for q in w.iterdir()}
    assert {
        "image.png",
        "disparity.png",
        "matte.png",
        "hair_matte.png",
        "skin_matte.png",
        "teeth_matte.png",
        "info.json",
    } == names
    matte = cv2.imread(str(w / "matte.png"), cv2.IMREAD_UNCHANGED)
    assert matte.dtype == np.uint8 and np.abs(matte / 255.0 - fx.truth["matte"]).max() < 0.02
    disp = cv2.imread(str(w / "disparity.png"), cv2.IMREAD_UNCHANGED)
    meta = json.loads((w / "info.json").read_text())["disparity_png"]
    back = meta["min"] + (meta["max"] - meta["min"]) * disp / 65535.0
    assert disp.dtype == np.uint16 and np.abs(back - fx.truth["disparity"]).max() < 0.01
    assert np.array_equal(cv2.imread(str(w / "image.png"))[..., ::-1], read_apple_portrait(p).image)


def test_depth_info_gdepth_fixture_and_errors(tmp_path, capsys):
    fx = pf.gdepth()
    p = fx.write(tmp_path / "g.jpg")
    rc, out = _cli(["depth-info", str(p), "--json", "--write", str(tmp_path / "w")], capsys)
    info = json.loads(out.out)
    assert rc == 0 and info["format"] == "GDepth" and info["disparity"] is None and info["matte"] is None
    assert info["depth"]["source"] == "GDepth RangeInverse" and info["confidence"]["width"] == 96
    depth = cv2.imread(str(tmp_path / "w" / "depth.png"), cv2.IMREAD_UNCHANGED)
    assert depth.dtype == np.uint16
    assert np.abs(depth / 1000.0 - read_gdepth(p).depth_m).max() <= 0.0005 + 1e-6  # millimetres, what render reads
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(fx.data.replace(b'GDepth:Near="1.0"', b'GDepth:Near="9.0"'))
    rc, out = _cli(["depth-info", str(bad)], capsys)
    assert rc == 2 and "GDepth JPEG: GDepth:Near / GDepth:Far" in out.err and "Traceback" not in out.err


@pytest.mark.shared
def test_depth_info_real_files(shared_depth_photos, capsys):
    seen = {}
    for p in shared_depth_photos:
        rc, out = _cli(["depth-info", str(p), "--json"], capsys)
        assert rc == 0
        seen[p.name] = json.loads(out.out)
    a = seen["apple_portrait_with_disparity.jpg"]
    assert a["format"] == "Apple MPF" and (a["disparity"]["width"], a["disparity"]["height"]) == (576, 768)
    assert a["matte"] is None and a["semantic_mattes"] == {} and a["orientation"]["exif"] == 1
    for name in ("gdepth_lens_blur_bust.jpg", "gdepth_lens_blur_wood.jpg"):
        g = seen[name]
        assert g["format"] == "GDepth" and (g["depth"]["width"], g["depth"]["height"]) == (1536, 2048)
        assert g["disparity"] is None and g["matte"] is None and g["orientation"]["exif"] is None


def test_little_endian_exif_and_bad_orientation(tmp_path):
    fx = pf.apple_portrait(orientation=1, planes=("disparity",))
    le = b"Exif\x00\x00II\x2a\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    le += struct.pack("<HHIHH", 0x0112, 3, 1, 8, 0) + struct.pack("<I", 0)
    seg = b"\xff\xe1" + struct.pack(">H", len(le) + 2) + le
    n = len(pf.exif_segment(1))
    assert len(seg) == n  # same length: the MPF offsets stay valid
    d = read_apple_portrait(pf.FixturePhoto(fx.data[:2] + seg + fx.data[2 + n :]).write(tmp_path / "le.jpg"))
    assert d.orientation == 8 and d.image.shape == (96, 128, 3) and d.disparity.shape == (48, 64)
    bad = fx.data[:2] + pf.exif_segment(9) + fx.data[2 + n :]  # orientation 9 does not exist
    d = read_apple_portrait(pf.FixturePhoto(bad).write(tmp_path / "o9.jpg"))
    assert d.orientation is None and d.image.shape == (128, 96, 3) and "Orientation 9" in d.notes[0]
