"""Cross-layer equalization and bias correction (Nagel et al. 2019, "Data-Free Quantization").

Cross-layer equalization: for two convolutions in a row, W1 (out channel i) -> W1_i / s_i,
b1_i -> b1_i / s_i, W2 (in channel i) -> W2_i * s_i, with s_i = sqrt(r1_i / r2_i) (r: max |w| of
the channel in each layer), so both layers' channel ranges meet in the middle and the tensor
between them has even channel ranges for its one int8 scale. Exact where the activation between
them is positive-homogeneous: none or ReLU. ReLU6 is not (relu6(y / s) * s = clip(y, 0, 6 s)):
a channel is scaled there only if its largest value over the whole calibration set, max_i, is at
most 3, and only by s_i >= 2 max_i / 6, so both the old and the new clip point stay at least 2x
above every value seen (headroom for other images); other channels keep s = 1.
Nothing is equalized across hard-swish or any other op, nor when the first layer's output feeds
anything else.

Bias correction: int8 rounding of W shifts each output channel's mean by E[(W_q - W) x]; the
expected input patch (over calibration images, at sampled positions, padding included) gives that
shift, and the bias absorbs it. W_q is the per-channel grid the converter uses (nearest rounding),
or the weights already pre-rounded by AdaRound.
"""

from __future__ import annotations

import numpy as np

from .graphedit import (
    Conv,
    Editable,
    LayerStats,
    channel_scales,
    from_matrix,
    round_nearest,
    weight_matrix,
)

_EQUALIZABLE = {"NONE", "RELU", "RELU6"}
_RELU6_HEADROOM = 2.0


def cle_pairs(ed: Editable) -> list[tuple[Conv, Conv]]:
    """(first, second) convolutions where the first's output feeds only the second, through an
    activation CLE can cross."""
    convs = ed.convs()
    by_input: dict[int, list[Conv]] = {}
    for c in convs:
        by_input.setdefault(c.x, []).append(c)
    pairs = []
    for c1 in convs:
        if c1.activation not in _EQUALIZABLE or ed.is_graph_output(c1.y):
            continue
        users = ed.consumers(c1.y)
        nxt = by_input.get(c1.y, [])
        if len(users) != 1 or len(nxt) != 1 or nxt[0].op_index != users[0]:
            continue
        pairs.append((c1, nxt[0]))
    return pairs


def equalize(
    float_tflite, out_path, representative: np.ndarray, *, images: int = 100, iterations: int = 2, progress=None
) -> dict:
    """Cross-layer equalization of every eligible pair; writes `out_path`, returns a record."""
    ed = Editable(float_tflite)
    pairs = cle_pairs(ed)
    needs_max = [c1 for c1, _ in pairs if c1.activation == "RELU6"]
    out_max = {}
    if needs_max:
        stats = LayerStats(float_tflite, needs_max, _pick(representative, images), positions=1, gram=False)
        out_max = stats.out_max
    spread_before = [_spread(ed, c1) for c1, _ in pairs]
    for _ in range(iterations):
        for c1, c2 in pairs:
            w1, w2 = ed.get(c1.w), ed.get(c2.w)
            m1 = weight_matrix(w1, c1.kind)  # out_i rows
            r1 = np.max(np.abs(m1), axis=1)
            r2 = _input_channel_range(w2, c2.kind)
            if r1.shape != r2.shape:
                continue
            s = np.where((r1 > 0) & (r2 > 0), np.sqrt(r1 / np.maximum(r2, 1e-30)), 1.0)
            if c1.activation == "RELU6":
                mx = out_max[c1.op_index]  # of the current weights: updated below after each scaling
                # both clip points (6 and 6 s) stay >= 2x the largest value seen on the whole
                # calibration set, so images it does not hold are very unlikely to reach either
                ok = mx <= 6.0 / _RELU6_HEADROOM
                s = np.where(ok, np.maximum(s, _RELU6_HEADROOM * mx / 6.0), 1.0)
                out_max[c1.op_index] = mx / s
            s = s.astype(np.float32)
            ed.set(c1.w, from_matrix(m1 / s[:, None], c1.kind, w1.shape))
            if c1.b is not None:
                ed.set(c1.b, ed.get(c1.b) / s)
            ed.set(c2.w, _scale_input_channels(w2, c2.kind, s))
    spread_after = [_spread(ed, c1) for c1, _ in pairs]
    ed.write(out_path)
    rec = {
        "pairs": len(pairs),
        "pairs_across_relu6": len(needs_max),
        "iterations": iterations,
        "median_channel_range_spread_before": float(np.median(spread_before)) if spread_before else None,
        "median_channel_range_spread_after": float(np.median(spread_after)) if spread_after else None,
    }
    if progress:
        progress(f"cross-layer equalization: {len(pairs)} pairs")
    return rec


def _spread(ed: Editable, conv: Conv) -> float:
    """Largest over smallest output-channel weight range of a layer (1 = even)."""
    r = np.max(np.abs(weight_matrix(ed.get(conv.w), conv.kind)), axis=1)
    r = r[r > 0]
    return float(r.max() / r.min()) if len(r) else 1.0


def _input_channel_range(w2: np.ndarray, kind: str) -> np.ndarray:
    if kind == "conv":  # O,H,W,I
        return np.max(np.abs(w2), axis=(0, 1, 2))
    return np.max(np.abs(w2), axis=(0, 1, 2))  # 1,H,W,C: channel c reads input channel c


def _scale_input_channels(w2: np.ndarray, kind: str, s: np.ndarray) -> np.ndarray:
    return w2 * s.reshape(1, 1, 1, -1)


def _pick(representative: np.ndarray, n: int) -> np.ndarray:
    idx = np.linspace(0, len(representative) - 1, min(n, len(representative))).round().astype(int)
    return representative[idx]


def bias_correction(
    float_tflite,
    out_path,
    representative: np.ndarray,
    *,
    images: int = 8,
    quantized_weights: dict[int, np.ndarray] | None = None,
    stats: LayerStats | None = None,
    progress=None,
) -> dict:
    """Subtract each conv's expected int8 weight-rounding shift from its bias; writes `out_path`.

    quantized_weights: conv weight tensor index -> the float values the int8 model will hold (from
    AdaRound); others are rounded to nearest on the converter's grid. `float_tflite` holds the
    float weights W."""
    ed = Editable(float_tflite)
    convs = [c for c in ed.convs() if c.b is not None]
    stats = stats or LayerStats(float_tflite, convs, _pick(representative, images), positions=512, gram=False)
    shifts = []
    for c in convs:
        w = ed.get(c.w)
        m = weight_matrix(w, c.kind)
        q = (
            weight_matrix(quantized_weights[c.w], c.kind)
            if quantized_weights and c.w in quantized_weights
            else round_nearest(m)
        )
        mu = stats.mean[c.op_index]  # conv: K; depthwise: k x C
        d = q - m
        shift = d @ mu if c.kind == "conv" else np.einsum("ck,kc->c", d, mu)
        assert c.b is not None  # convs without a bias were left out above
        b = ed.get(c.b)
        ed.set(c.b, b - shift.astype(np.float32))
        if quantized_weights and c.w in quantized_weights:  # the pre-rounded weights go in too
            ed.set(c.w, quantized_weights[c.w])
        scale = channel_scales(m)
        shifts.append(float(np.max(np.abs(shift)) / max(float(np.max(np.abs(b))), float(scale.max()), 1e-12)))
    ed.write(out_path)
    if progress:
        progress(f"bias correction: {len(convs)} layers")
    return {"layers": len(convs), "max_relative_shift": max(shifts) if shifts else 0.0}
