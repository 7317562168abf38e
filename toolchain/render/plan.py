"""Inputs and plan of the fused render stage, shared by the golden and the device versions.

`prepare_frame` checks and normalises what the caller passes (sizes, NaN depth, modes) by the rules
below and records a warning for every silent fix; `make_plan` fixes every size, radius and table the
stage uses, so that golden.py and device.py run the same steps on the same grid.

Rules for bad input (each one tested):
- image: uint8 HxWx3 RGB. Grey HxW or RGBA is converted with a warning; other dtypes are an error.
- model output: any size (it is always upsampled); its spec decides how it is read (model_output.py).
- depth / confidence: any size; sampled nearest onto the stage's grid (a warning when the depth's
  aspect ratio differs from the image's by more than 2 %). NaN, inf and values <= 0 are holes:
  confidence 0 there, and the blur falls back to the constant background blur. All holes (or no
  depth) -> mask-only blur.
- background (mode "replace"): any size; scaled to cover the frame and centre-cropped, with a warning.
- empty mask -> whole frame is background (blurred); full mask -> the frame unchanged; both warn.

Not here: the arithmetic of the stage (golden.py, device.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..errors import InputError
from .model_output import decode_probability, normalize_spec, to_hwc

MODES = ("blur", "replace", "chroma")
WORK_LONG_SIDE = 1024  # the stage's working grid is at most this many pixels on its long side
MAX_COC_WORK = 16.0  # largest disc radius in working pixels (kernel 33x33): bounded for a GPU
LAYER_RADII = (1.0, 2.0, 4.0, 8.0, 16.0)  # disc radii (working px) that the blur interpolates between
DEFAULT_F_NUMBER = 1.8
BLUR_AT_F1_8 = 0.01  # maximum blur radius at f/1.8 as a fraction of the image diagonal
GUIDE_RADIUS_MODEL_PX = 1.0  # guided-filter box radius, in model-output pixels (covers the mask's blur)
MASK_GAIN = 3.0  # contrast on P(subject) about 0.5 before the guided filter
GUIDE_EPS_LEVELS2 = 10  # guided-filter regulariser, (8-bit levels)^2: edges weaker than ~3 levels are smoothed
HIGHLIGHT_KNEE = 0.75  # above this value (of 1) pixels are boosted before blurring ...
HIGHLIGHT_GAIN = 3.0  # ... up to (1 + gain) x at 255, so bokeh balls stay bright
DEPTH_SPLIT = 0.13  # |CoC|/max below which depth says "subject" (about 1.15x the focus distance)
DEPTH_WIDTH = 0.10  # width of that ramp, same unit
DEPTH_PRIOR_WEIGHT = 0.5  # how far depth may move an uncertain mask value towards its own verdict
# where depth comes from: its weight (scales its confidence; the confidence where the format has none) and
# the width of its soft edges in depth pixels (depth_edges.py trusts it only that far from its own edges)
DEPTH_SOURCES = {"sensor": {"weight": 1.0, "edge_px": 2.0}, "monocular": {"weight": 0.5, "edge_px": 6.0}}


@dataclass
class Frame:
    """Checked inputs of one render call."""

    image: np.ndarray  # uint8 HxWx3 RGB
    low_res: np.ndarray  # model output as [h, w, C]
    spec: dict
    depth_m: np.ndarray | None  # float32, any size, NaN where there is no depth
    confidence: np.ndarray | None  # float32 in [0, 1], same size as depth_m, 0 at holes
    focus_m: float | None
    max_blur_px: float  # maximum CoC radius in full-resolution pixels
    mode: str
    background: np.ndarray | None  # uint8 HxWx3, already fitted to the frame
    chroma_rgb: tuple[int, int, int]
    warnings: list[str] = field(default_factory=list)
    depth_source: str = "sensor"  # a DEPTH_SOURCES key: how far depth is trusted


@dataclass
class StagePlan:
    """Every size, radius and constant table of the stage (one per frame size and settings)."""

    height: int
    width: int
    scale: int  # working grid = padded frame / scale (a power of two)
    pad_h: int
    pad_w: int
    work_h: int
    work_w: int
    guide_radius: int  # guided filter box radius, working px
    guide_eps_levels2: int
    mask_gain: float
    fill_radius: int  # radius over which background CoC is carried under the subject
    max_coc_work: float  # K: CoC radius at infinity, working px
    radii: tuple[float, ...]  # layer disc radii, working px (ascending, last = K)
    disc_rows: tuple[tuple[int, ...], ...]  # per layer: half-width of each disc row, dy = -h..h
    energy: np.ndarray  # float32[256]: highlight-boosting table, value -> energy
    energy_q12: np.ndarray  # uint16[256]: same in Q12
    inverse_x: np.ndarray  # float32 fine grid of values in [0, 1] ...
    inverse_e: np.ndarray  # ... and their energies (for the golden inverse)
    inverse_q12: np.ndarray  # uint8[16385]: energy Q12 -> value (device inverse)
    band_model_px: float | None = None  # matting band half-width in model px (None: matting.BAND_MODEL_PX)


def _disc_rows(radius: float) -> tuple[int, ...]:
    """Half-width of each row of a flat disc of `radius` px (pixel centres within radius + 0.5)."""
    rr = radius + 0.5
    h = int(math.floor(rr))
    return tuple(int(math.floor(math.sqrt(max(rr * rr - dy * dy, 0.0)))) for dy in range(-h, h + 1))


def disc_kernel(rows: tuple[int, ...]) -> np.ndarray:
    """The flat disc as a float32 kernel (ones inside)."""
    h = len(rows) // 2
    k = np.zeros((2 * h + 1, 2 * h + 1), np.float32)
    for i, hw in enumerate(rows):
        k[i, h - hw : h + hw + 1] = 1.0
    return k


def _energy_tables():
    # Tables are constants, computed once offline-style (float64 here is build time, not stage time).
    x = np.arange(256) / 255.0
    t = np.clip((x - HIGHLIGHT_KNEE) / (1 - HIGHLIGHT_KNEE), 0, 1)
    e = x * (1 + HIGHLIGHT_GAIN * t * t)
    xf = np.linspace(0, 1, 4097)
    tf = np.clip((xf - HIGHLIGHT_KNEE) / (1 - HIGHLIGHT_KNEE), 0, 1)
    ef = xf * (1 + HIGHLIGHT_GAIN * tf * tf)
    emax_q12 = int(round((1 + HIGHLIGHT_GAIN) * 4096))
    inv = np.round(255 * np.interp(np.arange(emax_q12 + 1) / 4096.0, ef, xf)).astype(np.uint8)
    return (
        e.astype(np.float32),
        np.round(e * 4096).astype(np.uint16),
        xf.astype(np.float32),
        ef.astype(np.float32),
        inv,
    )


_TABLES = None


def make_plan(
    height: int, width: int, model_hw: tuple[int, int], max_blur_px: float, band_model_px: float | None = None
) -> StagePlan:
    """Every size the stage uses. band_model_px: the output spec's edge_band_model_px (None: default)."""
    global _TABLES
    if _TABLES is None:
        _TABLES = _energy_tables()
    scale = 1
    while max(height, width) / scale > WORK_LONG_SIDE:
        scale *= 2
    pad_h, pad_w = -(-height // scale) * scale, -(-width // scale) * scale
    work_h, work_w = pad_h // scale, pad_w // scale
    px_per_model_px = max(work_h / max(model_hw[0], 1), work_w / max(model_hw[1], 1))
    guide_radius = int(np.clip(round(GUIDE_RADIUS_MODEL_PX * px_per_model_px), 2, 8))
    k = min(max_blur_px / scale, MAX_COC_WORK)
    radii = tuple(r for r in LAYER_RADII if r < k) + ((k,) if k >= 1.0 else ())
    e, eq, xf, ef, inv = _TABLES
    return StagePlan(
        height,
        width,
        scale,
        pad_h,
        pad_w,
        work_h,
        work_w,
        guide_radius,
        GUIDE_EPS_LEVELS2,
        MASK_GAIN,
        2 * guide_radius,
        k,
        radii,
        tuple(_disc_rows(r) for r in radii),
        e,
        eq,
        xf,
        ef,
        inv,
        band_model_px,
    )


def depth_sample_index(plan: StagePlan, depth_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Nearest depth pixel for each working pixel (rows, cols): depth is never interpolated across an edge."""
    hd, wd = depth_hw
    yc = np.minimum((np.arange(plan.work_h) * plan.scale + plan.scale // 2), plan.height - 1)
    xc = np.minimum((np.arange(plan.work_w) * plan.scale + plan.scale // 2), plan.width - 1)
    return (yc * hd // plan.height).astype(np.intp), (xc * wd // plan.width).astype(np.intp)


# ----------------------------------------------------------------------------------------------
# input checks


def _as_rgb(img, what: str, warnings: list[str]) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise InputError(
            f"{what} must be uint8, got {a.dtype}",
            where=f"{what} shape {a.shape}",
            fix="pass 8-bit RGB (e.g. np.clip(x * 255, 0, 255).astype(np.uint8))",
        )
    if a.ndim == 2:
        warnings.append(f"{what} is grey; repeated into 3 channels")
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:
        warnings.append(f"{what} has 4 channels; the 4th (alpha) is ignored")
        a = a[:, :, :3]
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError(f"{what} must be HxWx3 RGB, got shape {a.shape}", fix="pass an RGB image")
    if a.shape[0] < 8 or a.shape[1] < 8:
        raise InputError(f"{what} is too small ({a.shape[1]}x{a.shape[0]})", fix="pass at least 8x8 pixels")
    return np.ascontiguousarray(a)


def fit_background(bg: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale to cover height x width (aspect kept) and centre-crop."""
    h, w = bg.shape[:2]
    f = max(height / h, width / w)
    nh, nw = max(height, round(h * f)), max(width, round(w * f))
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    r = cv2.resize(bg, (nw, nh), interpolation=interp)
    y0, x0 = (nh - height) // 2, (nw - width) // 2
    return np.ascontiguousarray(r[y0 : y0 + height, x0 : x0 + width])


def prepare_frame(
    image,
    low_res_output,
    output_spec,
    *,
    depth_m=None,
    confidence=None,
    focus_m=None,
    focus_point=None,
    f_number=None,
    max_blur_px=None,
    mode="blur",
    background=None,
    chroma_rgb=(0, 255, 0),
    depth_source="sensor",
) -> Frame:
    warnings: list[str] = []
    if depth_source not in DEPTH_SOURCES:
        raise InputError(f"depth source {depth_source!r} is not known", fix=f"use one of {', '.join(DEPTH_SOURCES)}")
    img = _as_rgb(image, "image", warnings)
    h, w = img.shape[:2]
    spec = normalize_spec(output_spec)
    if low_res_output is None:
        raise InputError("no model output given", fix="pass the segmentation model's output tensor")
    low = to_hwc(np.asarray(low_res_output), spec)
    if low.shape[0] < 2 or low.shape[1] < 2:
        raise InputError(f"model output is too small: {low.shape}", fix="pass the full output map")
    if mode not in MODES:
        raise InputError(f"mode {mode!r} is not known", fix=f"use one of {', '.join(MODES)}")

    # aperture -> maximum blur radius in full-resolution pixels
    diag = math.hypot(h, w)
    if max_blur_px is not None:
        if not (np.isfinite(max_blur_px) and max_blur_px >= 0):
            raise InputError(f"max_blur_px must be >= 0, got {max_blur_px}", fix="pass a blur radius in pixels")
        k = float(max_blur_px)
    else:
        n = DEFAULT_F_NUMBER if f_number is None else float(f_number)
        if not (np.isfinite(n) and n > 0):
            raise InputError(f"f_number must be > 0, got {f_number}", fix="pass e.g. 1.8 or 2.8")
        k = BLUR_AT_F1_8 * diag * DEFAULT_F_NUMBER / n

    # depth: any size; holes (NaN, inf, <= 0) get confidence 0
    d: np.ndarray | None = None
    c: np.ndarray | None = None
    if depth_m is not None:
        d = np.asarray(depth_m, dtype=np.float32)
        if d.ndim == 3 and d.shape[2] == 1:
            d = d[..., 0]
        if d.ndim != 2 or min(d.shape) < 1:
            raise InputError(f"depth must be a 2-D map in metres, got shape {d.shape}", fix="pass HxW depth")
        valid = np.isfinite(d) & (d > 0)
        if abs(d.shape[1] / d.shape[0] - w / h) > 0.02 * (w / h):
            warnings.append(
                f"depth {d.shape[1]}x{d.shape[0]} has another aspect ratio than the image "
                f"{w}x{h}; it is stretched onto the image"
            )
        if confidence is None:
            c = valid.astype(np.float32)
        else:
            c = np.asarray(confidence)
            if c.dtype == np.uint8:
                c = c.astype(np.float32) / 255.0
            c = np.asarray(c, np.float32)
            if c.shape != d.shape:
                warnings.append(f"confidence {c.shape} resized to the depth's {d.shape}")
                c = cv2.resize(np.nan_to_num(c), (d.shape[1], d.shape[0]), interpolation=cv2.INTER_NEAREST)
            c = np.clip(np.nan_to_num(c, nan=0.0, posinf=0.0, neginf=0.0), 0, 1) * valid
        holes = 1.0 - valid.mean()
        if holes > 0:
            warnings.append(f"{holes:.1%} of depth pixels are NaN, inf or <= 0: treated as holes")
        d = np.where(valid, d, np.float32(np.nan)).astype(np.float32)
        if not valid.any() or not (c > 0).any():
            warnings.append("no usable depth: falling back to mask-only blur")
            d = c = None

    # focus distance: given, at a focus point, or the subject's median depth
    if focus_m is not None:
        if not (np.isfinite(focus_m) and focus_m > 0):
            raise InputError(f"focus_m must be > 0 metres, got {focus_m}", fix="pass the focus distance in metres")
        focus_m = float(focus_m)
    elif d is not None:
        assert c is not None  # confidence is made with the depth above
        ok = c > 0
        if focus_point is not None:
            x, y = focus_point
            if not (0 <= x < w and 0 <= y < h):
                raise InputError(
                    f"focus point {focus_point} is outside the {w}x{h} image", fix="pass (x, y) in image pixels"
                )
            yy, xx = int(y * d.shape[0] / h), int(x * d.shape[1] / w)
            rad = max(1, int(0.03 * max(d.shape)))
            win = d[max(0, yy - rad) : yy + rad + 1, max(0, xx - rad) : xx + rad + 1]
            sel = win[np.isfinite(win)]
            if sel.size:
                focus_m = float(np.median(sel))
            else:
                warnings.append(f"no depth around the focus point {focus_point}; focusing on the subject")
        if focus_m is None:
            p = decode_probability(low, spec)
            p = cv2.resize(p, (d.shape[1], d.shape[0]), interpolation=cv2.INTER_NEAREST)
            sel = d[(p > 0.5) & ok]
            if sel.size:
                focus_m = float(np.median(sel))
            else:
                focus_m = float(np.percentile(d[ok], 10))
                warnings.append("no subject in the mask where depth exists; focusing on the nearest 10 % of depth")

    bg = None
    if mode == "replace":
        if background is None:
            raise InputError("mode 'replace' needs a background image", fix="pass background=<uint8 RGB image>")
        bg = _as_rgb(background, "background", warnings)
        if bg.shape[:2] != (h, w):
            warnings.append(f"background {bg.shape[1]}x{bg.shape[0]} scaled to cover {w}x{h} and centre-cropped")
            bg = fit_background(bg, h, w)
    chroma = tuple(int(v) for v in chroma_rgb)
    if len(chroma) != 3 or not all(0 <= v <= 255 for v in chroma):
        raise InputError(f"chroma_rgb must be three values 0..255, got {chroma_rgb}", fix="e.g. (0, 255, 0)")
    return Frame(img, low, spec, d, c, focus_m, k, mode, bg, chroma, warnings, depth_source)


def pad_to_plan(img: np.ndarray, plan: StagePlan) -> np.ndarray:
    """Replicate the last row/column so the frame divides into whole working pixels."""
    if img.shape[0] == plan.pad_h and img.shape[1] == plan.pad_w:
        return img
    widths = ((0, plan.pad_h - img.shape[0]), (0, plan.pad_w - img.shape[1])) + ((0, 0),) * (img.ndim - 2)
    return np.pad(img, widths, mode="edge")
