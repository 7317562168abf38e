"""Read a recorded or generated sequence (device_sim/sequences/<name>/): metadata plus lazy frames.

Layout: meta.json (see device_sim/make_sequences.py) and, per frame, rgb_NNNN.jpg, tof_NNNN.depth16,
alpha_NNNN.png (8-bit) and depth_NNNN.png (uint16, mm). Loading reads meta.json only and checks
that every listed file exists; pixels are read when a frame's loader is called.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from toolchain.depth.camera import Extrinsics, Intrinsics
from toolchain.depth.depth16 import decode_depth16, read_depth16
from toolchain.errors import InputError


@dataclass
class SequenceFrame:
    """One frame; methods read from disk on each call."""

    index: int
    label: str
    rgb_timestamp_ns: int
    tof_timestamp_ns: int
    subject_depth_m: float
    paths: dict
    _tof_size: tuple  # (width, height, stride_bytes)

    def rgb(self) -> np.ndarray:
        """uint8 H x W x 3, RGB order."""
        return cv2.cvtColor(_imread(self.paths["rgb"], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    def depth16(self) -> np.ndarray:
        """Raw DEPTH16 words, uint16 H x W (ToF resolution)."""
        w, h, stride = self._tof_size
        return read_depth16(self.paths["depth16"], w, h, stride)

    def tof(self) -> tuple[np.ndarray, np.ndarray]:
        """(range_mm uint16, confidence float32) decoded from DEPTH16."""
        return decode_depth16(self.depth16())

    def alpha(self) -> np.ndarray:
        """Ground-truth alpha, float32 H x W in [0, 1]."""
        return _imread(self.paths["alpha"], cv2.IMREAD_UNCHANGED).astype(np.float32) / 255.0

    def depth_m(self) -> np.ndarray:
        """Ground-truth z-depth in the RGB camera, float32 H x W, metres."""
        return _imread(self.paths["depth_gt"], cv2.IMREAD_UNCHANGED).astype(np.float32) / 1000.0


@dataclass
class Sequence:
    path: Path
    meta: dict
    rgb_intrinsics: Intrinsics
    tof_intrinsics: Intrinsics
    extrinsics: Extrinsics  # ToF -> RGB
    frames: list[SequenceFrame]

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> SequenceFrame:
        return self.frames[i]


def _imread(path: Path, flags: int) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    if img is None:
        raise InputError(
            "cannot read image", where=str(path), fix="regenerate the sequence (python -m device_sim.make_sequences)"
        )
    return img


def load_sequence(path: str | Path) -> Sequence:
    """Open a sequence folder; raises InputError naming the missing or malformed piece."""
    d = Path(path)
    mf = d / "meta.json"
    if not mf.is_file():
        raise InputError(
            "sequence has no meta.json",
            where=str(d),
            fix="point at a folder under device_sim/sequences/ or run python -m device_sim.make_sequences",
        )
    try:
        meta = json.loads(mf.read_text())
        tof_m, rgb_m = meta["tof"], meta["rgb"]
        tof_size = (int(tof_m["width"]), int(tof_m["height"]), int(tof_m.get("stride_bytes") or 2 * tof_m["width"]))
        rgb_i = Intrinsics.from_dict(rgb_m["intrinsics"])
        tof_i = Intrinsics.from_dict(tof_m["intrinsics"])
        ext = Extrinsics.from_dict(meta["extrinsics_tof_to_rgb"])
        frames_m = meta["frames"]
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(
            f"meta.json is malformed ({type(e).__name__}: {e})", where=str(mf), fix="regenerate the sequence"
        ) from None
    frames = []
    for i, fm in enumerate(frames_m):
        if fm.get("index") != i:
            raise InputError(
                f"frame {i} is missing (found index {fm.get('index')})",
                where=str(mf),
                fix="frames must be listed in order 0, 1, 2, ...; regenerate the sequence",
            )
        paths = {}
        for key in ("rgb", "depth16", "alpha", "depth_gt"):
            if key not in fm:
                raise InputError(f"frame {i} has no {key!r} entry", where=str(mf), fix="regenerate the sequence")
            p = d / fm[key]
            if not p.is_file():
                raise InputError(
                    f"frame {i}: file {fm[key]} is missing",
                    where=str(p),
                    fix="regenerate the sequence (python -m device_sim.make_sequences)",
                )
            paths[key] = p
        frames.append(
            SequenceFrame(
                index=i,
                label=fm.get("label", meta.get("kind", "")),
                rgb_timestamp_ns=int(fm["rgb_timestamp_ns"]),
                tof_timestamp_ns=int(fm["tof_timestamp_ns"]),
                subject_depth_m=float(fm.get("subject_depth_m", float("nan"))),
                paths=paths,
                _tof_size=tof_size,
            )
        )
    return Sequence(d, meta, rgb_i, tof_i, ext, frames)
