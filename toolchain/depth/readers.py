"""Readers for real photos that carry depth inside the file.

- Google Camera Lens Blur / GDepth JPEGs: XMP (standard + extended) GDepth:Format (RangeInverse or
  RangeLinear), Near, Far, Mime and base64 Data (the depth image), GImage:Data (the original,
  unblurred photo the depth belongs to) and GFocus:* focus tags. `depth_m` holds the decoded depth
  in Near/Far's units (metres for phones that write metric values; Lens Blur's are relative).
- iPhone portrait JPEGs: auxiliary images reached through the MPF (Multi-Picture Format) index;
  the one whose Apple XMP says apdi:AuxiliaryImageType = disparity becomes `disparity` (1/m, float
  from apdi:FloatMin/MaxValue), a portrait effects matte becomes `matte`.
Not for writing these formats, and not for HEIC.
"""

from __future__ import annotations

import base64
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from toolchain.depth.depth16 import decode_depth16, read_depth16
from toolchain.errors import InputError, ModelFormatError

XMP_STD = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXT = b"http://ns.adobe.com/xmp/extension/\x00"


@dataclass
class DepthPhoto:
    """A photo with depth. Exactly one of depth_m / disparity is set (see `format`)."""

    image: np.ndarray  # uint8 H x W x 3 RGB: the photo the depth belongs to
    format: str  # "RangeInverse", "RangeLinear", "disparity", "DEPTH16"
    depth_m: np.ndarray | None = None  # float32, z-depth (GDepth: Near/Far units), at depth resolution
    disparity: np.ndarray | None = None  # float32, 1/m (Apple), at depth resolution
    near: float | None = None
    far: float | None = None
    focus: dict = field(default_factory=dict)  # GFocus:* tags (floats where numeric)
    matte: np.ndarray | None = None  # float32 [0, 1] portrait matte if present
    rendered: np.ndarray | None = None  # GDepth: the primary (already blurred) JPEG, RGB
    confidence: np.ndarray | None = None  # DEPTH16 only
    path: str = ""


# ------------------------------------------------------------------------------- JPEG plumbing

def _segments(data: bytes, where: str) -> list[tuple[int, bytes]]:
    """(marker, payload) of the JPEG header segments up to start-of-scan."""
    if data[:2] != b"\xff\xd8":
        raise ModelFormatError("not a JPEG file (no SOI marker)", where=where, fix="pass a .jpg photo")
    out, i = [], 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ModelFormatError(f"corrupt JPEG header at byte {i}", where=where, fix="re-export the photo")
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (ln,) = struct.unpack(">H", data[i + 2:i + 4])
        if i + 2 + ln > len(data):
            raise ModelFormatError(f"JPEG segment 0x{marker:02X} runs past the end of the file",
                                   where=where, fix="the file is truncated; fetch it again")
        out.append((marker, data[i + 4:i + 2 + ln]))
        if marker == 0xDA:
            break
        i += 2 + ln
    return out


def _xmp(segs: list[tuple[int, bytes]]) -> tuple[str, str]:
    """(standard XMP, extended XMP reassembled by offset) as text."""
    std, chunks = "", {}
    for m, p in segs:
        if m != 0xE1:
            continue
        if p.startswith(XMP_STD):
            std += p[len(XMP_STD):].decode("utf-8", "replace")
        elif p.startswith(XMP_EXT):
            body = p[len(XMP_EXT):]
            guid, (_total, off) = body[:32], struct.unpack(">II", body[32:40])
            chunks.setdefault(guid, {})[off] = body[40:]
    ext = "".join(b"".join(c[k] for k in sorted(c)).decode("utf-8", "replace") for c in chunks.values())
    return std, ext


def _tag(xmp: str, name: str) -> str | None:
    """Value of an XMP property written either as attribute or as element."""
    m = re.search(rf'{re.escape(name)}\s*=\s*"([^"]*)"', xmp)
    if m:
        return m.group(1)
    m = re.search(rf"<{re.escape(name)}>([^<]*)</{re.escape(name)}>", xmp)
    return m.group(1) if m else None


def _decode_image(buf: bytes, flags: int, where: str, what: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(buf, np.uint8), flags)
    if img is None:
        raise ModelFormatError(f"cannot decode the {what}", where=where, fix="the file may be damaged")
    return img


def _rgb(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB) if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _read(path: str | Path) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise InputError("depth photo not found", where=str(p), fix="check the path (PORTRAIT_DATA_DIR/depth_photos)")
    return p.read_bytes()


# ------------------------------------------------------------------------------- GDepth

def gdepth_to_depth(dn: np.ndarray, fmt: str, near: float, far: float) -> np.ndarray:
    """Decode normalized GDepth values dn in [0, 1] to depth (Near/Far units)."""
    dn = dn.astype(np.float64)
    if fmt == "RangeLinear":
        d = dn * (far - near) + near
    elif fmt == "RangeInverse":
        d = far * near / (far - dn * (far - near))
    else:
        raise InputError(f"unknown GDepth:Format {fmt!r}", where="gdepth_to_depth",
                         fix="expected RangeInverse or RangeLinear")
    return d.astype(np.float32)


def read_gdepth(path: str | Path) -> DepthPhoto:
    """Read a Google Camera Lens Blur (GDepth) JPEG. depth_m is at the depth image's resolution."""
    where = str(path)
    data = _read(path)
    std, ext = _xmp(_segments(data, where))
    xmp = std + ext
    fmt = _tag(xmp, "GDepth:Format")
    b64 = _tag(ext, "GDepth:Data") or _tag(std, "GDepth:Data")
    if fmt is None or b64 is None:
        raise ModelFormatError("no GDepth depth map in this JPEG (GDepth:Format / GDepth:Data missing)",
                               where=where, fix="use a Google Camera Lens Blur photo")
    try:
        near, far = float(_tag(xmp, "GDepth:Near")), float(_tag(xmp, "GDepth:Far"))
    except (TypeError, ValueError):
        raise ModelFormatError("GDepth:Near / GDepth:Far missing or not numbers", where=where,
                               fix="the XMP is incomplete") from None
    dimg = _decode_image(base64.b64decode(b64), cv2.IMREAD_UNCHANGED, where, "GDepth depth image")
    if dimg.ndim == 3:
        dimg = dimg[..., 0]
    dn = dimg.astype(np.float64) / float(np.iinfo(dimg.dtype).max)
    depth = gdepth_to_depth(dn, fmt, near, far)
    rendered = _rgb(_decode_image(data, cv2.IMREAD_COLOR, where, "primary JPEG"))
    gimg = _tag(ext, "GImage:Data")
    image = _rgb(_decode_image(base64.b64decode(gimg), cv2.IMREAD_COLOR, where, "GImage original")) if gimg else rendered
    focus = {}
    for k, v in re.findall(r'GFocus:(\w+)\s*=\s*"([^"]*)"', xmp):
        try:
            focus[k] = float(v)
        except ValueError:
            focus[k] = v
    return DepthPhoto(image=image, format=fmt, depth_m=depth, near=near, far=far, focus=focus,
                      rendered=rendered, path=where)


# ------------------------------------------------------------------------------- Apple MPF

def _mpf_images(data: bytes, segs, where: str) -> list[bytes]:
    """Images listed in the MPF index (APP2 'MPF\\0'), excluding the primary one."""
    # the MPF segment's position is needed: offsets count from its TIFF header
    pos = data.find(b"\xff\xe2")
    while pos >= 0 and data[pos + 4:pos + 8] != b"MPF\x00":
        pos = data.find(b"\xff\xe2", pos + 2)
    if pos < 0:
        return []
    base = pos + 8
    bo = {b"MM": ">", b"II": "<"}.get(data[base:base + 2])
    if bo is None:
        raise ModelFormatError("MPF index has no valid TIFF header", where=where, fix="the file may be damaged")
    (ifd,) = struct.unpack(bo + "I", data[base + 4:base + 8])
    (n,) = struct.unpack(bo + "H", data[base + ifd:base + ifd + 2])
    entries_off = entries_cnt = None
    for k in range(n):
        tag, typ, cnt, val = struct.unpack(bo + "HHII", data[base + ifd + 2 + 12 * k:base + ifd + 14 + 12 * k])
        if tag == 0xB002:
            entries_off, entries_cnt = val, cnt // 16
    out = []
    if entries_off is None:
        return out
    for e in range(entries_cnt):
        attr, size, off, _, _ = struct.unpack(bo + "IIIHH", data[base + entries_off + 16 * e:base + entries_off + 16 * (e + 1)])
        if off == 0:
            continue  # the primary image
        start = base + off
        if start + size > len(data) or data[start:start + 2] != b"\xff\xd8":
            raise ModelFormatError(f"MPF image {e} points outside the file or not at a JPEG", where=where,
                                   fix="the file is truncated or damaged")
        out.append(data[start:start + size])
    return out


def _apdi_float(xmp: str, name: str) -> float | None:
    v = _tag(xmp, f"apdi:{name}")
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None


def read_apple_portrait(path: str | Path) -> DepthPhoto:
    """Read an iPhone portrait JPEG: image, disparity (1/m) and the portrait matte if present."""
    where = str(path)
    data = _read(path)
    segs = _segments(data, where)
    image = _rgb(_decode_image(data, cv2.IMREAD_COLOR, where, "primary JPEG"))
    disparity = matte = None
    for aux in _mpf_images(data, segs, where):
        std, ext = _xmp(_segments(aux, where))
        xmp = std + ext
        kind = (_tag(xmp, "apdi:AuxiliaryImageType") or "").lower()
        is_matte = "portraiteffectsmatte" in xmp.lower().replace(" ", "") and kind not in ("disparity", "depth")
        img = _decode_image(aux, cv2.IMREAD_GRAYSCALE, where, "MPF auxiliary image").astype(np.float32)
        if kind in ("disparity", "depth") and disparity is None:
            lo, hi = _apdi_float(xmp, "FloatMinValue"), _apdi_float(xmp, "FloatMaxValue")
            ilo, ihi = _apdi_float(xmp, "IntMinValue") or 0.0, _apdi_float(xmp, "IntMaxValue") or 255.0
            if lo is None or hi is None:
                raise ModelFormatError("Apple depth image lacks apdi:FloatMinValue/FloatMaxValue", where=where,
                                       fix="cannot scale the stored 8-bit values without them")
            val = lo + (img - ilo) / max(ihi - ilo, 1e-9) * (hi - lo)
            disparity = val if kind == "disparity" else 1.0 / np.maximum(val, 1e-6)
        elif is_matte and matte is None:
            matte = img / 255.0
    if disparity is None:
        raise ModelFormatError("no Apple disparity auxiliary image in this JPEG (MPF index)", where=where,
                               fix="use an iPhone portrait photo saved as JPEG with depth")
    return DepthPhoto(image=image, format="disparity", disparity=disparity.astype(np.float32),
                      near=float(1.0 / disparity.max()), far=float(1.0 / max(disparity.min(), 1e-6)),
                      matte=None if matte is None else matte.astype(np.float32), path=where)


def read_depth16_photo(path: str | Path, width: int, height: int, stride_bytes: int | None = None) -> DepthPhoto:
    """A raw DEPTH16 file as a DepthPhoto (depth_m in metres, 0 range -> NaN; image is grey)."""
    rng, conf = decode_depth16(read_depth16(path, width, height, stride_bytes))
    depth = np.where(rng > 0, rng.astype(np.float32) / 1000.0, np.nan).astype(np.float32)
    grey = np.clip(np.nan_to_num(depth) / 8.191 * 255, 0, 255).astype(np.uint8)
    return DepthPhoto(image=np.stack([grey] * 3, -1), format="DEPTH16", depth_m=depth, confidence=conf,
                      near=float(np.nanmin(depth)) if np.isfinite(depth).any() else None,
                      far=float(np.nanmax(depth)) if np.isfinite(depth).any() else None, path=str(path))
