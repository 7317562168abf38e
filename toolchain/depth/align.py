"""Scale-and-shift alignment of a relative depth (or inverse depth) map to a reference.

A relative depth model's output is right up to an unknown scale and shift, so both the parity gate
(int8 vs float32, parity/agreement.py) and the evaluation against ground truth (evaluate/truth_metrics.py)
fit them by least squares before comparing. Not for: metric depth (depth16.py, registration.py).
"""

from __future__ import annotations

import numpy as np


def align_scale_shift(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Least-squares s, t minimising |s*pred + t - ref|^2; returns s*pred + t."""
    p, r = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
    m = np.isfinite(p) & np.isfinite(r) if mask is None else (mask & np.isfinite(p) & np.isfinite(r))
    A = np.stack([p[m], np.ones(m.sum())], axis=1)
    (s, t), *_ = np.linalg.lstsq(A, r[m], rcond=None)
    return s * p + t
