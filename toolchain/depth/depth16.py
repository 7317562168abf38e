"""Android DEPTH16 frames: encode, decode, write and read raw files.

As Android's ImageFormat.DEPTH16 defines it: each pixel is a little-endian uint16 whose low 13 bits
are the range in millimetres (0..8191; 0 means no measurement) and whose top 3 bits are a
confidence code c: c == 0 means 100 % confidence, c == 1 means 0 %, c > 1 means (c - 1) / 7.
Rows may be padded: the row stride (bytes) is at least 2 * width.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolchain.errors import InputError

RANGE_BITS = 13
MAX_RANGE_MM = (1 << RANGE_BITS) - 1  # 8191 mm
RANGE_MASK = MAX_RANGE_MM
CONF_SHIFT = RANGE_BITS

# decoded confidence for each 3-bit code, exactly as Android defines it
CONF_TABLE = np.array([1.0, 0.0] + [(c - 1) / 7.0 for c in range(2, 8)], dtype=np.float32)


def confidence_to_code(confidence: np.ndarray) -> np.ndarray:
    """Nearest 3-bit DEPTH16 code (uint16 0..7) for confidence in [0, 1]; NaN counts as 0."""
    c = np.nan_to_num(np.asarray(confidence, dtype=np.float64), nan=0.0)
    if c.size and (c.min() < 0.0 or c.max() > 1.0):
        raise InputError(
            f"confidence outside [0, 1] (min {c.min():.3g}, max {c.max():.3g})",
            where="encode_depth16(confidence=...)",
            fix="clip confidence to [0, 1]",
        )
    k = np.rint(c * 7.0).astype(np.uint16)  # 0..7 in sevenths
    return np.where(k == 7, 0, np.where(k == 0, 1, k + 1)).astype(np.uint16)


def encode_depth16(range_mm: np.ndarray, confidence: np.ndarray | float = 1.0) -> np.ndarray:
    """Pack range (mm, 0..8191) and confidence ([0, 1], rounded to sevenths) into DEPTH16 words."""
    r = np.asarray(range_mm)
    if r.dtype.kind == "f":
        if not np.all(np.isfinite(r)):
            raise InputError(
                "range contains NaN or infinity",
                where="encode_depth16(range_mm=...)",
                fix="write 0 (no measurement) where the range is unknown",
            )
        r = np.rint(r)
    if r.size and (r.min() < 0 or r.max() > MAX_RANGE_MM):
        raise InputError(
            f"range outside 0..{MAX_RANGE_MM} mm (min {r.min()}, max {r.max()})",
            where="encode_depth16(range_mm=...)",
            fix=f"DEPTH16 holds at most {MAX_RANGE_MM} mm; write 0 for out-of-range pixels",
        )
    code = confidence_to_code(np.broadcast_to(confidence, r.shape))
    return (r.astype(np.uint16) | (code << CONF_SHIFT)).astype(np.uint16)


def decode_depth16(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split DEPTH16 words into (range_mm uint16, confidence float32 in [0, 1])."""
    f = np.asarray(frame)
    if f.dtype != np.uint16:
        raise InputError(
            f"DEPTH16 frame has dtype {f.dtype}",
            where="decode_depth16(frame=...)",
            fix="pass the raw uint16 words (np.uint16)",
        )
    return (f & RANGE_MASK).astype(np.uint16), CONF_TABLE[f >> CONF_SHIFT]


def write_depth16(path: str | Path, frame: np.ndarray, stride_bytes: int | None = None) -> int:
    """Write a raw DEPTH16 frame (little-endian, rows padded with zeros to stride_bytes).

    Returns the number of bytes written (stride_bytes * height).
    """
    f = np.asarray(frame)
    if f.dtype != np.uint16 or f.ndim != 2:
        raise InputError(
            f"DEPTH16 frame must be a 2-D uint16 array, got {f.dtype} {f.shape}",
            where=str(path),
            fix="encode with encode_depth16 first",
        )
    h, w = f.shape
    stride = _check_stride(stride_bytes, w, str(path))
    buf = np.zeros((h, stride), np.uint8)
    buf[:, : 2 * w] = f.astype("<u2").view(np.uint8).reshape(h, 2 * w)
    Path(path).write_bytes(buf.tobytes())
    return buf.size


def read_depth16(path: str | Path, width: int, height: int, stride_bytes: int | None = None) -> np.ndarray:
    """Read a raw DEPTH16 frame of width x height pixels with the given row stride (bytes).

    The last row may lack its padding (as camera buffers often do). Returns uint16 H x W words.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("DEPTH16 file not found", where=str(p), fix="check the path")
    if width <= 0 or height <= 0:
        raise InputError(f"bad frame size {width}x{height}", where=str(p), fix="give positive width, height")
    stride = _check_stride(stride_bytes, width, str(p))
    data = p.read_bytes()
    need = stride * (height - 1) + 2 * width
    if len(data) < need:
        raise InputError(
            f"DEPTH16 file is truncated: expected {stride * height} bytes "
            f"({width}x{height}, stride {stride}), got {len(data)}",
            where=str(p),
            fix="check width, height and stride, or regenerate the file",
        )
    if len(data) > stride * height:
        raise InputError(
            f"DEPTH16 file is larger than expected: expected {stride * height} bytes "
            f"({width}x{height}, stride {stride}), got {len(data)}",
            where=str(p),
            fix="check width, height and stride",
        )
    buf = np.frombuffer(data + b"\0" * (stride * height - len(data)), np.uint8).reshape(height, stride)
    return buf[:, : 2 * width].copy().view("<u2").astype(np.uint16)


def _check_stride(stride_bytes: int | None, width: int, where: str) -> int:
    stride = 2 * width if stride_bytes is None else int(stride_bytes)
    if stride < 2 * width or stride % 2:
        raise InputError(
            f"row stride {stride} bytes is invalid for width {width}",
            where=where,
            fix=f"use an even stride of at least {2 * width} bytes",
        )
    return stride
