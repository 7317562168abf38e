"""Readers for real photos that carry depth (and mattes) inside the file.

- Google Camera Lens Blur / GDepth JPEGs: XMP (standard + extended) GDepth:Format (RangeInverse or
  RangeLinear), Near, Far, Units, Mime and base64 Data (the depth image), GDepth:Confidence (optional),
  GImage:Data (the original, unblurred photo the depth belongs to) and GFocus:* focus tags. `depth_m`
  holds the decoded depth in Near/Far's units (metres for phones that write metric values, converted
  from mm when GDepth:Units says so; Lens Blur's are relative).
- iPhone portrait JPEGs: auxiliary images reached through the MPF (Multi-Picture Format) index, each
  an 8-bit JPEG with Apple XMP. Classified by what Apple writes:
  apdi:AuxiliaryImageType = disparity | depth (scaled to float by apdi:FloatMin/MaxValue and
  apdi:IntMin/MaxValue); the portrait effects matte (namespace http://ns.apple.com/portraitEffectsMatte/1.0/,
  apdi:AuxiliaryImageSubType = portraiteffectsmatte; ImageIO writes AuxiliaryImageType = depth for it,
  which is why it is classified before depth); semantic segmentation mattes (namespace
  http://ns.apple.com/semanticSegmentationMatte/1.0/, type names urn:com:apple:photo:2019:aux:semantic
  {hair,skin,teeth}matte and 2020 {glasses,sky}matte, or ImageIO's SemanticSegmentation{Hair,...}Matte).
- EXIF orientation (tag 0x0112) of the primary image is reported and applied to every plane (image,
  depth, disparity, mattes, confidence), so they stay registered and come out upright. Depth and mattes
  are stored in the primary's stored (sensor) orientation.

Every failure is a PhotoFormatError naming the format and the field (never a raw ValueError from
base64, struct or OpenCV). `read_depth_photo` tries each reader and, when none gives depth, reports
what each one found. Planes larger than MAX_PIXELS are refused before decoding (a flipped bit in a
JPEG/PNG size field must not allocate gigabytes).
Not for writing these formats (see photo_fixtures.py for test fixtures), and not for HEIC.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

import cv2
import numpy as np

from toolchain.depth.depth16 import decode_depth16, read_depth16
from toolchain.errors import InputError, PhotoFormatError

XMP_STD = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXT = b"http://ns.adobe.com/xmp/extension/\x00"
MAX_PIXELS = 50_000_000  # largest plane decoded (a 48 MP iPhone JPEG is 8064 x 6048 = 48.8 MP)

GDEPTH = "GDepth JPEG"
APPLE = "Apple MPF JPEG"
JPEG = "JPEG"

# Apple's names for semantic segmentation mattes, as they appear in auxiliary type strings
SEMANTIC_KINDS = ("hair", "skin", "teeth", "glasses", "sky")
_SEMANTIC_RE = re.compile(r"semantic(?:segmentation)?(hair|skin|teeth|glasses|sky)matte")
APPLE_MATTE_NS = "http://ns.apple.com/portraitEffectsMatte/1.0/"
APPLE_SEMANTIC_NS = "http://ns.apple.com/semanticSegmentationMatte/1.0/"


@dataclass
class DepthPhoto:
    """A photo with depth. At most one of depth_m / disparity is set (see `format`).

    Readers called with require_depth=True (the default) guarantee exactly one; `format` is None only
    for a photo read with require_depth=False that carries no depth.
    """

    image: np.ndarray  # uint8 H x W x 3 RGB, upright: the photo the depth belongs to
    format: str | None  # "RangeInverse", "RangeLinear", "disparity", "depth", "DEPTH16" or None
    depth_m: np.ndarray | None = None  # float32, z-depth (GDepth: Near/Far units; Apple depth: metres)
    disparity: np.ndarray | None = None  # float32, 1/m (Apple), at depth resolution
    near: float | None = None
    far: float | None = None
    focus: dict = field(default_factory=dict)  # GFocus:* tags (floats where numeric)
    matte: np.ndarray | None = None  # float32 [0, 1] portrait effects matte if present
    rendered: np.ndarray | None = None  # GDepth: the primary (already blurred) JPEG, RGB
    confidence: np.ndarray | None = None  # float32 [0, 1] (DEPTH16, GDepth:Confidence)
    path: str = ""
    semantic: dict = field(default_factory=dict)  # "hair"/"skin"/"teeth"/... -> float32 [0, 1] matte
    orientation: int | None = None  # EXIF orientation of the primary (1..8) as stored; None if absent
    units: str | None = None  # depth units: "m", "1/m" (disparity), GDepth:Units or "relative"
    aux: list = field(default_factory=list)  # Apple: one dict per MPF auxiliary image (kind, size, type)
    notes: list = field(default_factory=list)  # things worth saying that are not errors
    image_source: str = "primary JPEG"  # or "GImage:Data (original)"


# ------------------------------------------------------------------------------- error helpers


def _err(
    fmt: str, fld: str, what: str, where: str, fix: str = "the file may be damaged; re-export it", absent: bool = False
) -> PhotoFormatError:
    return PhotoFormatError(what, format=fmt, field=fld, where=where, fix=fix, absent=absent)


@contextmanager
def _field(fmt: str, fld: str, where: str):
    """Turn low-level failures while parsing one field into the project's error naming that field."""
    try:
        yield
    except PhotoFormatError:
        raise
    except (
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        OverflowError,
        ZeroDivisionError,
        struct.error,
        binascii.Error,
        UnicodeError,
        cv2.error,
        MemoryError,
    ) as exc:
        raise _err(fmt, fld, f"unreadable ({type(exc).__name__}: {str(exc)[:120]})", where) from None


def _unpack(fmt_s: str, buf: bytes, off: int, fmt: str, fld: str, where: str) -> tuple:
    n = struct.calcsize(fmt_s)
    if off < 0 or off + n > len(buf):
        raise _err(fmt, fld, f"offset {off} points outside its block ({len(buf)} bytes)", where)
    return struct.unpack_from(fmt_s, buf, off)


# ------------------------------------------------------------------------------- JPEG plumbing


def _segments(data: bytes, where: str, fmt: str = JPEG, part: str = "") -> list[tuple[int, int, bytes]]:
    """(marker, file offset of the marker, payload) of the JPEG header segments up to start-of-scan."""
    pre = f"{part} " if part else ""
    if data[:2] != b"\xff\xd8":
        raise _err(
            fmt,
            f"{pre}SOI marker",
            "not a JPEG file (no SOI marker)",
            where,
            fix="pass a .jpg photo" if not part else "the file is damaged; re-export it",
            absent=not part,
        )
    out, i = [], 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise _err(fmt, f"{pre}JPEG header", f"corrupt JPEG header at byte {i}", where)
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker == 0xD9:
            raise _err(fmt, f"{pre}JPEG header", "end of image before any image data", where)
        (ln,) = struct.unpack(">H", data[i + 2 : i + 4])
        if ln < 2 or i + 2 + ln > len(data):
            raise _err(
                fmt,
                f"{pre}JPEG segment 0x{marker:02X} length",
                f"segment at byte {i} runs past the end of the file",
                where,
                fix="the file is truncated or damaged; fetch it again",
            )
        out.append((marker, i, data[i + 4 : i + 2 + ln]))
        if marker == 0xDA:
            return out
        i += 2 + ln
    raise _err(
        fmt,
        f"{pre}JPEG header",
        "no image data (start-of-scan) before the end of the file",
        where,
        fix="the file is truncated; fetch it again",
    )


_SOF = {m for m in range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC}


def _check_jpeg_size(segs, fmt: str, fld: str, where: str) -> tuple[int, int]:
    """(height, width) from the SOF segment, refusing empty or implausibly large frames before decoding."""
    for m, _, p in segs:
        if m in _SOF:
            _, h, w = _unpack(">BHH", p, 0, fmt, f"{fld} JPEG frame header (SOF)", where)
            if h == 0 or w == 0 or h * w > MAX_PIXELS:
                raise _err(
                    fmt,
                    f"{fld} JPEG frame size",
                    f"{w} x {h} pixels is empty or over the {MAX_PIXELS / 1e6:.0f} MP this reader accepts",
                    where,
                )
            return h, w
    raise _err(fmt, f"{fld} JPEG frame header (SOF)", "missing", where)


def _decode(buf: bytes, fmt: str, fld: str, where: str, grey: bool = False) -> np.ndarray:
    """Decode an embedded JPEG or PNG (by its magic bytes), ignoring its own EXIF orientation."""
    if buf[:2] == b"\xff\xd8":
        _check_jpeg_size(_segments(buf, where, fmt, part=fld), fmt, fld, where)
        # IMREAD_UNCHANGED never applies EXIF orientation; GRAYSCALE needs IGNORE_ORIENTATION for that
        flags = (cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION) if grey else cv2.IMREAD_UNCHANGED
    elif buf[:8] == b"\x89PNG\r\n\x1a\n":
        w, h = _unpack(">II", buf, 16, fmt, f"{fld} PNG header (IHDR)", where)
        if h == 0 or w == 0 or h * w > MAX_PIXELS:
            raise _err(
                fmt,
                f"{fld} PNG size",
                f"{w} x {h} pixels is empty or over the {MAX_PIXELS / 1e6:.0f} MP this reader accepts",
                where,
            )
        flags = cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_UNCHANGED
    else:
        raise _err(fmt, fld, "is neither a JPEG nor a PNG image", where)
    with _field(fmt, fld, where):
        img = cv2.imdecode(np.frombuffer(buf, np.uint8), flags)
    if img is None or img.size == 0:
        raise _err(fmt, fld, "cannot be decoded as an image", where)
    return img


def _rgb(img: np.ndarray) -> np.ndarray:
    if img.dtype != np.uint8:
        img = (img.astype(np.float32) / float(np.iinfo(img.dtype).max) * 255 + 0.5).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _read(path: str | Path) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise InputError("depth photo not found", where=str(p), fix="check the path (PORTRAIT_DATA_DIR/depth_photos)")
    return p.read_bytes()


def _xmp(segs, fmt: str, where: str, part: str = "") -> tuple[str, str]:
    """(standard XMP, extended XMP reassembled by offset) as text.

    Extended chunks must agree on their total length and fit in it; when the standard XMP names its
    extension (xmpNote:HasExtendedXMP) only chunks with that GUID are used.
    """
    pre = f"{part} " if part else ""
    std = ""
    chunks: dict[str, dict[str, Any]] = {}
    for m, _, p in segs:
        if m != 0xE1:
            continue
        if p.startswith(XMP_STD):
            std += p[len(XMP_STD) :].decode("utf-8", "replace")
        elif p.startswith(XMP_EXT):
            body = p[len(XMP_EXT) :]
            total, off = _unpack(">II", body, 32, fmt, f"{pre}extended XMP chunk header", where)
            guid = body[:32].decode("ascii", "replace")
            data = body[40:]
            if off + len(data) > total:
                raise _err(
                    fmt,
                    f"{pre}extended XMP chunk offset",
                    f"chunk at {off} (+{len(data)} bytes) runs past the declared total of {total} bytes",
                    where,
                )
            c = chunks.setdefault(guid, {"total": total, "parts": {}})
            if c["total"] != total:
                raise _err(fmt, f"{pre}extended XMP chunk total", "chunks disagree on the total length", where)
            c["parts"][off] = data
    want = _tag(std, "xmpNote:HasExtendedXMP")
    ext = []
    for guid, c in chunks.items():
        if want is not None and guid != want:
            continue
        ext.append(b"".join(c["parts"][k] for k in sorted(c["parts"])).decode("utf-8", "replace"))
    return std, "".join(ext)


def _tag(xmp: str, name: str) -> str | None:
    """Value of an XMP property written either as attribute or as element."""
    m = re.search(rf'{re.escape(name)}\s*=\s*"([^"]*)"', xmp)
    if m:
        return m.group(1)
    m = re.search(rf"<{re.escape(name)}>([^<]*)</{re.escape(name)}>", xmp)
    return m.group(1).strip() if m else None


@overload
def _float_tag(xmp: str, name: str, fmt: str, where: str, required: Literal[True] = True) -> float: ...
@overload
def _float_tag(xmp: str, name: str, fmt: str, where: str, required: bool) -> float | None: ...
def _float_tag(xmp: str, name: str, fmt: str, where: str, required: bool = True) -> float | None:
    v = _tag(xmp, name)
    if v is None:
        if required:
            raise _err(fmt, name, "missing", where, fix="the XMP is incomplete")
        return None
    try:
        f = float(v)
    except ValueError:
        raise _err(fmt, name, f"{v[:40]!r} is not a number", where) from None
    if not math.isfinite(f):
        raise _err(fmt, name, f"{v[:40]!r} is not a finite number", where)
    return f


def _b64(text: str, fmt: str, fld: str, where: str) -> bytes:
    s = re.sub(r"\s+", "", text)
    if not s.isascii():
        raise _err(fmt, fld, "is not base64 (it holds non-ASCII characters)", where)
    with _field(fmt, f"{fld} (base64)", where):
        return base64.b64decode(s, validate=True)


# ------------------------------------------------------------------------------- EXIF orientation


def _exif_orientation(segs, fmt: str, where: str, notes: list) -> int | None:
    """EXIF orientation tag (0x0112) of IFD0, or None. A damaged EXIF block is noted, not fatal:
    the planes stay registered to each other whatever orientation is used."""
    for m, _, p in segs:
        if m != 0xE1 or not p.startswith(b"Exif\x00\x00"):
            continue
        t = p[6:]
        try:
            bo = {b"MM": ">", b"II": "<"}.get(t[:2])
            if bo is None:
                raise _err(fmt, "EXIF byte order", "is neither MM nor II", where)
            (ifd,) = _unpack(bo + "I", t, 4, fmt, "EXIF IFD0 offset", where)
            (n,) = _unpack(bo + "H", t, ifd, fmt, "EXIF IFD0 entry count", where)
            for k in range(n):
                tag, typ, cnt = _unpack(bo + "HHI", t, ifd + 2 + 12 * k, fmt, "EXIF IFD0 entry", where)
                if tag == 0x0112:
                    (v,) = _unpack(bo + "H", t, ifd + 2 + 12 * k + 8, fmt, "EXIF Orientation", where)
                    if typ != 3 or cnt != 1 or not 1 <= v <= 8:
                        notes.append(f"EXIF Orientation {v} (type {typ}, count {cnt}) is invalid: not applied")
                        return None
                    return int(v)
        except PhotoFormatError as e:
            notes.append(f"EXIF block unreadable ({e.field}): orientation not applied")
        return None
    return None


@overload
def apply_orientation(img: np.ndarray, orientation: int | None) -> np.ndarray: ...
@overload
def apply_orientation(img: None, orientation: int | None) -> None: ...
@overload
def apply_orientation(img: np.ndarray | None, orientation: int | None) -> np.ndarray | None: ...
def apply_orientation(img: np.ndarray | None, orientation: int | None) -> np.ndarray | None:
    """Turn a plane stored in sensor orientation upright, as EXIF orientation 1..8 says."""
    if img is None or orientation in (None, 1):
        return img
    o = orientation
    if o == 2:
        out = img[:, ::-1]
    elif o == 3:
        out = img[::-1, ::-1]
    elif o == 4:
        out = img[::-1, :]
    elif o == 5:
        out = np.swapaxes(img, 0, 1)
    elif o == 6:
        out = np.rot90(img, -1)
    elif o == 7:
        out = np.swapaxes(img[::-1, ::-1], 0, 1)  # transverse
    elif o == 8:
        out = np.rot90(img, 1)
    else:
        return img
    return np.ascontiguousarray(out)


# ------------------------------------------------------------------------------- GDepth


def gdepth_to_depth(dn: np.ndarray, fmt: str, near: float, far: float) -> np.ndarray:
    """Decode normalized GDepth values dn in [0, 1] to depth (Near/Far units)."""
    dn = dn.astype(np.float64)
    if fmt == "RangeLinear":
        d = dn * (far - near) + near
    elif fmt == "RangeInverse":
        d = far * near / (far - dn * (far - near))
    else:
        raise InputError(
            f"unknown GDepth:Format {fmt!r}", where="gdepth_to_depth", fix="expected RangeInverse or RangeLinear"
        )
    return d.astype(np.float32)


def _normalized(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3:
        img = img[..., 0]
    if img.dtype.kind not in "ui":
        raise TypeError(f"pixel type {img.dtype}")
    return img.astype(np.float64) / float(np.iinfo(img.dtype).max)


def read_gdepth(path: str | Path) -> DepthPhoto:
    """Read a Google Camera Lens Blur (GDepth) JPEG. depth_m is at the depth image's resolution."""
    where, f = str(path), GDEPTH
    data = _read(path)
    segs = _segments(data, where, f)
    std, ext = _xmp(segs, f, where)
    xmp = std + ext
    if "GDepth:" not in xmp:
        raise _err(
            f,
            "GDepth XMP",
            "no GDepth depth map in this JPEG (no GDepth:* properties)",
            where,
            fix="use a Google Camera Lens Blur photo",
            absent=True,
        )
    form = _tag(xmp, "GDepth:Format")
    if form is None:
        raise _err(f, "GDepth:Format", "missing", where, fix="the XMP is incomplete")
    if form not in ("RangeInverse", "RangeLinear"):
        raise _err(f, "GDepth:Format", f"{form[:40]!r} is unknown (expected RangeInverse or RangeLinear)", where)
    b64 = _tag(ext, "GDepth:Data") or _tag(std, "GDepth:Data")
    if b64 is None:
        raise _err(
            f,
            "GDepth:Data",
            "missing (the depth image is not in the standard or extended XMP)",
            where,
            fix="the extended XMP may be truncated; fetch the file again",
        )
    near = _float_tag(xmp, "GDepth:Near", f, where)
    far = _float_tag(xmp, "GDepth:Far", f, where)
    if not (0.0 <= near < far) or (form == "RangeInverse" and near <= 0.0):
        raise _err(f, "GDepth:Near / GDepth:Far", f"Near {near:g}, Far {far:g} do not satisfy 0 < Near < Far", where)
    units = _tag(xmp, "GDepth:Units")
    notes: list = []
    orientation = _exif_orientation(segs, f, where, notes)

    dimg = _decode(_b64(b64, f, "GDepth:Data", where), f, "GDepth:Data", where)
    with _field(f, "GDepth:Data pixels", where):
        depth = gdepth_to_depth(_normalized(dimg), form, near, far)
    scale = 1e-3 if (units or "").strip().lower() == "mm" else 1.0
    if scale != 1.0:
        depth, near, far = depth * np.float32(scale), near * scale, far * scale
    confidence = None
    cb64 = _tag(ext, "GDepth:Confidence") or _tag(std, "GDepth:Confidence")
    if cb64 is not None:
        cimg = _decode(_b64(cb64, f, "GDepth:Confidence", where), f, "GDepth:Confidence", where)
        with _field(f, "GDepth:Confidence pixels", where):
            confidence = _normalized(cimg).astype(np.float32)
        if confidence.shape != depth.shape:
            raise _err(
                f,
                "GDepth:Confidence",
                f"size {confidence.shape[1]}x{confidence.shape[0]} differs "
                f"from the depth map's {depth.shape[1]}x{depth.shape[0]}",
                where,
            )
    rendered = _rgb(_decode(data, f, "primary image", where))
    gimg = _tag(ext, "GImage:Data") or _tag(std, "GImage:Data")
    image = _rgb(_decode(_b64(gimg, f, "GImage:Data", where), f, "GImage:Data", where)) if gimg else rendered
    if gimg is None:
        notes.append("no GImage:Data: the image is the primary (already lens-blurred) JPEG")
    focus = {}
    for k, v in re.findall(r'GFocus:(\w+)\s*=\s*"([^"]*)"', xmp):
        try:
            focus[k] = float(v)
        except ValueError:
            focus[k] = v
    o = orientation
    return DepthPhoto(
        image=apply_orientation(image, o),
        format=form,
        depth_m=apply_orientation(depth, o),
        near=near,
        far=far,
        focus=focus,
        rendered=apply_orientation(rendered, o),
        confidence=apply_orientation(confidence, o),
        path=where,
        orientation=orientation,
        units=("m" if scale != 1.0 else (units or "relative (Near/Far units)")),
        notes=notes,
        image_source="GImage:Data (original)" if gimg else "primary JPEG (lens-blurred)",
    )


# ------------------------------------------------------------------------------- Apple MPF


def _mpf_images(data: bytes, segs, where: str) -> list[tuple[int, bytes]] | None:
    """(index, bytes) of the images listed in the MPF index (APP2 'MPF\\0'), excluding the primary;
    None when the file has no MPF index."""
    f = APPLE
    mpf = next(((pos, p) for m, pos, p in segs if m == 0xE2 and p[:4] == b"MPF\x00"), None)
    if mpf is None:
        return None
    pos, p = mpf
    base = pos + 8  # offsets in the index count from its TIFF header, after 'MPF\0'
    t = p[4:]
    bo = {b"MM": ">", b"II": "<"}.get(t[:2])
    if bo is None:
        raise _err(f, "MPF TIFF header", "byte order is neither MM nor II", where)
    (ifd,) = _unpack(bo + "I", t, 4, f, "MPF IFD offset", where)
    (n,) = _unpack(bo + "H", t, ifd, f, "MPF IFD entry count", where)
    entries_off: int | None = None
    entries_cnt = 0
    for k in range(n):
        tag, typ, cnt, val = _unpack(bo + "HHII", t, ifd + 2 + 12 * k, f, "MPF IFD entry", where)
        if tag == 0xB002:
            entries_off, entries_cnt = val, cnt // 16
    out = []
    if entries_off is None:
        raise _err(f, "MPF MPEntry (0xB002)", "the MPF index lists no images", where)
    if entries_cnt > 64:
        raise _err(f, "MPF MPEntry (0xB002)", f"{entries_cnt} entries is implausible", where)
    for e in range(entries_cnt):
        attr, size, off, _, _ = _unpack(bo + "IIIHH", t, entries_off + 16 * e, f, f"MPF MPEntry {e}", where)
        if off == 0:
            continue  # the primary image
        start = base + off
        if start + size > len(data) or size < 4 or data[start : start + 2] != b"\xff\xd8":
            raise _err(
                f,
                f"MPF MPEntry {e} offset/size",
                f"image {e} ({size} bytes at {start}) points outside the file or not at a JPEG",
                where,
                fix="the file is truncated or damaged; fetch it again",
            )
        out.append((e, data[start : start + size]))
    return out


def _classify(xmp: str) -> tuple[str | None, str, str]:
    """(kind, apdi:AuxiliaryImageType, apdi:AuxiliaryImageSubType) of an Apple auxiliary image.

    kind: "disparity", "depth", "matte" (portrait effects matte), "semantic:<hair|skin|...>", "semantic:?"
    (a semantic matte whose type is not named), "hdrgainmap", or None (not an Apple auxiliary image).
    """
    typ = _tag(xmp, "apdi:AuxiliaryImageType") or ""
    sub = _tag(xmp, "apdi:AuxiliaryImageSubType") or ""
    names = f"{typ} {sub}".lower()
    m = _SEMANTIC_RE.search(names.replace(" ", ""))
    if m:
        return f"semantic:{m.group(1)}", typ, sub
    if "portraiteffectsmatte" in names or APPLE_MATTE_NS.lower() in xmp.lower():
        return "matte", typ, sub
    if APPLE_SEMANTIC_NS.lower() in xmp.lower():
        m = _SEMANTIC_RE.search(xmp.lower())
        return (f"semantic:{m.group(1)}" if m else "semantic:?"), typ, sub
    if "hdrgainmap" in names or "hdrgainmap" in xmp.lower():
        return "hdrgainmap", typ, sub
    t = typ.strip().lower()
    if t in ("disparity", "depth"):
        return t, typ, sub
    return None, typ, sub


def read_apple_portrait(path: str | Path, *, require_depth: bool = True) -> DepthPhoto:
    """Read an iPhone portrait JPEG: image, disparity (1/m) or depth (m), portrait matte, semantic mattes.

    With require_depth=False a photo without a disparity/depth auxiliary image is returned too
    (format None), for `portrait depth-info`.
    """
    where, f = str(path), APPLE
    data = _read(path)
    segs = _segments(data, where, f)
    notes: list = []
    orientation = _exif_orientation(segs, f, where, notes)
    auxes = _mpf_images(data, segs, where)
    image = _rgb(_decode(data, f, "primary image", where))
    ph, pw = image.shape[:2]
    planes: dict = {}
    aux_info = []
    for idx, aux in auxes or []:
        part = f"MPF image {idx}"
        s = _segments(aux, where, f, part=part)
        std, ext = _xmp(s, f, where, part=part)
        xmp = std + ext
        kind, typ, sub = _classify(xmp)
        info: dict[str, Any] = {"index": idx, "kind": kind, "type": typ or None, "subtype": sub or None}
        aux_info.append(info)
        if kind is None or kind == "hdrgainmap" or kind in planes:
            if kind in planes:
                notes.append(f"{part}: a second {kind} image, ignored")
            continue
        h, w = _check_jpeg_size(s, f, part, where)
        if h > max(ph, pw) or w > max(ph, pw):
            raise _err(f, f"{part} JPEG frame size", f"{w}x{h} is larger than the primary image ({pw}x{ph})", where)
        img = _decode(aux, f, part, where, grey=True).astype(np.float32)
        info.update(stored_width=int(img.shape[1]), stored_height=int(img.shape[0]))
        if kind in ("disparity", "depth"):
            lo = _float_tag(xmp, "apdi:FloatMinValue", f, where)
            hi = _float_tag(xmp, "apdi:FloatMaxValue", f, where)
            ilo = _float_tag(xmp, "apdi:IntMinValue", f, where, required=False)
            ihi = _float_tag(xmp, "apdi:IntMaxValue", f, where, required=False)
            ilo, ihi = (0.0 if ilo is None else ilo), (255.0 if ihi is None else ihi)
            if ihi <= ilo:
                raise _err(f, "apdi:IntMinValue / apdi:IntMaxValue", f"{ilo:g} .. {ihi:g} is empty", where)
            if hi < lo:
                raise _err(f, "apdi:FloatMinValue / apdi:FloatMaxValue", f"{lo:g} .. {hi:g} is reversed", where)
            planes[kind] = (lo + (img - ilo) / (ihi - ilo) * (hi - lo)).astype(np.float32)
            info.update(float_min=lo, float_max=hi)
        else:
            planes[kind] = img / 255.0
    o = orientation
    disparity, depth = planes.get("disparity"), planes.get("depth")
    if disparity is not None and depth is not None:
        notes.append("the file carries both disparity and depth: disparity is used")
        depth = None
    if disparity is None and depth is None and require_depth:
        listed = ", ".join(f"image {a['index']}: {a['kind'] or 'no Apple auxiliary XMP'}" for a in aux_info)
        raise _err(
            f,
            "MPF index" if auxes is None else "apdi:AuxiliaryImageType",
            "no Apple disparity or depth auxiliary image "
            + ("(no MPF index)" if auxes is None else f"(MPF index: {listed or 'no auxiliary images'})"),
            where,
            fix="use an iPhone portrait photo saved as JPEG with depth",
            absent=True,
        )
    fmt_name, near, far, units = None, None, None, None
    if disparity is not None:
        fmt_name, units = "disparity", "1/m"
        dmax, dmin = float(disparity.max()), float(disparity.min())
        near = 1.0 / dmax if dmax > 0 else None
        far = 1.0 / dmin if dmin > 0 else None
    elif depth is not None:
        fmt_name, units = "depth", "m"
        near, far = float(depth.min()), float(depth.max())
    semantic = {k.split(":", 1)[1]: apply_orientation(v, o) for k, v in planes.items() if k.startswith("semantic:")}
    return DepthPhoto(
        image=apply_orientation(image, o),
        format=fmt_name,
        disparity=apply_orientation(disparity, o),
        depth_m=apply_orientation(depth, o),
        near=near,
        far=far,
        matte=apply_orientation(planes.get("matte"), o),
        path=where,
        semantic=semantic,
        orientation=orientation,
        units=units,
        aux=aux_info,
        notes=notes,
    )


# ------------------------------------------------------------------------------- any photo


def read_depth_photo(path: str | Path, *, require_depth: bool = True) -> DepthPhoto:
    """Read a GDepth or an iPhone portrait JPEG, whichever it is.

    Each reader is tried in turn. When none gives depth, the error lists what every reader found
    (e.g. "GDepth JPEG: GDepth:Data: is not base64 ...; Apple MPF JPEG: no MPF index"), so a damaged
    GDepth file is never reported as "no Apple disparity". With require_depth=False a plain JPEG is
    returned with format None (image, orientation, mattes if any) unless a reader found its format damaged.
    """
    p = Path(path)
    _read(p)  # not found -> InputError before anything else
    found: list[PhotoFormatError] = []
    try:
        return read_gdepth(p)
    except PhotoFormatError as e:
        found.append(e)
    try:
        photo = read_apple_portrait(p, require_depth=require_depth)
    except PhotoFormatError as e:
        found.append(e)
    else:
        damaged = [e for e in found if not e.absent]
        if not damaged or photo.format is not None:
            photo.notes += [f"{e.format}: {e.what}" for e in damaged]
            return photo
    lines = [f"  {e.what}" for e in found]
    broken = [e for e in found if not e.absent]
    first = broken[0] if broken else found[0]
    raise PhotoFormatError(
        (
            "no readable depth in this photo; what each reader found:\n"
            if require_depth
            else "this photo cannot be read; what each reader found:\n"
        )
        + "\n".join(lines),
        format=first.format if broken else "depth photo",
        field=first.field if broken else "GDepth XMP / MPF index",
        where=str(p),
        absent=not broken,
        fix=first.fix
        if broken
        else "use a Google Camera Lens Blur (GDepth) JPEG or an iPhone portrait JPEG "
        "with depth, or pass depth as .npy (metres) / 16-bit .png (mm)",
    )


def read_depth16_photo(path: str | Path, width: int, height: int, stride_bytes: int | None = None) -> DepthPhoto:
    """A raw DEPTH16 file as a DepthPhoto (depth_m in metres, 0 range -> NaN; image is grey)."""
    rng, conf = decode_depth16(read_depth16(path, width, height, stride_bytes))
    depth = np.where(rng > 0, rng.astype(np.float32) / 1000.0, np.nan).astype(np.float32)
    grey = np.clip(np.nan_to_num(depth) / 8.191 * 255, 0, 255).astype(np.uint8)
    return DepthPhoto(
        image=np.stack([grey] * 3, -1),
        format="DEPTH16",
        depth_m=depth,
        confidence=conf,
        near=float(np.nanmin(depth)) if np.isfinite(depth).any() else None,
        far=float(np.nanmax(depth)) if np.isfinite(depth).any() else None,
        path=str(path),
        units="m",
    )
