"""Device-precision fused stage: the golden steps in fixed-point, as a GPU shader or DSP port does them.

Only uint8 / uint16 / int16 / int32 (and float16 for decoding the model output) are used; no float32
or float64 touches a pixel. cv2 is used only where its arithmetic is integer and exact (box sums of
integers, RGB->grey with 14-bit integer coefficients, area averages of uint8 by a whole factor, and
bilinear resampling of uint8, which OpenCV does with 11-bit fixed-point weights, like a GPU texture
unit with 8-bit sub-texel precision). Everything else is written out so it ports line by line.

Fixed-point formats (value = stored / scale):
- P (mask), alpha, confidence, background weight w, mix m: Q8 as uint8, 255 = 1.0
- guided filter: intensities centred as (level - 128) int16; box sums int32 (exact);
  var*N^2 and cov*N^2 int32 (exact, because values are centred and N <= 17^2);
  slope A in Q12 (int32, |A| <= 0.5*128/sqrt(eps) < 64), offset B in 8-bit levels Q8 (int32)
- CoC: working-pixel radius in Q4 (int32, 1/16 px), K <= 16 px -> <= 256
- energy (highlight-boosted value): Q12 uint16 via a 256-entry table; inverse: 16385-entry uint8 table
- blur sums: E*w >> 4 (int32, <= 2.6e5 per pixel, <= 2.3e8 per 33x33 disc), weights w (Q8) summed
- layer mix t: Q8 from a table indexed by CoC Q4
- upsampling by the whole factor s (2, 4, 8): weights (2k+1-s)/(2s) are exact integers over 2s
- final blend a (255 - w) + b w: uint16 (<= 255^2), divided by 255 with shifts and adds (div255)

Steps 1-7 are those of golden.py, in the same order, on the same grid (plan.py).
"""

from __future__ import annotations

import cv2
import numpy as np

from . import depth_edges, matting, trimap
from .model_output import decode_probability_q8
from .plan import DEPTH_PRIOR_WEIGHT, DEPTH_SPLIT, DEPTH_WIDTH, Frame, StagePlan, depth_sample_index, pad_to_plan

I32 = np.int32
KEEP8 = 64  # trimap code of trimap.KEEP (hesitant, far from the outline)


def _boxsum(x: np.ndarray, r: int) -> np.ndarray:
    """Exact integer sum over a (2r+1)^2 box, mirrored border (as golden)."""
    return cv2.boxFilter(
        x.astype(I32, copy=False),
        cv2.CV_32S,
        (2 * r + 1, 2 * r + 1),
        normalize=False,
        borderType=cv2.BORDER_REFLECT_101,
    )


def _rdiv(num: np.ndarray, den) -> np.ndarray:
    """Rounded integer division for num >= 0 or < 0, den > 0 (a DSP does this with a reciprocal table)."""
    return np.floor_divide(num + den // 2, den).astype(I32)


def div255(x: np.ndarray) -> np.ndarray:
    """round(x / 255) as (x + 127) // 255 for uint16 x <= 255 * 255, by two shifts and adds (no
    division, which is what makes it cheap on a DSP and in numpy); exact over the whole range
    (tests/test_render_device.py checks every value). Returns uint8."""
    y = x + np.uint16(127)
    return ((y + np.uint16(1) + (y >> np.uint16(8))) >> np.uint16(8)).astype(np.uint8)


def blend_u8(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(a * (255 - w) + b * w) / 255 rounded, for uint8 HxWx3 a, b (or one RGB colour) and HxW w,
    in uint16: a * (255 - w) + b * w <= 255 * 255 fits. Every operand is made a full contiguous
    HxWx3 array first: numpy's broadcast over a last axis of 3 ran ~5x slower at 12 MP."""
    w16 = cv2.merge([w] * 3).astype(np.uint16)
    if np.ndim(b) == 1:
        colour = np.empty_like(a)
        colour[:] = b
        b = colour
    x = a.astype(np.uint16) * (np.uint16(255) - w16)
    x += b.astype(np.uint16) * w16
    return div255(x)


def _upsample_axis(x: np.ndarray, s: int, n_out: int, axis: int) -> np.ndarray:
    """Integer bilinear x s along one axis, pixel centres aligned (as cv2 INTER_LINEAR); sum of weights 2s."""
    n_in = x.shape[axis]
    i = np.arange(n_in * s)
    j, k = i // s, i % s
    num = 2 * k + 1 - s  # offset from the source centre, in 1/(2s) units
    lo = np.where(num < 0, j - 1, j)
    w1 = np.where(num < 0, num + 2 * s, num)  # weight of the upper neighbour
    lo_c, hi_c = np.clip(lo, 0, n_in - 1), np.clip(lo + 1, 0, n_in - 1)
    lo_c, hi_c, w1 = lo_c[:n_out], hi_c[:n_out], w1[:n_out]
    shape = [1] * x.ndim
    shape[axis] = n_out
    w1 = w1.reshape(shape).astype(I32)
    return np.take(x, lo_c, axis=axis) * (2 * s - w1) + np.take(x, hi_c, axis=axis) * w1


def upsample_int(x: np.ndarray, plan: StagePlan) -> np.ndarray:
    """int32 working grid -> full frame, same values x (2s)^2 (the caller shifts)."""
    s = plan.scale
    if s == 1:
        return x.astype(I32) * 4
    y = _upsample_axis(x.astype(I32), s, plan.width, 1)
    return _upsample_axis(y, s, plan.height, 0)


def upsample_u8(x: np.ndarray, plan: StagePlan) -> np.ndarray:
    if plan.scale == 1:
        return x
    return cv2.resize(x, (plan.pad_w, plan.pad_h), interpolation=cv2.INTER_LINEAR)[: plan.height, : plan.width]


def circle_of_confusion(frame: Frame, plan: StagePlan):
    """Signed CoC in Q4 working px and confidence Q8, from DEPTH16-style uint16 mm (0 = hole)."""
    if frame.depth_m is None:
        return None, None, 0
    # the sensor boundary: depth arrives as uint16 millimetres and confidence as uint8
    d = frame.depth_m
    assert frame.confidence is not None and frame.focus_m is not None  # prepare_frame sets both with depth
    depth_mm = np.where(np.isfinite(d), np.clip(np.round(d * 1000), 0, 65535), 0).astype(np.uint16)
    conf8 = np.round(frame.confidence * 255).astype(np.uint8)
    rows, cols = depth_sample_index(plan, d.shape)
    z = depth_mm[rows[:, None], cols[None, :]].astype(I32)
    c8 = conf8[rows[:, None], cols[None, :]].astype(I32)
    k_q4 = int(round(plan.max_coc_work * 16))
    focus_mm = int(round(frame.focus_m * 1000))
    ok = z > 0
    coc = k_q4 - (k_q4 * focus_mm) // np.maximum(z, 1)  # k*(1 - f/z); k*f <= 256 * 65535 fits int32
    coc = np.where(ok, np.clip(coc, -k_q4, k_q4), 0).astype(I32)
    return coc, np.where(ok, c8, 0).astype(I32), k_q4


def depth_prior(p8: np.ndarray, coc: np.ndarray, c8: np.ndarray, k_q4: int) -> np.ndarray:
    x8 = (np.abs(coc) * 256) // max(k_q4, 1)  # |coc| / K in Q8
    split8, width8 = round(DEPTH_SPLIT * 256), round(DEPTH_WIDTH * 256)
    pd8 = np.clip(((split8 - x8) * 255) // width8 + 128, 0, 255)  # Q8 of 1/255
    unc = (4 * p8 * (255 - p8)) // 255  # 4p(1-p), Q8
    w8 = (c8 * unc // 255) * round(DEPTH_PRIOR_WEIGHT * 256) // 256
    return np.clip(p8 + _rdiv(w8 * (pd8 - p8), 255), 0, 255).astype(I32)


def guided_coefficients(gray_w: np.ndarray, p8: np.ndarray, plan: StagePlan):
    """Integer guided filter. Returns (A Q12, B Q8 levels), for q = A*(I-128) + B + 128 levels."""
    r = plan.guide_radius
    n = (2 * r + 1) ** 2
    ic = gray_w.astype(I32) - 128
    pc = p8.astype(I32) - 128
    s_i, s_p = _boxsum(ic, r), _boxsum(pc, r)
    s_ii, s_ip = _boxsum(ic * ic, r), _boxsum(ic * pc, r)
    var_n2 = n * s_ii - s_i * s_i  # exact: var * n^2 (levels^2)
    cov_n2 = n * s_ip - s_i * s_p
    den = var_n2 + plan.guide_eps_levels2 * n * n
    a_q12 = _rdiv(cov_n2, (den + 2048) >> 12)
    mean_i_q6 = _rdiv(s_i * 64, n)  # |.| <= 8192, so a * mean fits int32 for |a| < 64
    b_q8 = _rdiv(s_p * 256, n) - ((a_q12 * mean_i_q6 + 512) >> 10)
    return _rdiv(_boxsum(a_q12, r), n), _rdiv(_boxsum(b_q8, r), n)


def alpha_q8(a_q12: np.ndarray, b_q8: np.ndarray, gray: np.ndarray) -> np.ndarray:
    """alpha = A*(I-128) + B + 128 levels, rounded to uint8 (255 = 1)."""
    x = ((a_q12 * (gray.astype(I32) - 128) + 8) >> 4) + b_q8 + 128 * 256
    return np.clip((x + 128) >> 8, 0, 255).astype(np.uint8)


def background_coc(coc, c8, alpha_w8: np.ndarray, plan: StagePlan, k_q4: int) -> np.ndarray:
    """Unsigned background CoC, Q4 working px."""
    if coc is None:
        return np.full(alpha_w8.shape, int(round(plan.max_coc_work * 16)), I32)
    omega = ((255 - alpha_w8.astype(I32)) * c8 + 127) // 255
    r = plan.fill_radius
    num = _boxsum(np.abs(coc) * omega, r) + k_q4
    den = _boxsum(omega, r) + 1
    return _rdiv(num, den)


def disc_sum(x: np.ndarray, rows: tuple[int, ...]) -> np.ndarray:
    """Exact integer sum over a flat disc: one horizontal box sum per row width, then shifted adds."""
    h = len(rows) // 2
    pad = np.pad(x, ((h, h), (0, 0), (0, 0)), mode="reflect")  # mirrored rows (= reflect-101)
    hsum: dict[int, np.ndarray] = {}
    out = np.zeros(x.shape, I32)
    n = x.shape[0]
    for i, hw in enumerate(rows):
        if hw not in hsum:
            hsum[hw] = cv2.boxFilter(
                pad, cv2.CV_32S, (2 * hw + 1, 1), normalize=False, borderType=cv2.BORDER_REFLECT_101
            )
        out += hsum[hw][i : i + n]
    return out


def layer_tables(plan: StagePlan):
    """For each CoC in Q4 (0..K): the lower layer index and the upper layer's share t (Q8)."""
    radii_q4 = [r * 16 for r in plan.radii]
    c = np.arange(int(round(plan.max_coc_work * 16)) + 1)
    lo = np.zeros(c.shape, np.int32)
    t8 = np.zeros(c.shape, np.int32)
    for i in range(len(radii_q4) - 1):
        a, b = radii_q4[i], radii_q4[i + 1]
        sel = (c > a) & (c < b)
        lo[sel] = i
        t8[sel] = np.round((c[sel] - a) * 256 / (b - a)).astype(np.int32)  # table built offline
        lo[c >= b] = i + 1
    return lo, t8


def blur_background(work: np.ndarray, alpha_w8: np.ndarray, c_q4: np.ndarray, plan: StagePlan) -> np.ndarray:
    e = plan.energy_q12[work].astype(I32)  # Q12, <= 16384
    a = alpha_w8.astype(I32)
    w8 = ((255 - a) * (255 - a) + 127) // 255  # (1 - alpha)^2, Q8
    p = (e * w8[..., None] + 8) >> 4
    stack = np.concatenate([p, w8[..., None]], axis=2).astype(I32)
    lo_t, t_t = layer_tables(plan)
    c = np.clip(c_q4, 0, len(lo_t) - 1)
    lo, t8 = lo_t[c], t_t[c]
    acc = np.zeros(e.shape, I32)
    e_eps = (e + 8) >> 4  # the epsilon term, 1 LSB of w
    for i, rows in enumerate(plan.disc_rows):
        wk = np.where(lo == i, 256 - t8, 0) + np.where((lo == i - 1) & (t8 > 0), t8, 0)
        if not wk.any():
            continue
        s = disc_sum(stack, rows)
        num = s[..., :3] + e_eps
        den = (s[..., 3] + 1)[..., None]
        q, rem = np.divmod(num, den)
        layer = q * 16 + _rdiv(rem * 16, den)  # Q12
        acc += layer * wk[..., None]
    e_out = np.clip((acc + 128) >> 8, 0, len(plan.inverse_q12) - 1)
    return plan.inverse_q12[e_out]


def trimap_q8(p8: np.ndarray, plan: StagePlan, cue=None) -> np.ndarray:
    """trimap.make_trimap in integers: uint8 0 / 128 (unknown) / KEEP8 / 255 from P(subject) Q8 and
    the depth cue (depth_edges.device_cue: integer depth, integer thresholds); KEEP8 pixels keep the
    guided filter's alpha, as golden pulls them towards it. The P thresholds are the golden ones
    rounded to 8 bits; the rules are trimap.py's, on the same kind of binary maps."""
    sure8 = int(round(trimap.P_SURE * 255))
    sure_fg, sure_bg, keep = trimap.make_trimap_maps(
        p8 >= 128, p8 >= sure8, p8 <= 255 - sure8, matting.band_radius(plan), cue
    )
    tri = np.full(p8.shape, 128, np.uint8)
    tri[keep] = KEEP8
    tri[sure_fg] = 255
    tri[sure_bg] = 0
    return tri


def device_cue(frame: Frame, plan: StagePlan, p8: np.ndarray):
    """What depth says, from the sensor boundary's uint16 millimetres and uint8 confidence."""
    if frame.depth_m is None or frame.confidence is None:
        return None
    d = frame.depth_m
    depth_mm = np.where(np.isfinite(d), np.clip(np.round(d * 1000), 0, 65535), 0).astype(np.uint16)
    conf8 = np.round(frame.confidence * 255).astype(np.uint8)
    sure8 = int(round(trimap.P_SURE * 255))
    return depth_edges.device_cue(depth_mm, conf8, frame.depth_source, plan, p8 >= sure8, p8 <= 255 - sure8)


def constrain(a_q12: np.ndarray, b_q8: np.ndarray, tri8: np.ndarray):
    """The device's cheaper stand-in for the band solve: the guided filter's alpha, with sure pixels
    (whose 3x3 neighbourhood is sure too, so bilinear upsampling keeps them) set exactly: A = 0 and
    B = +127 / -128 levels (alpha 255 / 0). Measured against golden in README (render section)."""
    sure = cv2.erode(((tri8 == 0) | (tri8 == 255)).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    a = np.where(sure, 0, a_q12).astype(I32)
    b = np.where(sure, np.where(tri8 == 255, 127 * 256 + 128, -128 * 256), b_q8).astype(I32)
    return a, b


def render(frame: Frame, plan: StagePlan, edges: str = "matting") -> dict:
    img = pad_to_plan(frame.image, plan)
    work = img if plan.scale == 1 else cv2.resize(img, (plan.work_w, plan.work_h), interpolation=cv2.INTER_AREA)
    gray_w = cv2.cvtColor(work, cv2.COLOR_RGB2GRAY)

    p8 = decode_probability_q8(frame.low_res, frame.spec)
    p8 = cv2.resize(p8, (plan.work_w, plan.work_h), interpolation=cv2.INTER_LINEAR)
    p8_raw = p8
    p8 = p8.astype(I32)
    if plan.mask_gain != 1:  # gain in Q8; 127.5 is the centre of 0..255
        g = int(round(plan.mask_gain * 256))
        p8 = np.clip(((2 * p8 - 255) * g + 256) // 512 + 128, 0, 255).astype(I32)
    coc, c8, k_q4 = circle_of_confusion(frame, plan)
    if coc is not None:
        p8 = depth_prior(p8, coc, c8, k_q4)
    a_q12, b_q8 = guided_coefficients(gray_w, p8, plan)
    if edges == "matting":
        tri8 = trimap_q8(p8_raw, plan, device_cue(frame, plan, p8_raw))
        a_q12, b_q8 = constrain(a_q12, b_q8, tri8)
        alpha_w8 = alpha_q8(a_q12, b_q8, gray_w)
        band = matting.band_radius(plan)
        holes = trimap.enclosed_holes(
            alpha_w8, tri8 == 0, p8_raw, one=255, deep=trimap.deep_inside(p8_raw >= 128, band)
        )
        if holes.any():
            tri8[holes] = 255
            a_q12, b_q8 = constrain(a_q12, b_q8, tri8)
            alpha_w8 = alpha_q8(a_q12, b_q8, gray_w)
        # translucent interior far from the clear background: the golden ramp, as sure subject where it
        # reaches half way (the guided coefficients take sure pixels only)
        far = trimap.far_from_clear(alpha_w8, tri8 == 0, p8_raw >= 128, tri8 == KEEP8, band, one=255) >= 0.5
        if far.any():
            tri8[far] = 255
            a_q12, b_q8 = constrain(a_q12, b_q8, tri8)
    alpha_w8 = alpha_q8(a_q12, b_q8, gray_w)

    gray = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY)
    sh = 2 * (2 * plan.scale).bit_length() - 2  # log2((2s)^2)
    half = 1 << (sh - 1)
    a_up = (upsample_int(a_q12, plan) + half) >> sh
    b_up = (upsample_int(b_q8, plan) + half) >> sh
    alpha8 = alpha_q8(a_up, b_up, gray)

    c_q4 = background_coc(coc, c8, alpha_w8, plan, k_q4 if coc is not None else 0)
    if frame.mode == "blur":
        if plan.radii:
            bg_w = blur_background(work, alpha_w8, c_q4, plan)
            r1_q4 = int(round(plan.radii[0] * 16))
            m8 = np.clip(_rdiv(c_q4 * 255, r1_q4), 0, 255).astype(np.uint8)
            weight = div255((255 - alpha8).astype(np.uint16) * upsample_u8(m8, plan))
            bg = upsample_u8(bg_w, plan)
        else:
            weight, bg = np.zeros(alpha8.shape, np.uint8), frame.image
    else:
        if frame.mode == "replace":
            assert frame.background is not None  # prepare_frame fits one for mode "replace"
            bg = frame.background
        else:
            bg = np.array(frame.chroma_rgb, np.uint8)
        weight = 255 - alpha8
    out = blend_u8(frame.image, bg, weight)
    coc_px = (c_q4 * plan.scale).astype(np.int16)
    if coc is not None:
        coc_px = np.where(coc < 0, -coc_px, coc_px)
    return {
        "composite": out,
        "alpha": alpha8.astype(np.float32) / np.float32(255),  # output boundary
        "coc": coc_px.astype(np.float32) / np.float32(16),
        "alpha_work": alpha_w8,
    }
