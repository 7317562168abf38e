"""Golden (float32) fused stage: mask upsample -> circle of confusion -> bokeh blur -> composite.

Written to be read: each step is one function, in the order the stage runs them. device.py does the
same steps in integer arithmetic and is compared against this by tests (tests/test_render_device.py).
Heavy per-pixel work uses cv2 (multithreaded) so the reference is also fast enough to ship.

Steps, on a working grid of at most 1024 px on the long side (plan.py fixes every size):
1. decode the model output into P(subject) and upsample it bilinearly to the working grid;
2. circle_of_confusion: signed CoC radius from depth, thin lens: coc = K * (1 - focus / z),
   K = CoC at infinity; holes and low confidence fall back to K;
3. depth_prior: where the mask is uncertain, depth nudges it (near the focus plane -> subject);
4. guided_coefficients: a guided filter (He et al.) with the grey photo as guide turns the soft,
   blocky mask into an alpha that follows hair; its linear coefficients are upsampled so full-
   resolution alpha = A * grey + B keeps full-resolution detail;
5. background_coc: CoC carried from nearby background pixels under the subject's edge, so the
   background behind a hair strand is blurred like the background, not like the subject;
6. blur_background: flat-disc blurs of radius 1, 2, 4, 8, 16 (bounded) of the frame weighted by
   background weight (1 - alpha)^2 and normalised by the summed weight: the subject is never
   gathered and no dark halo forms. Values are boosted above 0.75 first and compressed after, so
   highlights become bright discs. Each pixel interpolates between the two layers around its CoC;
7. composite: out = I + (1 - alpha) * m * (blurred - I), m = min(CoC, 1) mixes in the sharp frame for
   the (nearly) in-focus background.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..depth.blur import signed_coc
from . import depth_edges, matting, trimap
from .model_output import decode_probability
from .plan import (
    DEPTH_PRIOR_WEIGHT,
    DEPTH_SPLIT,
    DEPTH_WIDTH,
    HIGHLIGHT_KNEE,
    Frame,
    StagePlan,
    depth_sample_index,
    disc_kernel,
    pad_to_plan,
)

F32 = np.float32
EPS_W = F32(1.0 / 255.0)  # one 8-bit step of background weight: keeps the division defined
UPSAMPLE_RADIUS = 1  # guided upsampling of the solved alpha: box radius (working px) ...
UPSAMPLE_EPS = 1e-4  # ... and regulariser (grey in [0, 1]): small, so strands follow the photo


def _box(x: np.ndarray, r: int, normalize: bool = True) -> np.ndarray:
    return cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), normalize=normalize, borderType=cv2.BORDER_REFLECT_101)


def upsample(x: np.ndarray, plan: StagePlan, interp=cv2.INTER_LINEAR) -> np.ndarray:
    """Working grid -> full frame (bilinear, pixel centres aligned), cropped to the frame."""
    if plan.scale == 1:
        up = x
    else:
        up = cv2.resize(x, (plan.pad_w, plan.pad_h), interpolation=interp)
    return up[: plan.height, : plan.width]


def circle_of_confusion(frame: Frame, plan: StagePlan):
    """Signed CoC radius (working px; < 0 in front of focus) and confidence on the working grid."""
    if frame.depth_m is None:
        return None, None
    assert frame.confidence is not None  # prepare_frame makes one with every depth map
    assert frame.focus_m is not None  # ... and a focus distance
    rows, cols = depth_sample_index(plan, frame.depth_m.shape)
    z = frame.depth_m[rows[:, None], cols[None, :]]
    conf = frame.confidence[rows[:, None], cols[None, :]].astype(F32)
    coc = signed_coc(z, frame.focus_m, plan.max_coc_work)  # depth/blur.py: the one thin-lens formula
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.isfinite(F32(frame.focus_m) / z)
    return coc, np.where(ok, conf, F32(0)).astype(F32)


def depth_prior(p: np.ndarray, coc: np.ndarray, conf: np.ndarray, plan: StagePlan) -> np.ndarray:
    """Move uncertain mask values towards what depth says (near the focus plane = subject)."""
    x = np.abs(coc) / F32(max(plan.max_coc_work, 1e-6))
    pd = np.clip((F32(DEPTH_SPLIT) - x) / F32(DEPTH_WIDTH) + F32(0.5), 0, 1)
    w = conf * F32(4) * p * (F32(1) - p) * F32(DEPTH_PRIOR_WEIGHT)
    return (p + w * (pd - p)).astype(F32)


def guided_coefficients(guide: np.ndarray, p: np.ndarray, plan: StagePlan):
    """Guided filter with a grey guide in [0, 1]: returns the box-averaged (A, B) of q = A*I + B."""
    r = plan.guide_radius
    eps = F32(plan.guide_eps_levels2 / 255.0**2)
    mean_i, mean_p = _box(guide, r), _box(p, r)
    var_i = _box(guide * guide, r) - mean_i * mean_i
    cov = _box(guide * p, r) - mean_i * mean_p
    a = cov / (var_i + eps)
    b = mean_p - a * mean_i
    return _box(a, r), _box(b, r)


def background_coc(coc, conf, alpha_w: np.ndarray, plan: StagePlan) -> np.ndarray:
    """Unsigned CoC of the background at each working pixel (K everywhere without depth)."""
    k = F32(plan.max_coc_work)
    if coc is None:
        return np.full(alpha_w.shape, k, F32)
    omega = (F32(1) - alpha_w) * conf
    r = plan.fill_radius
    num = _box(np.abs(coc) * omega, r, normalize=False) + EPS_W * k
    den = _box(omega, r, normalize=False) + EPS_W
    return (num / den).astype(F32)


def layer_weights(c: np.ndarray, radii) -> list[np.ndarray]:
    """Hat weights: each pixel splits 1 between the two layers whose radii enclose its CoC."""
    out = []
    for i, r in enumerate(radii):
        w = np.zeros(c.shape, F32)
        if i == 0:
            w[c <= r] = 1
        if i == len(radii) - 1:
            w[c >= r] = 1
        if i > 0:
            lo = radii[i - 1]
            sel = (c > lo) & (c < r)
            w[sel] = (c[sel] - lo) / F32(r - lo)
        if i < len(radii) - 1:
            hi = radii[i + 1]
            sel = (c > r) & (c < hi)
            w[sel] = (hi - c[sel]) / F32(hi - r)
        out.append(w)
    return out


def blur_background(work_rgb: np.ndarray, alpha_w: np.ndarray, c: np.ndarray, plan: StagePlan) -> np.ndarray:
    """Depth-dependent disc blur of the background; returns uint8 RGB on the working grid."""
    energy = plan.energy[work_rgb]  # highlight boost
    w = (F32(1) - alpha_w) ** 2  # background weight; the subject is not gathered
    stack = np.concatenate([energy * w[..., None], w[..., None]], axis=2)
    acc = np.zeros(energy.shape, F32)
    for rows, wk in zip(plan.disc_rows, layer_weights(c, plan.radii)):
        if not wk.any():
            continue
        s = cv2.filter2D(stack, -1, disc_kernel(rows), borderType=cv2.BORDER_REFLECT_101)
        layer = (s[..., :3] + EPS_W * energy) / (s[..., 3:] + EPS_W)  # normalised: no dark halo
        acc += wk[..., None] * layer
    return np.clip(np.round(compress(acc, plan) * F32(255)), 0, 255).astype(np.uint8)


def compress(energy: np.ndarray, plan: StagePlan) -> np.ndarray:
    """Inverse of the highlight boost: energy -> value in [0, 1]. Below the knee it is the identity."""
    value = energy.copy()
    sel = energy > F32(HIGHLIGHT_KNEE)
    if sel.any():
        value[sel] = np.interp(energy[sel], plan.inverse_e, plan.inverse_x)
    return value


def working_image(frame: Frame, plan: StagePlan) -> np.ndarray:
    img = pad_to_plan(frame.image, plan)
    return img if plan.scale == 1 else cv2.resize(img, (plan.work_w, plan.work_h), interpolation=cv2.INTER_AREA)


def upsample_mask(frame: Frame, plan: StagePlan, work: np.ndarray, coc, conf):
    """Steps 1, 3, 4: model output -> (full-resolution alpha, working-grid alpha)."""
    gray_w = cv2.cvtColor(work, cv2.COLOR_RGB2GRAY).astype(F32) / F32(255)
    p = decode_probability(frame.low_res, frame.spec)
    p = cv2.resize(p, (plan.work_w, plan.work_h), interpolation=cv2.INTER_LINEAR)
    if plan.mask_gain != 1:
        p = np.clip((p - F32(0.5)) * F32(plan.mask_gain) + F32(0.5), 0, 1)
    if coc is not None:
        p = depth_prior(p, coc, conf, plan)
    a, b = guided_coefficients(gray_w, p, plan)
    alpha_w = np.clip(a * gray_w + b, 0, 1)
    gray = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY).astype(F32) / F32(255)
    alpha = np.clip(upsample(a, plan) * gray + upsample(b, plan), 0, 1)
    return alpha, alpha_w


def composite(frame: Frame, plan: StagePlan, work, alpha, alpha_w, coc, conf, fg=None) -> dict:
    """Steps 5-7 for a given alpha (the truth renderer in quality.py enters here with the true matte).

    fg: decontaminated foreground colours (full resolution) or None for the photo itself. With fg,
    blur: out = (1 - m) * I + m * (alpha * F + (1 - alpha) * blurred), m the in-focus mix below;
    replace / chroma: out = alpha * F + (1 - alpha) * B."""
    c = background_coc(coc, conf, alpha_w, plan)
    subject = frame.image if fg is None else fg
    if frame.mode == "blur":
        if plan.radii:
            bg_w = blur_background(work, alpha_w, c, plan)
            m = np.clip(c / F32(plan.radii[0]), 0, 1)
            bg = np.ascontiguousarray(upsample(bg_w, plan))
            if fg is None:
                m_up = upsample(m, plan)
                weight = np.ascontiguousarray((F32(1) - alpha) * m_up)
                out = cv2.blendLinear(frame.image, bg, F32(1) - weight, weight)
            else:
                layered = cv2.blendLinear(subject, bg, alpha, F32(1) - alpha)
                if float(m.min()) >= 1:  # the whole background is out of focus: the mix is the identity
                    out = layered
                else:
                    m_up = np.ascontiguousarray(upsample(m, plan))
                    out = cv2.blendLinear(frame.image, layered, F32(1) - m_up, m_up)
        else:
            out = frame.image.copy()
    else:
        if frame.mode == "replace":
            assert frame.background is not None  # prepare_frame fits one for mode "replace"
            bg = frame.background
        else:
            bg = np.empty_like(frame.image)
        if frame.mode == "chroma":
            bg[:] = frame.chroma_rgb
        out = cv2.blendLinear(subject, bg, alpha, F32(1) - alpha)
    signed = np.copysign(c, coc) if coc is not None else c
    return {"composite": out, "alpha": alpha.astype(F32), "coc": signed * F32(plan.scale), "alpha_work": alpha_w}


def guided_alpha_work(p: np.ndarray, gray_w: np.ndarray, plan: StagePlan, coc, conf) -> np.ndarray:
    """The guided stage's alpha on the working grid (steps 3, 4 of upsample_mask) from P(subject)."""
    if plan.mask_gain != 1:
        p = np.clip((p - F32(0.5)) * F32(plan.mask_gain) + F32(0.5), 0, 1)
    if coc is not None:
        p = depth_prior(p, coc, conf, plan)
    a, b = guided_coefficients(gray_w, p, plan)
    return np.clip(a * gray_w + b, 0, 1)


def matte_mask(frame: Frame, plan: StagePlan, work, coc, conf):
    """Steps 1, 3m, 4m (edges="matting"): model output -> trimap -> alpha solved in the band
    (matting.py) on the working grid -> full resolution by a guided filter on the photo (A, B of
    alpha = A * grey + B upsampled); the sure subject stays exactly 1 and the sure background 0.
    Returns (alpha full-res, alpha working grid, foreground correction Q8 int16 on the working grid or
    None, trimap)."""
    p = decode_probability(frame.low_res, frame.spec)
    p = cv2.resize(p, (plan.work_w, plan.work_h), interpolation=cv2.INTER_LINEAR)
    cue = depth_edges.golden_cue(frame, plan, p >= trimap.P_SURE, p <= 1 - trimap.P_SURE)
    gray_w = cv2.cvtColor(work, cv2.COLOR_RGB2GRAY).astype(F32) / F32(255)
    m = matting.matte(work, p, plan, cue, keep=guided_alpha_work(p, gray_w, plan, coc, conf))
    alpha_w = m.alpha
    delta = None if m.fg_delta is None else np.round(m.fg_delta * F32(255)).astype(np.int16)
    if plan.scale == 1:
        return np.ascontiguousarray(alpha_w[: plan.height, : plan.width]), alpha_w, delta, m.trimap
    r, eps = UPSAMPLE_RADIUS, F32(UPSAMPLE_EPS)
    mean_i, mean_p = _box(gray_w, r), _box(alpha_w, r)
    a = (_box(gray_w * alpha_w, r) - mean_i * mean_p) / (_box(gray_w * gray_w, r) - mean_i * mean_i + eps)
    b = mean_p - a * mean_i
    a, b = _box(a, r), _box(b, r)
    # sure pixels whose bilinear footprint is sure too: A = 0, B = 0 or 1, so they come out exact
    sure = cv2.erode(((m.trimap == 0) | (m.trimap == 1)).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    a[sure] = 0
    b[sure] = m.trimap[sure]
    gray = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY)
    alpha = cv2.multiply(upsample(a, plan), gray, scale=1.0 / 255.0, dtype=cv2.CV_32F)
    alpha = cv2.add(alpha, upsample(b, plan))
    np.clip(alpha, 0, 1, out=alpha)
    return alpha, alpha_w, delta, m.trimap


def foreground(frame: Frame, plan: StagePlan, delta) -> np.ndarray:
    """Decontaminated foreground colours at full resolution: the photo plus the working grid's
    correction F - I (int16 levels), bilinearly upsampled; saturating add."""
    if delta is None:
        return frame.image
    d = delta if plan.scale == 1 else upsample(delta, plan)
    return cv2.add(frame.image, np.ascontiguousarray(d[: plan.height, : plan.width]), dtype=cv2.CV_8U)


def render(frame: Frame, plan: StagePlan, edges: str = "matting") -> dict:
    work = working_image(frame, plan)
    coc, conf = circle_of_confusion(frame, plan)
    if edges == "guided":  # the stage before matting (kept to measure against)
        alpha, alpha_w = upsample_mask(frame, plan, work, coc, conf)
        return composite(frame, plan, work, alpha, alpha_w, coc, conf)
    alpha, alpha_w, delta, trimap = matte_mask(frame, plan, work, coc, conf)
    fg = foreground(frame, plan, delta)
    out = composite(frame, plan, work, alpha, alpha_w, coc, conf, fg=fg)
    out["foreground"] = fg
    out["trimap_work"] = trimap
    return out
