"""Pinhole cameras, rigid transforms between them, and nearest-wins splatting.

Units: pixels for intrinsics, metres for translations and depth. Pixel centres sit at integer
coordinates (pixel (0, 0) covers -0.5..0.5). Depth is z-depth along the optical axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from toolchain.errors import InputError


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels for an image of width x height pixels."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float) -> Intrinsics:
        f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
        return cls(f, f, (width - 1) / 2.0, (height - 1) / 2.0, int(width), int(height))

    @classmethod
    def from_matrix(cls, K: np.ndarray, width: int, height: int) -> Intrinsics:
        K = np.asarray(K, dtype=np.float64)
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), int(width), int(height))

    @classmethod
    def from_dict(cls, d: dict) -> Intrinsics:
        try:
            return cls(
                float(d["fx"]), float(d["fy"]), float(d["cx"]), float(d["cy"]), int(d["width"]), int(d["height"])
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(
                f"intrinsics are incomplete or malformed ({e})",
                where=str(d)[:120],
                fix="give fx, fy, cx, cy (pixels), width, height",
            ) from None

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    def to_dict(self) -> dict:
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "width": self.width, "height": self.height}

    def scaled(self, s: float) -> Intrinsics:
        """The same camera sampled s times finer (pixel centres kept consistent)."""
        return Intrinsics(
            self.fx * s,
            self.fy * s,
            (self.cx + 0.5) * s - 0.5,
            (self.cy + 0.5) * s - 0.5,
            int(round(self.width * s)),
            int(round(self.height * s)),
        )


def rotation_xyz(deg: tuple[float, float, float]) -> np.ndarray:
    """Rotation matrix from angles (degrees) about x, then y, then z."""
    ax, ay, az = (math.radians(a) for a in deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Extrinsics:
    """Rigid transform from a source camera to a target camera: X_target = R @ X_source + t (metres)."""

    R: np.ndarray
    t: np.ndarray

    @classmethod
    def from_dict(cls, d: dict) -> Extrinsics:
        try:
            R = np.asarray(d["R"], dtype=np.float64).reshape(3, 3)
            t = np.asarray(d["t_m"], dtype=np.float64).reshape(3)
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(
                f"extrinsics are incomplete or malformed ({e})",
                where=str(d)[:120],
                fix="give R (3x3) and t_m (3, metres)",
            ) from None
        return cls(R, t)

    def to_dict(self) -> dict:
        return {"R": np.asarray(self.R).tolist(), "t_m": np.asarray(self.t).tolist()}

    def inverse(self) -> Extrinsics:
        Rt = np.asarray(self.R).T
        return Extrinsics(Rt, -Rt @ np.asarray(self.t))

    def apply(self, X: np.ndarray) -> np.ndarray:
        """Transform N x 3 points (metres)."""
        return X @ np.asarray(self.R, dtype=X.dtype).T + np.asarray(self.t, dtype=X.dtype)


def backproject(u: np.ndarray, v: np.ndarray, z: np.ndarray, cam: Intrinsics) -> np.ndarray:
    """N x 3 points (metres) from pixel coordinates and z-depth (metres)."""
    return np.stack([(u - cam.cx) / cam.fx * z, (v - cam.cy) / cam.fy * z, z], axis=-1)


def project(X: np.ndarray, cam: Intrinsics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel coordinates (u, v) and z-depth (metres) of N x 3 points."""
    z = X[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return cam.fx * X[:, 0] / z + cam.cx, cam.fy * X[:, 1] / z + cam.cy, z


def splat_nearest(u: np.ndarray, v: np.ndarray, z: np.ndarray, shape: tuple[int, int]):
    """Nearest-wins z-buffer: round points to pixels; where several land, the smallest z wins.

    Returns (zbuf float32 H x W with +inf where nothing landed, winner int64 H x W: index into the
    inputs, -1 where nothing landed).
    """
    h, w = shape
    ui, vi = np.rint(u), np.rint(v)
    ok = (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h) & (z > 0) & np.isfinite(z)
    idx = np.nonzero(ok)[0]
    lin = vi[idx].astype(np.int64) * w + ui[idx].astype(np.int64)
    order = np.lexsort((z[idx], lin))  # by pixel, then nearest first
    lin_s = lin[order]
    first = np.ones(lin_s.shape, bool)
    first[1:] = lin_s[1:] != lin_s[:-1]
    winner = np.full(h * w, -1, np.int64)
    winner[lin_s[first]] = idx[order[first]]
    zbuf = np.full(h * w, np.inf, np.float32)
    has = winner >= 0
    zbuf[has] = z[winner[has]]
    return zbuf.reshape(h, w), winner.reshape(h, w)
