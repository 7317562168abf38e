"""Deterministic generator of portrait scenes (person or cat) with exact alpha and metric depth.

Geometry is built in the RGB camera's frame (x right, y down, z forward, metres) with a pinhole
camera (`rgb_intrinsics`): a back wall and a slanted floor (2-8 m), one or two furniture panels,
sometimes a dark absorbing screen on the wall, the subject at 0.5-2 m and occasionally a foreground
object nearer than the subject. The subject is drawn at 2x and area-averaged, so its alpha is soft
and hair strands / whiskers / fur come out as sub-pixel, partially covering lines.

Conventions: `depth_m` is z-depth in metres along the optical axis (not range along the ray); a
pixel belongs to the subject (or the foreground object) in `depth_m` when its coverage is >= 0.5,
otherwise it shows what lies behind. `alpha` is the subject's visible coverage (a foreground object
in front of the subject removes alpha). Frame `t` moves and turns the subject a little and shakes
the camera by a few pixels; the scene layout depends on `seed` only.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import skimage.data

from toolchain.errors import InputError

KINDS = ("person", "cat")
RGB_HFOV_DEG = 66.0  # a typical phone main camera in landscape
_SS = 2  # supersampling of the subject's matte
_SHIFT = 4  # cv2 fixed-point bits for sub-pixel drawing
_FX = 1 << _SHIFT


@dataclass
class Scene:
    """One frame of a synthetic scene. Arrays are H x W (size given as (height, width))."""

    rgb: np.ndarray  # uint8 HxWx3, RGB order
    alpha: np.ndarray  # float32 HxW in [0, 1], subject coverage
    depth_m: np.ndarray  # float32 HxW, z-depth in metres, finite everywhere
    label: str  # "person" or "cat"
    subject_depth_m: float  # focus distance on the subject (face), metres
    reflectivity: np.ndarray  # float32 HxW in [0, 1], near-infrared albedo seen by a ToF sensor
    t: int = 0  # frame index
    K: np.ndarray = field(default_factory=lambda: np.eye(3))  # 3x3 RGB intrinsics, pixels
    seed: int = 0
    foreground_mask: np.ndarray | None = None  # bool HxW, foreground object (nearer than subject)


def rgb_intrinsics(size: tuple[int, int], hfov_deg: float = RGB_HFOV_DEG) -> np.ndarray:
    """3x3 pinhole matrix (pixels) for an image of size (height, width); principal point centred."""
    h, w = size
    f = (w / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return np.array([[f, 0.0, (w - 1) / 2.0], [0.0, f, (h - 1) / 2.0], [0.0, 0.0, 1.0]])


# ----------------------------------------------------------------------------------- textures


@functools.lru_cache(maxsize=16)
def _photo(name: str) -> np.ndarray:
    """A photo bundled with scikit-image (no download), float32 RGB in [0, 1]."""

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return img[..., :3].astype(np.float32) / 255.0


def _crop_to(img: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop with the target's aspect, resized to (h, w)."""
    ih, iw = img.shape[:2]
    scale = rng.uniform(0.5, 1.0)
    ch = max(8, int(min(ih, iw * h / w) * scale))
    cw = max(8, int(ch * w / h))
    cw = min(cw, iw)
    y0 = int(rng.integers(0, ih - ch + 1))
    x0 = int(rng.integers(0, iw - cw + 1))
    return cv2.resize(img[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_AREA)


def _noise(h: int, w: int, rng: np.random.Generator, cell: int) -> np.ndarray:
    """Smooth value noise in [0, 1] with features about `cell` pixels wide."""
    gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
    g = rng.random((gh, gw), dtype=np.float32)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


# ----------------------------------------------------------------------------------- layout


@dataclass
class _Layout:
    """Everything about a scene that depends on the seed only."""

    kind: str
    depth: float  # subject torso plane, metres
    u0: float  # head centre, fraction of width
    v0: float  # head centre, fraction of height
    cam_h: float  # camera height above the floor, metres
    wall_d: float
    wall_yaw: float
    panels: list  # (x0, x1, depth, height, colour, reflectivity)
    screen: tuple | None  # (x0, x1, y0, y1) on the wall, metres
    fg: tuple | None  # (u frac, v frac, radius m, depth m, colour)
    wall_photo: str
    hair_rgb: np.ndarray
    hair_refl: float
    skin_rgb: np.ndarray
    cloth_rgb: np.ndarray
    cloth_refl: float
    strands: list  # per strand: (angle, length m, bend, intensity, n-seg)
    whiskers: list
    phases: np.ndarray
    texture_seed: int


def _layout(seed: int, kind: str) -> _Layout:
    rng = np.random.default_rng([seed, 7919, KINDS.index(kind)])
    depth = float(rng.uniform(0.6, 1.9))
    panels = []
    for _ in range(int(rng.integers(1, 3))):
        x0 = float(rng.uniform(-3.0, 1.5))
        panels.append(
            (
                x0,
                x0 + float(rng.uniform(0.6, 1.6)),
                float(rng.uniform(2.2, 3.6)),
                float(rng.uniform(0.5, 1.3)),
                rng.uniform(0.15, 0.8, 3).astype(np.float32),
                float(rng.uniform(0.2, 0.7)),
            )
        )
    screen = None
    if rng.random() < 0.6:
        sx = float(rng.uniform(-1.5, 0.8))
        screen = (sx, sx + 1.0, -0.6, 0.0)
    fg = None
    if rng.random() < 0.3:
        fg = (
            float(rng.choice([0.08, 0.92])),
            float(rng.uniform(0.7, 0.95)),
            float(rng.uniform(0.04, 0.08)),
            float(rng.uniform(0.25, 0.42)),
            rng.uniform(0.2, 0.7, 3).astype(np.float32),
        )
    dark_hair = rng.random() < 0.6
    hair = np.array([0.10, 0.07, 0.05]) if dark_hair else np.array([0.75, 0.6, 0.35])
    hair = (hair * rng.uniform(0.85, 1.15)).clip(0, 1).astype(np.float32)
    n_strands = 260 if kind == "person" else 420
    strands = [
        (
            float(rng.uniform(0, 2 * math.pi)),
            float(rng.uniform(0.01, 0.07)),
            float(rng.normal(0, 0.5)),
            float(rng.uniform(0.55, 1.0)),
            int(rng.integers(3, 6)),
        )
        for _ in range(n_strands)
    ]
    whiskers = [
        (side, float(rng.uniform(-0.35, 0.35)), float(rng.uniform(0.06, 0.11)), float(rng.normal(0, 0.25)))
        for side in (-1, 1)
        for _ in range(int(rng.integers(4, 7)))
    ]
    return _Layout(
        kind=kind,
        depth=depth,
        u0=float(rng.uniform(0.38, 0.62)),
        v0=float(rng.uniform(0.3, 0.42)),
        cam_h=float(rng.uniform(1.15, 1.45)),
        wall_d=float(rng.uniform(4.5, 7.5)),
        wall_yaw=float(rng.uniform(-0.35, 0.35)),
        panels=panels,
        screen=screen,
        fg=fg,
        wall_photo=str(rng.choice(["coffee", "rocket", "astronaut", "brick", "grass", "gravel"])),
        hair_rgb=hair,
        hair_refl=0.06 if dark_hair else 0.35,
        skin_rgb=(np.array([0.85, 0.64, 0.52]) * rng.uniform(0.5, 1.05)).clip(0, 1).astype(np.float32),
        cloth_rgb=rng.uniform(0.05, 0.9, 3).astype(np.float32),
        cloth_refl=float(rng.choice([0.03, 0.2, 0.5, 0.7])),
        strands=strands,
        whiskers=whiskers,
        phases=rng.uniform(0, 2 * math.pi, 8),
        texture_seed=int(rng.integers(0, 2**31)),
    )


# ----------------------------------------------------------------------------------- background


def _background(L: _Layout, K: np.ndarray, h: int, w: int, shake: tuple[float, float], rng: np.random.Generator):
    """Depth (m), colour and reflectivity of the room behind the subject."""
    f, cx, cy = K[0, 0], K[0, 2], K[1, 2]
    rx = ((np.arange(w, dtype=np.float32) - cx + shake[0]) / f)[None, :]
    ry = ((np.arange(h, dtype=np.float32) - cy + shake[1]) / f)[:, None]
    # Wall: plane n.X = d with n = (sin yaw, 0, cos yaw); z = d / (n . ray).
    sy, cyw = math.sin(L.wall_yaw), math.cos(L.wall_yaw)
    wall_z = np.broadcast_to(L.wall_d / (sy * rx + cyw), (h, w)).astype(np.float32)
    wall_z = np.where(wall_z > 0, wall_z, 8.0).clip(2.0, 8.0)
    # Floor: y = cam_h (y points down); z = cam_h / ray_y where the ray looks down.
    with np.errstate(divide="ignore"):
        floor_z = np.where(ry > 1e-6, L.cam_h / np.maximum(ry, 1e-6), np.inf).astype(np.float32)
    floor_z = np.broadcast_to(floor_z, (h, w))
    on_floor = floor_z < wall_z
    z = np.where(on_floor, floor_z, wall_z).astype(np.float32)

    tex_rng = np.random.default_rng(L.texture_seed)
    wall_rgb = _crop_to(_photo(L.wall_photo), h + 16, w + 16, tex_rng)
    sxi, syi = int(round(shake[0])) + 8, int(round(shake[1])) + 8
    wall_rgb = wall_rgb[syi : syi + h, sxi : sxi + w]
    wall_rgb = 0.35 + 0.5 * wall_rgb  # paler, like a painted wall with a print
    X = rx * z
    Zf = z
    stripes = 0.5 + 0.5 * np.sin(X * 9.0 + 0.3 * np.sin(Zf * 2.0))
    wood = np.stack([0.45 + 0.15 * stripes, 0.30 + 0.1 * stripes, 0.18 + 0.05 * stripes], -1)
    rgb = np.where(on_floor[..., None], wood, wall_rgb).astype(np.float32)
    lum = rgb.mean(-1)
    refl = np.where(on_floor, 0.25 + 0.3 * lum, 0.3 + 0.5 * lum).astype(np.float32)

    Y = ry * z
    if L.screen is not None:  # a black screen on the wall: absorbs near infrared
        x0, x1, y0, y1 = L.screen
        on = (~on_floor) & (X > x0) & (X < x1) & (Y > y0) & (Y < y1)
        rgb[on] = (0.03, 0.03, 0.04)
        refl[on] = 0.01
    for x0, x1, pd, ph, col, pr in L.panels:  # furniture standing on the floor
        Xp, Yp = rx * pd, ry * pd
        on = (Xp > x0) & (Xp < x1) & (Yp > L.cam_h - ph) & (Yp < L.cam_h) & (pd < z)
        z = np.where(on, np.float32(pd), z)
        shade = 0.85 + 0.15 * np.sin(Xp * 20.0)
        rgb = np.where(on[..., None], col[None, None, :] * shade[..., None], rgb)
        refl = np.where(on, np.float32(pr), refl)
    textured = rgb * (0.9 + 0.2 * _noise(h, w, tex_rng, 48))[..., None]
    return z.astype(np.float32), textured.astype(np.float32), refl.astype(np.float32)


# ----------------------------------------------------------------------------------- subject


def _pts(xy: np.ndarray) -> np.ndarray:
    return np.round(xy * _SS * _FX).astype(np.int32).reshape(-1, 1, 2)


def _ellipse(cx: float, cy: float, ax: float, ay: float, n: int = 72) -> np.ndarray:
    a = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return np.stack([cx + ax * np.cos(a), cy + ay * np.sin(a)], -1)


def _strand(x: float, y: float, ang: float, length: float, bend: float, nseg: int) -> np.ndarray:
    pts = [(x, y)]
    step = length / nseg
    for _ in range(nseg):
        x, y = x + step * math.cos(ang), y + step * math.sin(ang)
        ang += bend / nseg
        pts.append((x, y))
    return np.array(pts)


def _subject(L: _Layout, K: np.ndarray, h: int, w: int, t: int, shake: tuple[float, float]):
    """Subject coverage (alpha), depth (m), colour and reflectivity; plus whisker coverage."""
    f = K[0, 0]
    ph = L.phases
    # motion over time: a slow sway / walk, a small turn, a slight change of distance
    if L.kind == "person":
        dx_m = 0.012 * t + 0.02 * math.sin(0.21 * t + ph[0])
    else:
        dx_m = 0.02 * math.sin(0.15 * t + ph[0])
    yaw = 0.25 * math.sin(0.12 * t + ph[1])
    D = L.depth + 0.03 * math.sin(0.1 * t + ph[2])
    s = f / D  # pixels per metre at the subject
    hx = L.u0 * w + dx_m * s - shake[0]
    hy = L.v0 * h + 0.004 * s * math.sin(0.3 * t + ph[3]) - shake[1]
    face_dx = 0.03 * math.sin(yaw) * s

    H2, W2 = h * _SS, w * _SS
    body = np.zeros((H2, W2), np.uint8)
    hair = np.zeros((H2, W2), np.uint8)
    whisk = np.zeros((H2, W2), np.uint8)
    if L.kind == "person":
        ha, hb = 0.085 * s * (0.9 + 0.1 * math.cos(yaw)), 0.115 * s
        sh_w, sh_y = 0.23 * s, hy + 0.26 * s
        torso = np.array(
            [
                [hx - 0.05 * s, hy + 0.1 * s],
                [hx + 0.05 * s, hy + 0.1 * s],
                [hx + 0.06 * s, sh_y - 0.06 * s],
                [hx + sh_w, sh_y + 0.02 * s],
                [hx + sh_w + 0.04 * s, h + 0.5 * s],
                [hx - sh_w - 0.04 * s, h + 0.5 * s],
                [hx - sh_w, sh_y + 0.02 * s],
                [hx - 0.06 * s, sh_y - 0.06 * s],
            ]
        )
        cv2.fillPoly(body, [_pts(torso)], 255, cv2.LINE_AA, _SHIFT)
        cv2.fillPoly(body, [_pts(_ellipse(hx, hy, ha, hb))], 255, cv2.LINE_AA, _SHIFT)
        # hair cap over the top of the head; the face below it stays visible
        ex, ey, ea, eb = hx - 0.3 * face_dx, hy - 0.35 * hb, ha * 1.1, hb * 0.72
        cv2.fillPoly(hair, [_pts(_ellipse(ex, ey, ea, eb))], 255, cv2.LINE_AA, _SHIFT)
        lines = []
        for ang, ln, bend, inten, nseg in L.strands:
            a = math.pi + (ang / (2 * math.pi)) * math.pi * 1.3 - 0.15 * math.pi  # upper half
            x0, y0 = ex + ea * math.cos(a) * 0.95, ey + eb * math.sin(a) * 0.95
            sway = 0.15 * math.sin(0.4 * t + ang)
            lines.append((_strand(x0, y0, a + 0.6 * bend + sway, ln * s, bend, nseg), inten))
        for pts, inten in lines:
            cv2.polylines(hair, [_pts(pts)], False, int(255 * inten), 1, cv2.LINE_AA, _SHIFT)
    else:
        ha, hb = 0.07 * s * (0.9 + 0.1 * math.cos(yaw)), 0.06 * s
        bx, by = hx + 0.05 * s, hy + 0.2 * s
        cv2.fillPoly(body, [_pts(_ellipse(bx, by, 0.15 * s, 0.16 * s))], 255, cv2.LINE_AA, _SHIFT)
        cv2.fillPoly(
            body,
            [
                _pts(
                    np.array(
                        [
                            [bx - 0.15 * s, by],
                            [bx + 0.15 * s, by],
                            [bx + 0.2 * s, h + 0.5 * s],
                            [bx - 0.2 * s, h + 0.5 * s],
                        ]
                    )
                )
            ],
            255,
            cv2.LINE_AA,
            _SHIFT,
        )
        cv2.fillPoly(body, [_pts(_ellipse(hx, hy, ha, hb))], 255, cv2.LINE_AA, _SHIFT)
        for side in (-1, 1):
            ear = np.array(
                [
                    [hx + side * 0.02 * s, hy - 0.045 * s],
                    [hx + side * 0.065 * s, hy - 0.12 * s],
                    [hx + side * 0.068 * s, hy - 0.02 * s],
                ]
            )
            cv2.fillPoly(body, [_pts(ear)], 255, cv2.LINE_AA, _SHIFT)
        # fur: short strands along the outline of head and body
        outline = np.concatenate([_ellipse(hx, hy, ha, hb, 90), _ellipse(bx, by, 0.15 * s, 0.16 * s, 120)])
        centres = np.array([[hx, hy]] * 90 + [[bx, by]] * 120)
        for _i, (ang, ln, bend, inten, _nseg) in enumerate(L.strands):
            j = int(ang / (2 * math.pi) * len(outline)) % len(outline)
            x0, y0 = outline[j]
            a = math.atan2(y0 - centres[j][1], x0 - centres[j][0]) + 0.5 * bend
            cv2.polylines(
                hair,
                [_pts(_strand(x0, y0, a, ln * 0.35 * s, bend, 3))],
                False,
                int(255 * inten),
                1,
                cv2.LINE_AA,
                _SHIFT,
            )
        for side, dy, ln, bend in L.whiskers:
            x0, y0 = hx + face_dx + side * 0.025 * s, hy + 0.02 * s + dy * 0.03 * s
            a = 0.0 if side > 0 else math.pi
            a += dy * side * 0.6
            cv2.polylines(whisk, [_pts(_strand(x0, y0, a, ln * s, bend * side, 4))], False, 255, 1, cv2.LINE_AA, _SHIFT)

    def down(img: np.ndarray) -> np.ndarray:
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0

    a_body, a_hair, a_whisk = down(body), down(hair), down(whisk)
    alpha = 1.0 - (1.0 - a_body) * (1.0 - a_hair) * (1.0 - a_whisk)

    # depth of the subject surface: ellipsoid head, cylinder-like torso, strands near the head
    xx = np.arange(w, dtype=np.float32)[None, :]
    yy = np.arange(h, dtype=np.float32)[:, None]
    r2 = ((xx - hx) / ha) ** 2 + ((yy - hy) / hb) ** 2
    bulge = 0.09 if L.kind == "person" else 0.06
    head_d = D - bulge * np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    tx = (xx - hx) / (0.3 * s)
    torso_d = D - 0.06 * np.sqrt(np.clip(1.0 - tx**2, 0.0, 1.0)) + 0.0 * yy
    d = np.where(r2 <= 1.0, head_d, np.minimum(torso_d, D + 0.02)).astype(np.float32)

    # colour
    tex_rng = np.random.default_rng(L.texture_seed + 1)
    if L.kind == "person":
        shade = (0.75 + 0.25 * np.sqrt(np.clip(1.0 - r2, 0.0, 1.0)))[..., None]
        col = np.broadcast_to(L.hair_rgb, (h, w, 3)).copy()
        in_head = (r2 <= 1.0)[..., None]
        in_cap = a_hair > 0.9
        cloth = L.cloth_rgb * (0.8 + 0.4 * _noise(h, w, tex_rng, 12))[..., None]
        col = np.where(in_head, L.skin_rgb * shade, np.where((yy > hy + 0.1 * s)[..., None], cloth, col))
        col = np.where(in_cap[..., None], L.hair_rgb * (0.8 + 0.4 * _noise(h, w, tex_rng, 4))[..., None], col)
        refl = np.where(in_head[..., 0], 0.45, np.where(yy > hy + 0.1 * s, L.cloth_refl, L.hair_refl))
        refl = np.where(in_cap, L.hair_refl, refl)
    else:
        fur = _crop_to(_photo("chelsea"), h, w, tex_rng)
        col = fur * 1.1
        col = col * (1 - a_whisk[..., None]) + 0.95 * a_whisk[..., None]
        refl = 0.25 + 0.4 * fur.mean(-1)
    return (
        alpha.astype(np.float32),
        d,
        np.clip(col, 0, 1).astype(np.float32),
        np.asarray(refl, np.float32),
        float(D - bulge),
    )


# ----------------------------------------------------------------------------------- public


def generate_scene(seed: int, kind: str = "person", size: tuple[int, int] = (480, 640), t: int = 0) -> Scene:
    """A synthetic portrait scene.

    seed: chooses the layout (distances, room, subject, textures); the same arguments give the same
    scene, bit for bit. kind: "person" or "cat". size: (height, width) in pixels. t: frame index;
    t > 0 moves/turns the subject a little and shakes the camera by a few pixels.
    """
    if kind not in KINDS:
        raise InputError(
            f"unknown scene kind {kind!r}", where="generate_scene(kind=...)", fix=f"use one of {', '.join(KINDS)}"
        )
    h, w = int(size[0]), int(size[1])
    if h < 32 or w < 32:
        raise InputError(
            f"scene size {size} is too small",
            where="generate_scene(size=...)",
            fix="give (height, width) of at least 32 x 32 pixels",
        )
    if t < 0:
        raise InputError(f"frame index t={t} is negative", where="generate_scene(t=...)", fix="use t >= 0")
    L = _layout(int(seed), kind)
    K = rgb_intrinsics((h, w))
    px = w / 640.0
    shake = (
        px * (1.5 * math.sin(1.3 * t + L.phases[4]) + 0.8 * math.sin(2.9 * t + L.phases[5])),
        px * (1.2 * math.sin(1.1 * t + L.phases[6]) + 0.6 * math.sin(3.7 * t + L.phases[7])),
    )
    if t == 0:
        shake = (0.0, 0.0)
    frame_rng = np.random.default_rng([int(seed), int(t), 31337])

    bg_z, bg_rgb, bg_refl = _background(L, K, h, w, shake, frame_rng)
    alpha, subj_z, subj_rgb, subj_refl, focus = _subject(L, K, h, w, t, shake)

    a3 = alpha[..., None]
    rgb = a3 * subj_rgb + (1.0 - a3) * bg_rgb
    is_subj = alpha >= 0.5
    depth = np.where(is_subj, subj_z, bg_z)
    refl = np.where(is_subj, subj_refl, bg_refl)

    fg_mask = np.zeros((h, w), bool)
    if L.fg is not None:  # an out-of-focus object between camera and subject (a leaf, a cup)
        fu, fv, rad, fd, fcol = L.fg
        f = K[0, 0]
        r = rad * f / fd
        canvas = np.zeros((h * _SS, w * _SS), np.uint8)
        cv2.fillPoly(
            canvas, [_pts(_ellipse(fu * w - shake[0], fv * h - shake[1], r, 0.8 * r))], 255, cv2.LINE_AA, _SHIFT
        )
        cov = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        rgb = cov[..., None] * fcol + (1.0 - cov[..., None]) * rgb
        alpha = alpha * (1.0 - cov)
        fg_mask = cov >= 0.5
        depth = np.where(fg_mask, np.float32(fd), depth)
        refl = np.where(fg_mask, np.float32(0.5), refl)

    rgb = rgb + frame_rng.normal(0.0, 0.006, rgb.shape).astype(np.float32)  # sensor noise
    rgb8 = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Scene(
        rgb=rgb8,
        alpha=np.clip(alpha, 0, 1).astype(np.float32),
        depth_m=depth.astype(np.float32),
        label=kind,
        subject_depth_m=focus,
        reflectivity=np.clip(refl, 0, 1).astype(np.float32),
        t=int(t),
        K=K,
        seed=int(seed),
        foreground_mask=fg_mask,
    )
