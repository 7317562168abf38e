"""A segmentation model's low-resolution output -> subject probability, by its output spec.

The spec is data (it comes from the model's manifest), for example::

    {"kind": "logits", "dtype": "int8", "scale": 0.1, "zero_point": -3,
     "foreground_classes": [15, 8], "layout": "NHWC"}

- kind: "logits" (softmax over classes, or sigmoid for one channel), "probabilities" (one channel:
  P(subject); several: summed over the foreground classes) or "labels" (argmax class ids).
- dtype: "float32", "float16", "int8" or "uint8"; integer outputs are dequantized as
  (q - zero_point) * scale unless kind is "labels".
- layout: "NHWC" (default) or "NCHW"; a leading batch of 1 and a missing channel axis are accepted.
- edge_band_model_px (optional): how far, in output pixels, the model's outline may stand from the
  true edge: the half-width of the matting step's unknown band (matting.py; default
  matting.BAND_MODEL_PX). It comes from the registry's output entry through the manifest.

Two decoders: `decode_probability` (float32, the golden reference) and `decode_probability_q8`
(the device version: uint8 with 255 = certain subject, computed in float16). Also here:
`simulate_model_output`, which turns a true alpha matte into what a 257x257 model would emit, for
scenes where no real model runs. Not here: running models, or upsampling (golden.py / device.py).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import InputError

KINDS = ("logits", "probabilities", "labels")
DTYPES = ("float32", "float16", "int8", "uint8", "int32", "int64")


def normalize_spec(spec: dict | None) -> dict:
    """Fill defaults and check an output spec; unknown values are an InputError."""
    spec = dict(spec or {})
    out = {
        "kind": spec.get("kind", "probabilities"),
        "dtype": spec.get("dtype", "float32"),
        "scale": float(spec.get("scale", 1.0)),
        "zero_point": int(spec.get("zero_point", 0)),
        "foreground_classes": [int(c) for c in spec.get("foreground_classes", [15, 8])],
        "layout": spec.get("layout", "NHWC"),
    }
    band = spec.get("edge_band_model_px")
    if band is not None:
        try:
            band = float(band)
        except (TypeError, ValueError):
            band = float("nan")
        if not (np.isfinite(band) and 0 < band <= 16):
            raise InputError(
                f"output spec edge_band_model_px must be a number in (0, 16], got {spec.get('edge_band_model_px')!r}",
                where="output_spec['edge_band_model_px']",
                fix="leave it out for the default, or copy it from the model's manifest outputs",
            )
        out["edge_band_model_px"] = band
    if out["kind"] not in KINDS:
        raise InputError(
            f"output spec kind {out['kind']!r} is not known",
            where="output_spec['kind']",
            fix=f"use one of {', '.join(KINDS)}",
        )
    if out["dtype"] not in DTYPES:
        raise InputError(
            f"output spec dtype {out['dtype']!r} is not known",
            where="output_spec['dtype']",
            fix=f"use one of {', '.join(DTYPES)}",
        )
    if out["layout"] not in ("NHWC", "NCHW"):
        raise InputError(
            f"output spec layout {out['layout']!r} is not known", where="output_spec['layout']", fix="use NHWC or NCHW"
        )
    if not (out["scale"] > 0 and np.isfinite(out["scale"])):
        raise InputError(
            f"output spec scale must be a positive number, got {out['scale']}",
            where="output_spec['scale']",
            fix="copy scale from the model's quantization parameters",
        )
    return out


def to_hwc(output: np.ndarray, spec: dict) -> np.ndarray:
    """Any accepted layout -> [h, w, C] (C >= 1), dtype unchanged."""
    a = np.asarray(output)
    if a.ndim == 4:
        if a.shape[0] != 1:
            raise InputError(
                f"model output has batch {a.shape[0]}, expected 1",
                where=f"shape {a.shape}",
                fix="pass the output for one frame",
            )
        a = a[0]
    if a.ndim == 2:
        return a[:, :, None]
    if a.ndim != 3:
        raise InputError(
            f"model output must be 2-D to 4-D, got shape {a.shape}",
            fix="pass the segmentation output tensor as the model returned it",
        )
    if spec["layout"] == "NCHW":
        a = np.moveaxis(a, 0, -1)
    return a


def _foreground(spec: dict, n_classes: int) -> list[int]:
    fg = [c for c in spec["foreground_classes"] if 0 <= c < n_classes]
    if not fg:
        raise InputError(
            f"none of the foreground classes {spec['foreground_classes']} exist in an output with {n_classes} classes",
            where="output_spec['foreground_classes']",
            fix="list the label ids of the subject classes (e.g. 15 person, 8 cat)",
        )
    return fg


def _dequantize(a: np.ndarray, spec: dict, dtype) -> np.ndarray:
    if spec["kind"] != "labels" and np.issubdtype(a.dtype, np.integer):
        return ((a.astype(np.int32) - spec["zero_point"]).astype(dtype) * dtype(spec["scale"])).astype(dtype)
    return a.astype(dtype)


def decode_probability(output: np.ndarray, spec: dict | None) -> np.ndarray:
    """Golden: low-res output -> float32 [h, w] probability that a pixel is the subject."""
    spec = normalize_spec(spec)
    a = to_hwc(output, spec)
    n = a.shape[2]
    if spec["kind"] == "labels":
        lab = a[..., 0] if n == 1 else np.argmax(a, axis=2)
        return np.isin(lab, spec["foreground_classes"]).astype(np.float32)
    x = _dequantize(a, spec, np.float32)
    x = np.where(np.isfinite(x), x, np.float32(0))  # a NaN logit carries no evidence
    if spec["kind"] == "probabilities":
        p = x[..., 0] if n == 1 else x[..., _foreground(spec, n)].sum(axis=2)
    elif n == 1:
        p = 1.0 / (1.0 + np.exp(-np.clip(x[..., 0], -30, 30)))
    else:
        e = np.exp(x - x.max(axis=2, keepdims=True))
        p = e[..., _foreground(spec, n)].sum(axis=2) / e.sum(axis=2)
    return np.clip(p, 0, 1).astype(np.float32)


def decode_probability_q8(output: np.ndarray, spec: dict | None) -> np.ndarray:
    """Device: the same decode in float16 arithmetic; returns uint8 (0 background .. 255 subject).

    A DSP would do the int8 case with a 256-entry table per class; float16 gives the same result
    to within the final rounding to 8 bits.
    """
    spec = normalize_spec(spec)
    a = to_hwc(output, spec)
    n = a.shape[2]
    f16 = np.float16
    if spec["kind"] == "labels":
        lab = a[..., 0] if n == 1 else np.argmax(a, axis=2)
        return np.where(np.isin(lab, spec["foreground_classes"]), 255, 0).astype(np.uint8)
    x = _dequantize(a, spec, f16)
    x = np.where(np.isfinite(x), x, f16(0)).astype(f16)
    if spec["kind"] == "probabilities":
        p = x[..., 0] if n == 1 else x[..., _foreground(spec, n)].sum(axis=2, dtype=f16)
    elif n == 1:
        p = f16(1) / (f16(1) + np.exp(-np.clip(x[..., 0], f16(-10), f16(10))))
    else:
        e = np.exp(x - x.max(axis=2, keepdims=True))  # each term in (0, 1]: no fp16 overflow
        p = e[..., _foreground(spec, n)].sum(axis=2, dtype=f16) / e.sum(axis=2, dtype=f16)
    p = np.clip(p, f16(0), f16(1)).astype(f16)
    return (p * f16(255) + f16(0.5)).astype(np.uint8)


def simulate_model_output(
    alpha: np.ndarray,
    *,
    size: tuple[int, int] = (257, 257),
    seed: int = 0,
    label_id: int = 15,
    n_classes: int = 21,
    dtype: str = "float32",
    softness_px: float = 0.8,
    noise: float = 0.4,
) -> tuple[np.ndarray, dict]:
    """What a segmentation model at `size` (h, w) would emit for a scene whose true matte is `alpha`.

    The matte is area-downsampled (the input is stretched to the model's square, as DeepLab is),
    blurred by `softness_px` model pixels (models are soft at edges and lose strands), turned into
    21-class logits with class `label_id` as the subject and seeded noise. `dtype="int8"` also
    quantizes them. Returns (output [1, h, w, n_classes], spec). Deterministic for a seed.
    """
    h, w = size
    a = cv2.resize(np.asarray(alpha, np.float32), (w, h), interpolation=cv2.INTER_AREA)
    if softness_px > 0:
        a = cv2.GaussianBlur(a, (0, 0), softness_px)
    rng = np.random.default_rng(seed)
    p = np.clip(a, 0.005, 0.995)
    logit = np.log(p / (1 - p)) * 1.2 + rng.normal(0, noise, p.shape)
    logits = np.full((h, w, n_classes), -4.0, np.float32) + rng.normal(0, noise, (h, w, n_classes))
    logits[..., 0] = 0.0
    logits[..., label_id] = logit
    spec = {
        "kind": "logits",
        "dtype": "float32",
        "scale": 1.0,
        "zero_point": 0,
        "foreground_classes": [label_id],
        "layout": "NHWC",
    }
    if dtype == "int8":
        scale, zp = 0.1, 0
        q = np.clip(np.round(logits / scale) + zp, -128, 127).astype(np.int8)
        spec.update(dtype="int8", scale=scale, zero_point=zp)
        return q[None], spec
    return logits.astype(np.float32)[None], spec
