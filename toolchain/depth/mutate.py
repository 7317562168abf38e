"""Mutation fuzzing of the depth photo readers and DEPTH16: byte mutations and the verdict on each input.

Used by tests/test_depth_fuzz.py (hypothesis draws the mutations) and by experiments/fuzz_depth_readers.py
(a seeded campaign over the real photos in ../shared that reports counts). A mutation is data: a tuple
("flip", pos, bit), ("truncate", pos), ("overwrite", pos, bytes), ("insert", pos, bytes),
("delete", pos, n) or ("target", k, delta, bytes), which overwrites bytes `delta` after the k-th
"interesting" offset: XMP property names (GDepth:, GImage:, apdi:, ...), the MPF index, EXIF, frame
headers and the start of every embedded JPEG, so metadata is hit as often as pixels.
Positions are taken modulo the input's length. Not a general-purpose fuzzer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from toolchain.depth.readers import read_apple_portrait, read_depth_photo, read_gdepth
from toolchain.errors import PortraitError

INTERESTING = (
    b"GDepth:",
    b"GImage:",
    b"GFocus:",
    b"xmpNote:",
    b"apdi:",
    b"portraitEffectsMatte",
    b"semanticSegmentationMatte",
    b"<x:xmpmeta",
    b"http://ns.adobe.com/xmp/extension/",
    b"MPF\x00",
    b"Exif\x00\x00",
    b"\xff\xc0",
    b"\xff\xc4",
    b"\xff\xda",
    b"\xff\xd8\xff",
    b"\x89PNG",
    b"IHDR",
)


def interesting_offsets(data: bytes, limit_per_key: int = 64) -> list[int]:
    out = []
    for key in INTERESTING:
        start, n = 0, 0
        while n < limit_per_key:
            i = data.find(key, start)
            if i < 0:
                break
            out.append(i)
            start, n = i + 1, n + 1
    return sorted(out) or [0]


def mutate(data: bytes, ops, offsets: list[int] | None = None) -> bytes:
    """Apply mutation ops in order (see the module docstring)."""
    b = bytearray(data)
    offsets = offsets if offsets is not None else interesting_offsets(data)
    for op in ops:
        kind = op[0]
        if not b:
            break
        n = len(b)
        if kind == "flip":
            b[op[1] % n] ^= 1 << (op[2] % 8)
        elif kind == "truncate":
            del b[op[1] % n :]
        elif kind == "overwrite":
            p = op[1] % n
            b[p : p + len(op[2])] = op[2]
        elif kind == "insert":
            p = op[1] % n
            b[p:p] = op[2]
        elif kind == "delete":
            p = op[1] % n
            del b[p : p + op[2]]
        elif kind == "target":
            p = (offsets[op[1] % len(offsets)] + op[2]) % n
            b[p : p + len(op[3])] = op[3]
        else:
            raise ValueError(f"unknown mutation {kind!r}")
    return bytes(b)


def random_ops(rng: np.random.Generator, max_ops: int = 3) -> list[tuple]:
    """Mutation ops drawn by a seeded generator (the script's campaign; the test uses hypothesis)."""
    ops: list[tuple] = []
    for _ in range(int(rng.integers(1, max_ops + 1))):
        kind = rng.choice(["flip", "flip", "truncate", "overwrite", "insert", "delete", "target", "target", "target"])
        pos = int(rng.integers(0, 2**31))
        blob = bytes(rng.integers(0, 256, int(rng.integers(1, 13)), dtype=np.uint8))
        if kind == "flip":
            ops.append(("flip", pos, int(rng.integers(0, 8))))
        elif kind == "truncate":
            ops.append(("truncate", pos))
        elif kind in ("overwrite", "insert"):
            ops.append((kind, pos, blob))
        elif kind == "delete":
            ops.append(("delete", pos, int(rng.integers(1, 65))))
        else:
            ops.append(("target", pos, int(rng.integers(0, 96)), blob))
    return ops


def check_photo(photo) -> None:
    """A reader's result must be a well-formed DepthPhoto (else the verdict is 'invalid')."""
    img = photo.image
    assert isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, "image"
    for name in ("depth_m", "disparity", "matte", "confidence"):
        a = getattr(photo, name)
        assert a is None or (isinstance(a, np.ndarray) and a.ndim == 2 and a.size > 0), name
    for name in ("disparity", "matte"):
        a = getattr(photo, name)
        assert a is None or np.isfinite(a).all(), f"{name} not finite"
    if photo.format not in (None, "DEPTH16"):
        assert photo.depth_m is None or np.isfinite(photo.depth_m).all(), "depth not finite"
    for v in getattr(photo, "semantic", {}).values():
        assert v.ndim == 2 and np.isfinite(v).all(), "semantic"


@dataclass
class Verdict:
    outcome: str  # "valid", "error" (the project's error), "invalid" (bad result), "uncaught"
    seconds: float
    detail: str = ""


def judge(fn, *args, **kw) -> Verdict:
    """Run one reader call; never raises (except KeyboardInterrupt)."""
    t = time.perf_counter()
    try:
        res = fn(*args, **kw)
    except PortraitError as e:
        return Verdict(
            "error",
            time.perf_counter() - t,
            f"{type(e).__name__}: {getattr(e, 'format', '')} {getattr(e, 'field', '')}".strip(),
        )
    except Exception as e:  # noqa: BLE001 - this is what the fuzzer exists to find
        return Verdict("uncaught", time.perf_counter() - t, f"{type(e).__name__}: {str(e)[:200]}")
    dt = time.perf_counter() - t
    try:
        check_photo(res)
    except AssertionError as e:
        return Verdict("invalid", dt, f"result: {e}")
    return Verdict("valid", dt)


@dataclass
class Tally:
    inputs: int = 0
    calls: int = 0
    outcomes: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    max_seconds: float = 0.0
    over_limit: int = 0
    uncaught_examples: list = field(default_factory=list)

    def add(self, v: Verdict, limit_s: float = 2.0, label: str = "") -> None:
        self.calls += 1
        self.outcomes[v.outcome] = self.outcomes.get(v.outcome, 0) + 1
        key = v.detail.split(":")[0] if v.outcome == "valid" else v.detail
        self.details[key or v.outcome] = self.details.get(key or v.outcome, 0) + 1
        self.max_seconds = max(self.max_seconds, v.seconds)
        if v.seconds > limit_s:
            self.over_limit += 1
        if v.outcome in ("uncaught", "invalid") and len(self.uncaught_examples) < 20:
            self.uncaught_examples.append(f"{label}: {v.detail}")


def photo_readers():
    """(name, callable(path)) for each photo reader the fuzzer exercises."""
    return [
        ("read_gdepth", read_gdepth),
        ("read_apple_portrait", lambda p: read_apple_portrait(p, require_depth=False)),
        ("read_depth_photo", read_depth_photo),
    ]
