"""One library call for the fused portrait stage: `render(...) -> RenderResult`.

The CLI (`portrait render --model ... --image ... [--depth ...] [--background ...]`) runs the model
and calls this; tests call it directly. Input rules are in plan.py; the math is in golden.py (float
reference) and device.py (fixed-point port), selected by `implementation`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from . import device, golden
from .plan import make_plan, prepare_frame


@dataclass
class RenderResult:
    composite: np.ndarray  # uint8 HxWx3 RGB
    alpha: np.ndarray  # float32 HxW in [0, 1]
    coc: np.ndarray  # float32, background CoC radius in full-resolution px, on the
    # working grid (coc_scale x smaller than the frame); < 0 in front of focus
    warnings: list[str] = field(default_factory=list)
    coc_scale: int = 1  # frame pixels per working pixel
    focus_m: float | None = None
    max_blur_px: float = 0.0
    foreground: np.ndarray | None = None  # uint8 HxWx3: decontaminated subject colours (edges="matting")
    model_file: str | None = None  # the bundle file that made the mask (set by render_photo)


def render(
    image_rgb_uint8,
    low_res_output,
    output_spec,
    depth_m=None,
    confidence=None,
    focus_m=None,
    focus_point=None,
    f_number=None,
    max_blur_px=None,
    mode="blur",
    background=None,
    chroma_rgb=(0, 255, 0),
    implementation="golden",
    edges="matting",
    depth_source="sensor",
) -> RenderResult:
    """Render one portrait frame.

    image_rgb_uint8: HxWx3 uint8 RGB, any size up to 12 MP and beyond.
    low_res_output: the segmentation model's output as it came out (logits / probabilities / labels;
      float or int8), read by `output_spec` (see model_output.py).
    depth_m, confidence: optional depth in metres (any size; NaN/inf/<=0 = holes) and its confidence
      in [0, 1] (or uint8 0..255).
    depth_source: "sensor" (a depth camera, GDepth, Apple disparity) or "monocular" (a depth model's
      relative depth): how far the alpha trusts depth (plan.DEPTH_SOURCES, depth_edges.py).
    focus_m / focus_point (x, y px): the focus distance; default: the subject's median depth.
    f_number or max_blur_px: the aperture; max_blur_px (CoC radius at infinity, full-res px) wins.
    mode: "blur", "replace" (needs background, any size) or "chroma" (solid chroma_rgb).
    implementation: "golden" (float32 reference) or "device" (fixed-point port).
    edges: "matting" (trimap + alpha solved in the band + foreground colours, matting.py) or "guided"
      (the stage before matting: guided filter on the mask only; kept to measure against).
    """
    frame = prepare_frame(
        image_rgb_uint8,
        low_res_output,
        output_spec,
        depth_m=depth_m,
        confidence=confidence,
        focus_m=focus_m,
        focus_point=focus_point,
        f_number=f_number,
        max_blur_px=max_blur_px,
        mode=mode,
        background=background,
        chroma_rgb=chroma_rgb,
        depth_source=depth_source,
    )
    plan = make_plan(
        frame.image.shape[0],
        frame.image.shape[1],
        frame.low_res.shape[:2],
        frame.max_blur_px,
        band_model_px=frame.spec.get("edge_band_model_px"),
    )
    if frame.mode == "blur" and frame.max_blur_px / plan.scale > plan.max_coc_work + 1e-6:
        frame.warnings.append(
            f"blur radius {frame.max_blur_px:.1f} px limited to "
            f"{plan.max_coc_work * plan.scale:.0f} px (bounded kernel)"
        )
    if edges not in ("matting", "guided"):
        raise InputError(f"edges {edges!r} is not known", fix="use 'matting' or 'guided'")
    if implementation == "golden":
        out = golden.render(frame, plan, edges=edges)
    elif implementation == "device":
        out = device.render(frame, plan, edges=edges)
    else:
        raise InputError(f"implementation {implementation!r} is not known", fix="use 'golden' or 'device'")
    a = out["alpha"]
    if float(a.max()) < 0.02:
        frame.warnings.append("mask is empty: the whole frame is treated as background")
    elif float(a.min()) > 0.98:
        frame.warnings.append("mask is full: the whole frame is subject and stays unchanged")
    return RenderResult(
        out["composite"],
        a,
        out["coc"],
        frame.warnings,
        plan.scale,
        frame.focus_m,
        frame.max_blur_px,
        out.get("foreground"),
    )
