"""Time-of-flight sensor simulator: scene depth -> frames as a phone's ToF camera delivers them.

What it models (per profile, see profiles/tof.toml): the ToF camera's own intrinsics and its pose
relative to the RGB camera (about 1 cm baseline, a small rotation), mixed returns inside a pixel at
depth edges (flying pixels: the amplitude-weighted mean of the depths seen), multipath bias in
concave corners (range too long), range noise growing with distance and with low reflectivity,
per-pixel confidence from the returned amplitude, invalid pixels (out of range, too dark or
absorbing, saturated), temporal noise (a fresh draw per frame) and timestamps offset from the RGB
frame's. Not modelled: phase wrapping, lens distortion, motion blur, ambient light.

`range_mm` is z-depth in the ToF camera's frame, millimetres, 0 where invalid (as DEPTH16 does).
"""

from __future__ import annotations

import functools
import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

import cv2
import numpy as np

from toolchain.depth.camera import Extrinsics, Intrinsics, backproject, project, rotation_xyz, splat_nearest
from toolchain.depth.depth16 import MAX_RANGE_MM, encode_depth16
from toolchain.errors import InputError

PROFILES_FILE = Path(__file__).parent / "profiles" / "tof.toml"


@dataclass(frozen=True)
class SensorProfile:
    """One ToF sensor. Units: pixels, degrees, metres, millimetres, nanoseconds."""

    name: str
    width: int
    height: int
    hfov_deg: float
    fps: float
    min_range_m: float
    max_range_m: float
    sigma0_mm: float
    k_mm_per_m2: float
    reflectivity_ref: float
    amp_min: float
    amp_good: float
    amp_saturation: float
    multipath_gain: float
    flying_conf_drop: float
    timestamp_offset_ns: int
    timestamp_jitter_ns: int
    translation_m: tuple
    rotation_deg: tuple

    @property
    def intrinsics(self) -> Intrinsics:
        return Intrinsics.from_fov(self.width, self.height, self.hfov_deg)

    @property
    def extrinsics(self) -> Extrinsics:
        """ToF camera -> RGB camera: X_rgb = R @ X_tof + t (metres)."""
        return Extrinsics(rotation_xyz(self.rotation_deg), np.asarray(self.translation_m, np.float64))

    @property
    def frame_period_ns(self) -> int:
        return int(round(1e9 / self.fps))

    def sigma_mm(self, depth_m, reflectivity):
        """Standard deviation of the range noise (mm) at a depth (m) and reflectivity (0..1)."""
        rho = np.maximum(np.asarray(reflectivity, np.float64), 1e-6)
        d = np.asarray(depth_m, np.float64)
        return self.sigma0_mm + self.k_mm_per_m2 * d**2 / np.sqrt(rho / self.reflectivity_ref)

    def to_dict(self) -> dict:
        return {
            f.name: (list(getattr(self, f.name)) if isinstance(getattr(self, f.name), tuple) else getattr(self, f.name))
            for f in fields(self)
        }


@functools.lru_cache(maxsize=4)
def _load(path: str) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise InputError(f"cannot read ToF profiles ({e})", where=path, fix="restore the file") from None


def profile_names() -> list[str]:
    return sorted(_load(str(PROFILES_FILE)))


def get_profile(name: str) -> SensorProfile:
    """A sensor profile by name ("tof_240x180", "tof_320x240", ...)."""
    table = _load(str(PROFILES_FILE))
    if name not in table:
        raise InputError(
            f"unknown ToF profile {name!r}", where=str(PROFILES_FILE), fix=f"use one of {', '.join(sorted(table))}"
        )
    return profile_from_dict({**table[name], "name": name})


def profile_from_dict(d: dict) -> SensorProfile:
    names = [f.name for f in fields(SensorProfile)]
    missing = [n for n in names if n not in d]
    if missing:
        raise InputError(
            f"ToF profile lacks {', '.join(missing)}",
            where=str(d.get("name", "?")),
            fix="add the missing keys (see toolchain/depth/profiles/tof.toml)",
        )
    v = {n: d[n] for n in names}
    v["translation_m"] = tuple(float(x) for x in v["translation_m"])
    v["rotation_deg"] = tuple(float(x) for x in v["rotation_deg"])
    return SensorProfile(**v)


@dataclass
class ToFFrame:
    """One simulated ToF frame. range_mm: uint16 H x W z-depth (mm), 0 = invalid."""

    range_mm: np.ndarray
    confidence: np.ndarray  # float32 H x W in [0, 1] (before DEPTH16's rounding to sevenths)
    timestamp_ns: int
    intrinsics: Intrinsics
    extrinsics: Extrinsics  # ToF -> RGB
    profile: str
    true_depth_m: np.ndarray  # float32 H x W, noise- and bias-free z-depth of the mixed return
    flying_mask: np.ndarray  # bool H x W, pixel mixes surfaces more than 5 % apart in depth

    @property
    def depth16(self) -> np.ndarray:
        return encode_depth16(self.range_mm, self.confidence)


def simulate_tof_frame(
    scene,
    profile: SensorProfile | str,
    seed: int = 0,
    frame_index: int | None = None,
    supersample: int = 2,
    noise: bool = True,
    multipath: bool = True,
    t0_ns: int = 1_000_000_000,
) -> ToFFrame:
    """Simulate what the ToF camera delivers for a scene.

    scene: anything with depth_m (H x W z-depth in metres, RGB camera), reflectivity (H x W, 0..1)
    and K (3x3 RGB intrinsics, pixels), such as toolchain.scenes.Scene. The ToF field of view must lie
    inside the RGB one (pixels the RGB view cannot see come out invalid).
    seed, frame_index: temporal noise and timestamp jitter are drawn from (seed, frame_index);
    frame_index defaults to scene.t. The RGB frame i is taken at t0_ns + i * frame period; the ToF
    frame's timestamp_ns adds the profile's offset and jitter (nanoseconds).
    """
    prof = get_profile(profile) if isinstance(profile, str) else profile
    depth = np.asarray(scene.depth_m, np.float32)
    refl = np.asarray(scene.reflectivity, np.float32)
    if depth.ndim != 2 or depth.shape != refl.shape:
        raise InputError(
            f"scene depth {depth.shape} and reflectivity {refl.shape} must be equal 2-D",
            where="simulate_tof_frame(scene=...)",
            fix="pass a Scene from generate_scene",
        )
    if not np.all(np.isfinite(depth)) or depth.min() <= 0:
        raise InputError(
            "scene depth must be finite and positive everywhere",
            where="simulate_tof_frame(scene=...)",
            fix="fill the depth map",
        )
    frame_index = int(getattr(scene, "t", 0) if frame_index is None else frame_index)
    h, w = depth.shape
    rgb_cam = Intrinsics.from_matrix(scene.K, w, h)
    tof = prof.intrinsics
    ext = prof.extrinsics
    s = int(supersample)
    fine = tof.scaled(s)

    # scene points seen by the RGB camera, moved into the ToF camera, z-buffered on a fine grid
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float32)
    X = backproject(uu.ravel(), vv.ravel(), depth.ravel(), rgb_cam)
    Xt = ext.inverse().apply(X.astype(np.float64))
    u, v, z = project(Xt, fine)
    zbuf, win = splat_nearest(u, v, z, (fine.height, fine.width))
    r_fine = np.where(win >= 0, refl.ravel()[np.maximum(win, 0)], 0.0).astype(np.float32)
    z_fine = np.where(win >= 0, zbuf, 0.0).astype(np.float32)
    z_fine, r_fine = _fill_disocclusions(z_fine, r_fine)

    # mixed returns inside each ToF pixel: amplitude-weighted mean depth
    amp_f = np.where(z_fine > 0, r_fine / np.maximum(z_fine, 1e-3) ** 2, 0.0)
    blocks = lambda a: a.reshape(tof.height, s, tof.width, s)  # noqa: E731
    amp = blocks(amp_f).mean(axis=(1, 3))
    wsum = blocks(amp_f).sum(axis=(1, 3))
    zb = blocks(z_fine)
    with np.errstate(invalid="ignore", divide="ignore"):
        d_true = np.where(wsum > 0, blocks(amp_f * z_fine).sum(axis=(1, 3)) / wsum, 0.0)
    zmax, zmin = zb.max(axis=(1, 3)), np.where(zb > 0, zb, np.inf).min(axis=(1, 3))
    has = np.isfinite(zmin) & (zb > 0).all(axis=(1, 3))
    spread = np.where(has, (zmax - zmin) / np.maximum(d_true, 1e-3), 0.0)
    flying = spread > 0.05

    rng = np.random.default_rng([int(seed), frame_index, 0x70F])
    d = d_true.astype(np.float64)
    bias = _multipath_bias(d, prof.multipath_gain) if multipath else np.zeros_like(d)
    rho_eff = amp * d**2
    sigma = prof.sigma_mm(d, rho_eff)
    d_meas = d + bias
    if noise:
        d_meas = d_meas + rng.standard_normal(d.shape) * sigma / 1000.0

    invalid = (
        (~has)
        | (d < prof.min_range_m)
        | (d > prof.max_range_m)
        | (amp < prof.amp_min)
        | (amp > prof.amp_saturation)
        | (d_meas * 1000.0 > MAX_RANGE_MM)
        | (d_meas <= 0)
    )
    conf = np.clip(np.log(np.maximum(amp, 1e-12) / prof.amp_min) / math.log(prof.amp_good / prof.amp_min), 0, 1)
    conf = conf * (1.0 - prof.flying_conf_drop * np.clip(spread / 0.1, 0, 1))
    conf = conf * (1.0 - 0.5 * np.clip(bias / np.maximum(0.02 * d, 1e-6), 0, 1))
    range_mm = np.where(invalid, 0, np.clip(np.rint(d_meas * 1000.0), 1, MAX_RANGE_MM)).astype(np.uint16)
    conf = np.where(invalid, 0.0, conf).astype(np.float32)

    jitter = int(rng.normal(0.0, prof.timestamp_jitter_ns)) if noise else 0
    ts = t0_ns + frame_index * prof.frame_period_ns + prof.timestamp_offset_ns + jitter
    return ToFFrame(
        range_mm=range_mm,
        confidence=conf,
        timestamp_ns=int(ts),
        intrinsics=tof,
        extrinsics=ext,
        profile=prof.name,
        true_depth_m=d_true.astype(np.float32),
        flying_mask=flying & ~invalid,
    )


def _fill_disocclusions(z: np.ndarray, r: np.ndarray, iters: int = 12):
    """Fill cells no scene point landed in with the farthest neighbour (what a 1 cm shift uncovers
    is background)."""
    z, r = z.copy(), r.copy()
    k = np.ones((3, 3), np.uint8)
    for _ in range(iters):
        hole = z <= 0
        if not hole.any():
            break
        zd = cv2.dilate(z, k)
        rd = cv2.dilate(np.where(z > 0, r, 0).astype(np.float32), k)
        z = np.where(hole, zd, z)
        r = np.where(hole, rd, r)
    return z, r


def _multipath_bias(d: np.ndarray, gain: float) -> np.ndarray:
    """Range bias (m, >= 0) in concave corners: light bouncing between two surfaces comes back late.

    A concave corner shows as depth above its smoothed neighbourhood where the surface is
    continuous (an occlusion edge is not a corner; those pixels are excluded).
    """
    d32 = d.astype(np.float32)
    smooth = cv2.GaussianBlur(d32, (0, 0), 3.0)
    k = np.ones((7, 7), np.uint8)
    local = (cv2.dilate(d32, k) - cv2.erode(d32, k)) / np.maximum(d32, 1e-3)
    concave = np.clip(d32 - smooth, 0, None) * (local < 0.2) * (d32 > 0)
    return (gain * np.minimum(concave, 0.03 * d32)).astype(np.float64)
