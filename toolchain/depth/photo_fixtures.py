"""Small synthetic depth photos in the byte layouts phones write, with their ground truth.

For tests, the fuzz test and trying `portrait depth-info` without real photos:
- `apple_portrait(...)`: an iPhone-style portrait JPEG. Primary JPEG with an EXIF block (Orientation),
  an APP2 MPF index (CIPA DC-007: MPFVersion, NumberOfImages, MPEntry) and, after the primary, one
  auxiliary 8-bit JPEG per plane, each with Apple XMP as ImageIO writes it in JPEG:
  disparity: depthData + apdi:AuxiliaryImageType "disparity", apdi:Float/IntMin/MaxValue,
  apdi:NativeFormat 'hdis', StoredFormat 'L008' (as in the real iPhone file in ../shared);
  portrait effects matte: namespace http://ns.apple.com/portraitEffectsMatte/1.0/
  (PortraitEffectsMatteVersion 65537) with apdi:AuxiliaryImageType "depth" and apdi:AuxiliaryImageSubType
  "portraiteffectsmatte" (what ImageIO writes; the old reader mistook it for depth and lost the matte);
  semantic mattes: namespace http://ns.apple.com/semanticSegmentationMatte/1.0/
  (SemanticSegmentationMatteVersion 65536) with Apple's type names urn:com:apple:photo:2019:aux:
  semantic{hair,skin,teeth}matte in apdi:AuxiliaryImageSubType, laid out like the matte (the exact JPEG
  form of a semantic matte was not checked against a real iPhone JPEG; the reader also accepts the URN in
  AuxiliaryImageType and ImageIO's SemanticSegmentation*Matte names).
- `gdepth(...)`: a Google Camera Lens Blur JPEG: standard XMP with GDepth:Format/Near/Far/Mime, GFocus:*
  and xmpNote:HasExtendedXMP, and extended XMP (GUID = MD5 of the packet, split into APP1 chunks with
  offsets) holding GDepth:Data (PNG), optional GDepth:Confidence (PNG) and GImage:Data (the original).
Planes are stored in sensor orientation (the inverse of the EXIF orientation), so a reader that applies
the orientation gets the upright truth back. Not for writing real photos: no ICC, no maker notes.

`python -m toolchain.depth.photo_fixtures OUTDIR` writes apple_portrait_fixture.jpg and gdepth_fixture.jpg.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from toolchain.depth.readers import apply_orientation

MPF_PRIMARY_ATTR = 0x20030000  # representative image, baseline MP primary image
INVERSE_ORIENTATION = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}


@dataclass
class FixturePhoto:
    data: bytes
    truth: dict = field(default_factory=dict)  # upright planes and scalars the reader should return

    def write(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_bytes(self.data)
        return p


# ------------------------------------------------------------------------------- scene


def scene(width: int = 96, height: int = 128, seed: int = 0) -> dict:
    """Upright planes of a tiny portrait: RGB, subject mask, hair/skin/teeth masks, depth in metres."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, w, h = width / 2, width, height
    head = ((xx - cx) / (0.2 * w)) ** 2 + ((yy - 0.33 * h) / (0.16 * h)) ** 2 <= 1
    body = ((xx - cx) / (0.38 * w)) ** 2 + ((yy - 1.0 * h) / (0.42 * h)) ** 2 <= 1
    subject = head | body
    hair = head & (yy < 0.27 * h)
    skin = head & ~hair
    teeth = skin & (np.abs(xx - cx) < 0.06 * w) & (np.abs(yy - 0.41 * h) < 0.02 * h)
    skin &= ~teeth
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[:] = (40, 120, 200)
    rgb[yy > 0.6 * h] = (90, 160, 60)
    rgb[body] = (200, 60, 50)
    rgb[skin | teeth] = (225, 180, 150)
    rgb[hair] = (60, 40, 20)
    rgb = np.clip(rgb.astype(np.int16) + rng.integers(-6, 7, rgb.shape), 0, 255).astype(np.uint8)
    depth = np.where(subject, 1.2 + 0.002 * (yy - 0.3 * h), 4.0 + 0.02 * yy).astype(np.float32)
    return {"rgb": rgb, "subject": subject, "hair": hair, "skin": skin, "teeth": teeth, "depth_m": depth}


def _stored(plane: np.ndarray, orientation: int) -> np.ndarray:
    return apply_orientation(plane, INVERSE_ORIENTATION[orientation])


def _encode_jpeg(img: np.ndarray, quality: int = 95) -> bytes:
    arr = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(arr), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def _encode_png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img))
    assert ok
    return buf.tobytes()


def _segment(marker: int, payload: bytes) -> bytes:
    assert len(payload) + 2 <= 0xFFFF, "JPEG segment too long"
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _with_segments(jpeg: bytes, segments: list[bytes]) -> bytes:
    """Insert header segments right after SOI (before the encoder's own APP0)."""
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def exif_segment(orientation: int) -> bytes:
    """APP1 Exif with IFD0 holding only Orientation (SHORT), big-endian like an iPhone."""
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1)
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    return _segment(0xE1, b"Exif\x00\x00" + tiff)


def xmp_segment(xmp: str) -> bytes:
    return _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + xmp.encode("utf-8"))


def _xmp_packet(namespaces: dict, body: str, attrs: str = "") -> str:
    ns = "".join(f'\n            xmlns:{k}="{v}"' for k, v in namespaces.items())
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 6.0.0">\n'
        '   <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        f'      <rdf:Description rdf:about=""{ns}{attrs}>\n{body}'
        "      </rdf:Description>\n   </rdf:RDF>\n</x:xmpmeta>\n"
    )


def _props(pairs: list[tuple[str, object]]) -> str:
    return "".join(f"         <{k}>{v}</{k}>\n" for k, v in pairs)


APDI = "http://ns.apple.com/pixeldatainfo/1.0/"


def apple_disparity_xmp(lo: float, hi: float) -> str:
    return _xmp_packet(
        {"depthData": "http://ns.apple.com/depthData/1.0/", "apdi": APDI},
        _props(
            [
                ("depthData:DepthDataVersion", 65538),
                ("depthData:Quality", "high"),
                ("depthData:Accuracy", "relative"),
                ("depthData:Filtered", "True"),
                ("depthData:PixelSize", "0.001000"),
                ("apdi:IntMaxValue", 255),
                ("apdi:FloatMaxValue", f"{hi:.6f}"),
                ("apdi:IntMinValue", 0),
                ("apdi:NativeFormat", 1751411059),
                ("apdi:FloatMinValue", f"{lo:.6f}"),
                ("apdi:StoredFormat", 1278226488),
                ("apdi:AuxiliaryImageType", "disparity"),
            ]
        ),
    )


def apple_matte_xmp() -> str:
    return _xmp_packet(
        {"apdi": APDI, "portraitEffectsMatte": "http://ns.apple.com/portraitEffectsMatte/1.0/"},
        _props(
            [
                ("apdi:AuxiliaryImageSubType", "portraiteffectsmatte"),
                ("apdi:NativeFormat", 1278226488),
                ("apdi:AuxiliaryImageType", "depth"),
                ("apdi:StoredFormat", 1278226488),
                ("portraitEffectsMatte:PortraitEffectsMatteVersion", 65537),
            ]
        ),
    )


SEMANTIC_URN = {
    "hair": "urn:com:apple:photo:2019:aux:semantichairmatte",
    "skin": "urn:com:apple:photo:2019:aux:semanticskinmatte",
    "teeth": "urn:com:apple:photo:2019:aux:semanticteethmatte",
    "glasses": "urn:com:apple:photo:2020:aux:semanticglassesmatte",
    "sky": "urn:com:apple:photo:2020:aux:semanticskymatte",
}


def apple_semantic_xmp(kind: str) -> str:
    return _xmp_packet(
        {"apdi": APDI, "semanticSegmentationMatte": "http://ns.apple.com/semanticSegmentationMatte/1.0/"},
        _props(
            [
                ("apdi:AuxiliaryImageSubType", SEMANTIC_URN[kind]),
                ("apdi:NativeFormat", 1278226488),
                ("apdi:AuxiliaryImageType", "depth"),
                ("apdi:StoredFormat", 1278226488),
                ("semanticSegmentationMatte:SemanticSegmentationMatteVersion", 65536),
            ]
        ),
    )


def mpf_segment(sizes: list[int], offsets: list[int]) -> bytes:
    """APP2 MPF index, big-endian. offsets count from the TIFF header (the primary's is 0)."""
    n = len(sizes)
    ifd = struct.pack(">H", 3)
    ifd += struct.pack(">HHI", 0xB000, 7, 4) + b"0100"
    ifd += struct.pack(">HHII", 0xB001, 4, 1, n)
    ifd += struct.pack(">HHII", 0xB002, 7, 16 * n, 8 + 2 + 3 * 12 + 4)
    ifd += struct.pack(">I", 0)
    entries = b"".join(
        struct.pack(">IIIHH", MPF_PRIMARY_ATTR if k == 0 else 0, s, o, 0, 0)
        for k, (s, o) in enumerate(zip(sizes, offsets))
    )
    return _segment(0xE2, b"MPF\x00" + b"MM\x00\x2a" + struct.pack(">I", 8) + ifd + entries)


def assemble_mpf(primary: bytes, pre_segments: list[bytes], aux: list[bytes]) -> bytes:
    """Primary JPEG + its header segments + MPF index + auxiliary JPEGs appended after it."""
    mpf_pos = 2 + sum(len(s) for s in pre_segments)
    n = 1 + len(aux)
    mpf_len = len(mpf_segment([0] * n, [0] * n))
    primary_len = len(primary) + sum(len(s) for s in pre_segments) + mpf_len
    base = mpf_pos + 8
    sizes, offsets, pos = [primary_len], [0], primary_len
    for a in aux:
        sizes.append(len(a))
        offsets.append(pos - base)
        pos += len(a)
    head = _with_segments(primary, pre_segments + [mpf_segment(sizes, offsets)])
    assert len(head) == primary_len
    return head + b"".join(aux)


def apple_portrait(
    width: int = 96,
    height: int = 128,
    *,
    orientation: int = 1,
    planes: tuple = ("disparity", "matte", "hair", "skin", "teeth"),
    aux_scale: int = 2,
    seed: int = 0,
    quality: int = 95,
) -> FixturePhoto:
    """An iPhone-style portrait JPEG (see module docstring). Aux planes at 1/aux_scale resolution."""
    s = scene(width, height, seed)
    aw, ah = width // aux_scale, height // aux_scale
    small = lambda m: cv2.resize(m.astype(np.float32), (aw, ah), interpolation=cv2.INTER_AREA)  # noqa: E731
    disp = 1.0 / small(s["depth_m"])
    lo, hi = float(disp.min()), float(disp.max())
    truth = {
        "rgb": s["rgb"],
        "orientation": orientation,
        "float_min": lo,
        "float_max": hi,
        "disparity": disp,
        "matte": small(s["subject"]),
        **{k: small(s[k]) for k in ("hair", "skin", "teeth")},
    }
    aux = []
    for p in planes:
        if p == "disparity":
            q = np.rint((disp - lo) / (hi - lo) * 255).astype(np.uint8)
            aux.append(
                _with_segments(_encode_jpeg(_stored(q, orientation), 100), [xmp_segment(apple_disparity_xmp(lo, hi))])
            )
        else:
            q = np.rint(truth[p] * 255).astype(np.uint8)
            x = apple_matte_xmp() if p == "matte" else apple_semantic_xmp(p)
            aux.append(_with_segments(_encode_jpeg(_stored(q, orientation), 100), [xmp_segment(x)]))
    primary = _encode_jpeg(_stored(s["rgb"], orientation), quality)
    data = assemble_mpf(primary, [exif_segment(orientation)], aux)
    truth["planes"] = tuple(planes)
    return FixturePhoto(data, truth)


# ------------------------------------------------------------------------------- GDepth


def gdepth_encode(depth: np.ndarray, fmt: str, near: float, far: float) -> np.ndarray:
    """Inverse of readers.gdepth_to_depth: normalized dn in [0, 1]."""
    d = np.clip(depth.astype(np.float64), near, far)
    if fmt == "RangeLinear":
        return (d - near) / (far - near)
    return far * (d - near) / (d * (far - near))


def gdepth(
    width: int = 96,
    height: int = 128,
    *,
    fmt: str = "RangeInverse",
    near: float = 1.0,
    far: float = 6.0,
    orientation: int = 1,
    confidence: bool = True,
    original: bool = True,
    units: str | None = None,
    chunk: int = 4000,
    seed: int = 0,
    quality: int = 95,
) -> FixturePhoto:
    """A Lens Blur style GDepth JPEG (see module docstring); extended XMP split into `chunk`-byte chunks."""
    s = scene(width, height, seed)
    dn = gdepth_encode(s["depth_m"], fmt, near, far)
    dq = np.rint(dn * 255).astype(np.uint8)
    conf = np.where(s["subject"], 255, 128).astype(np.uint8)
    blurred = cv2.GaussianBlur(s["rgb"], (0, 0), 2.0)
    ext_attrs = {}
    if original:
        ext_attrs["GImage:Data"] = base64.b64encode(_encode_jpeg(_stored(s["rgb"], orientation), quality)).decode()
    ext_attrs["GDepth:Data"] = base64.b64encode(_encode_png(_stored(dq, orientation))).decode()
    if confidence:
        ext_attrs["GDepth:Confidence"] = base64.b64encode(_encode_png(_stored(conf, orientation))).decode()
    ext = _xmp_packet(
        {"GImage": "http://ns.google.com/photos/1.0/image/", "GDepth": "http://ns.google.com/photos/1.0/depthmap/"},
        "",
        "".join(f'\n      {k}="{v}"' for k, v in ext_attrs.items()),
    )
    ext_b = ext.encode("utf-8")
    guid = hashlib.md5(ext_b).hexdigest().upper()
    std_attrs = {
        "GFocus:BlurAtInfinity": "0.02",
        "GFocus:FocalDistance": "1.2",
        "GFocus:FocalPointX": "0.5",
        "GFocus:FocalPointY": "0.4",
        "GDepth:Format": fmt,
        "GDepth:Near": repr(near),
        "GDepth:Far": repr(far),
        "GDepth:Mime": "image/png",
    }
    if units:
        std_attrs["GDepth:Units"] = units
    if original:
        std_attrs["GImage:Mime"] = "image/jpeg"
    if confidence:
        std_attrs["GDepth:ConfidenceMime"] = "image/png"
    std_attrs["xmpNote:HasExtendedXMP"] = guid
    std = _xmp_packet(
        {
            "GFocus": "http://ns.google.com/photos/1.0/focus/",
            "GImage": "http://ns.google.com/photos/1.0/image/",
            "GDepth": "http://ns.google.com/photos/1.0/depthmap/",
            "xmpNote": "http://ns.adobe.com/xmp/note/",
        },
        "",
        "".join(f'\n      {k}="{v}"' for k, v in std_attrs.items()),
    )
    segs = [exif_segment(orientation), xmp_segment(std)]
    for off in range(0, len(ext_b), chunk):
        body = guid.encode() + struct.pack(">II", len(ext_b), off) + ext_b[off : off + chunk]
        segs.append(_segment(0xE1, b"http://ns.adobe.com/xmp/extension/\x00" + body))
    data = _with_segments(_encode_jpeg(_stored(blurred, orientation), quality), segs)
    scale = 1e-3 if units == "mm" else 1.0
    truth = {
        "rgb": s["rgb"],
        "rendered": blurred,
        "orientation": orientation,
        "format": fmt,
        "near": near * scale,
        "far": far * scale,
        "depth_m": s["depth_m"] * scale,
        "confidence": conf / 255.0 if confidence else None,
    }
    return FixturePhoto(data, truth)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else ".")
    out.mkdir(parents=True, exist_ok=True)
    a = apple_portrait(384, 512, orientation=6).write(out / "apple_portrait_fixture.jpg")
    g = gdepth(384, 512).write(out / "gdepth_fixture.jpg")
    print(a)
    print(g)
    return 0


if __name__ == "__main__":
    sys.exit(main())
