"""The notebook's portrait pipeline, kept as a named baseline for comparison only.

Threshold the low-resolution segmentation (argmax in {person, cat}), resize the mask to full
resolution with nearest neighbour, zero the subject, 3x3 box-blur that image, and paste the subject
back: result = where(mask, image, blurred). Its faults are the reason render/ exists: the outline is
blocky, hair is cut off, and the zeroed subject darkens the background near the edge (a dark halo).
Not for shipping.
"""

from __future__ import annotations

import cv2
import numpy as np

from .model_output import decode_probability, normalize_spec, to_hwc


def notebook_mask(low_res_output: np.ndarray, output_spec: dict) -> np.ndarray:
    """The notebook's binary low-res mask: argmax class in the foreground classes (p > 0.5 for one channel)."""
    spec = normalize_spec(output_spec)
    a = to_hwc(np.asarray(low_res_output), spec)
    if a.shape[2] > 1:
        return np.isin(np.argmax(a, axis=2), spec["foreground_classes"])
    return decode_probability(a, spec) > 0.5


def notebook_render(image: np.ndarray, low_res_output: np.ndarray, output_spec: dict) -> dict:
    """-> {"composite": uint8 HxWx3, "alpha": float32 HxW in {0, 1}}."""
    h, w = image.shape[:2]
    small = notebook_mask(low_res_output, output_spec).astype(np.uint8)
    mask = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    bg = image.copy()
    bg[mask] = 0
    blurred = cv2.blur(bg, (3, 3))
    out = np.where(mask[..., None], image, blurred)
    return {"composite": out, "alpha": mask.astype(np.float32)}
