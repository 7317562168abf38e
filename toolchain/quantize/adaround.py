"""AdaRound (Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training Quantization").

Each convolution's weights are rounded up or down on the converter's own per-channel int8 grid
(scale_o = max|w_o| / 127) so as to minimise the layer's output error on calibration data, not
each weight's own error. For a linear layer the output error of a rounding choice is
delta G delta^T (delta = rounded - float weights, G = E[x x^T] of the input patches), so the
calibration data enter only through G, gathered once at sampled output positions
(graphedit.LayerStats); each step is then one matrix product per layer.

Optimisation as in the paper: soft rounding h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1),
loss = output error / output error of nearest rounding + lambda * sum(1 - |2h - 1|^beta) / n,
beta annealed from 20 to 2, Adam, a few hundred steps; then h >= 0.5 rounds up. A layer whose
hard rounding is not better than nearest keeps nearest rounding.

The result is written as float weights that lie exactly on the grid (k * scale_o), with each
channel's largest |w| left at its original value so the converter derives the same scale and its
round-to-nearest reproduces the chosen rounding (tests/test_ptq.py checks the int8 file).
"""

from __future__ import annotations

import numpy as np

from .graphedit import Editable, LayerStats, channel_scales, from_matrix, weight_matrix

ZETA, GAMMA = 1.1, -0.1


def _h(v):
    return np.clip(1 / (1 + np.exp(-v)) * (ZETA - GAMMA) + GAMMA, 0, 1)


def _recon(delta, g, kind):
    """Mean over output channels of delta_o G delta_o^T (depthwise: G per channel)."""
    if kind == "conv":
        return float(np.mean(np.sum((delta @ g) * delta, axis=1)))
    return float(np.mean(np.einsum("ck,ckl,cl->c", delta, g, delta)))


def round_layer(
    m: np.ndarray, g: np.ndarray, kind: str, *, iterations: int = 200, lam: float = 0.05, lr: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, dict]:
    """Rows `m` (float weights) -> integer grid values k (same shape) chosen by AdaRound."""
    m = m.astype(np.float64)
    s = channel_scales(m).astype(np.float64)[:, None]
    x = m / s
    nearest = np.clip(np.round(x), -127, 127)
    fixed = np.abs(nearest) >= 127  # a channel's largest |w| keeps its grid point: the scale must not move
    floor = np.floor(x)
    rest = np.clip(x - floor, 1e-4, 1 - 1e-4)
    v = -np.log((ZETA - GAMMA) / (rest - GAMMA) - 1)
    g64 = g.astype(np.float64)
    err_nearest = _recon(s * nearest - m, g64, kind)
    if err_nearest <= 0:
        return nearest, {"error_nearest": 0.0, "error_adaround": 0.0, "used": False}
    # the loop runs in float32: its products with G are the cost (float64 took 2x as long)
    g, s32, m32, floor32, nearest32 = (a.astype(np.float32) for a in (g, s, m, floor, nearest))
    v = v.astype(np.float32)
    mom, vel = np.zeros_like(v), np.zeros_like(v)
    n = v.size
    warm = iterations // 5
    for it in range(iterations):
        sig = 1 / (1 + np.exp(-v))
        h = np.clip(sig * (ZETA - GAMMA) + GAMMA, 0, 1)
        k = np.where(fixed, nearest32, floor32 + h)
        delta = s32 * k - m32
        grad_k = (2 * (delta @ g) if kind == "conv" else 2 * np.einsum("ckl,cl->ck", g, delta)) * s32
        grad_k /= np.float32(m.shape[0] * err_nearest)
        if it >= warm:
            beta = 20 + (2 - 20) * (it - warm) / max(1, iterations - warm - 1)
            u = 2 * h - 1
            grad_k += lam / n * (-beta * np.abs(u) ** (beta - 1) * np.sign(u) * 2)
        inside = (sig * (ZETA - GAMMA) + GAMMA > 0) & (sig * (ZETA - GAMMA) + GAMMA < 1)
        grad_v = np.where(fixed | ~inside, 0.0, grad_k * (ZETA - GAMMA) * sig * (1 - sig))
        mom = 0.9 * mom + 0.1 * grad_v
        vel = 0.999 * vel + 0.001 * grad_v**2
        t = it + 1
        v -= lr * (mom / (1 - 0.9**t)) / (np.sqrt(vel / (1 - 0.999**t)) + 1e-12)
    hard = np.where(fixed, nearest, np.clip(floor + (_h(v) >= 0.5), -127, 127))
    err_ada = _recon(s * hard - m, g64, kind)
    used = err_ada < err_nearest
    return (hard if used else nearest), {"error_nearest": err_nearest, "error_adaround": err_ada, "used": bool(used)}


def grid_values(m: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Float weights on the grid: k * scale, with each row's largest |w| at its exact original value."""
    s = channel_scales(m)[:, None]
    out = (k * s).astype(np.float32)
    top = np.abs(k) >= 127
    out[top] = m[top]
    return out


def adaround(
    float_tflite,
    out_path,
    representative: np.ndarray,
    *,
    images: int = 8,
    positions: int = 1024,
    iterations: int = 200,
    stats: LayerStats | None = None,
    progress=None,
) -> tuple[dict, dict]:
    """AdaRound every float convolution; writes `out_path` with the pre-rounded weights.
    Returns (record, {weight tensor index: rounded float weights}) for bias correction."""
    ed = Editable(float_tflite)
    convs = ed.convs()
    if stats is None:
        idx = np.linspace(0, len(representative) - 1, min(images, len(representative))).round().astype(int)
        stats = LayerStats(float_tflite, convs, representative[idx], positions=positions)
    rounded, layers = {}, []
    for n, c in enumerate(convs):
        w = ed.get(c.w)
        m = weight_matrix(w, c.kind)
        k, rec = round_layer(m, stats.gram[c.op_index], c.kind, iterations=iterations)
        q = from_matrix(grid_values(m, k), c.kind, w.shape)
        ed.set(c.w, q)
        rounded[c.w] = q
        layers.append(rec)
        if progress and n % 10 == 0:
            progress(f"adaround {n + 1}/{len(convs)}")
    ed.write(out_path)
    ratios = [r["error_adaround"] / r["error_nearest"] for r in layers if r["error_nearest"] > 0]
    return (
        {
            "layers": len(layers),
            "improved": int(sum(r["used"] for r in layers)),
            "median_error_ratio_vs_nearest": float(np.median(ratios)) if ratios else None,
            "iterations": iterations,
            "positions_per_image": positions,
        },
        rounded,
    )
