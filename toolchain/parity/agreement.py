"""Parity metrics on plain arrays, by task. Pure functions with known answers (tests check them)."""

from __future__ import annotations

import cv2
import numpy as np

from ..depth.align import align_scale_shift


def pixel_agreement(a_labels: np.ndarray, b_labels: np.ndarray) -> float:
    """Share of pixels with the same label (0..1)."""
    a, b = np.asarray(a_labels), np.asarray(b_labels)
    if a.shape != b.shape:
        raise ValueError(f"label maps differ in shape: {a.shape} vs {b.shape}")
    return float(np.mean(a == b))


def iou(a_mask: np.ndarray, b_mask: np.ndarray) -> float:
    """Intersection over union of two boolean masks; 1.0 when both are empty."""
    a, b = np.asarray(a_mask, bool), np.asarray(b_mask, bool)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def class_iou(ref_labels: np.ndarray, test_labels: np.ndarray, cls: int) -> float:
    return iou(ref_labels == cls, test_labels == cls)


def edge_band(mask: np.ndarray, width_px: int = 3) -> np.ndarray:
    """Pixels within `width_px` of the boundary of a boolean mask (both sides)."""
    m = np.asarray(mask, np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width_px + 1, 2 * width_px + 1))
    return (cv2.dilate(m, k) - cv2.erode(m, k)).astype(bool)


def band_agreement(ref_labels: np.ndarray, test_labels: np.ndarray, foreground: list[int], width_px: int = 3) -> float:
    """Label agreement inside a band around the reference foreground's edges (NaN if no edge)."""
    fg = np.isin(ref_labels, foreground)
    band = edge_band(fg, width_px)
    if not band.any():
        return float("nan")
    return float(np.mean(ref_labels[band] == test_labels[band]))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(a @ b / (na * nb))


def snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-noise ratio of `test` against `ref` in dB (inf when identical)."""
    ref, test = np.asarray(ref, np.float64), np.asarray(test, np.float64)
    noise = np.mean((ref - test) ** 2)
    signal = np.mean(ref**2)
    if noise == 0:
        return float("inf")
    if signal == 0:
        return float("-inf")
    return float(10.0 * np.log10(signal / noise))


def max_abs_error(ref: np.ndarray, test: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(ref, np.float64) - np.asarray(test, np.float64))))


def depth_metrics(pred: np.ndarray, ref: np.ndarray, *, align: bool = True, eps: float = 1e-6) -> dict:
    """δ1 (share with max(d/d̂, d̂/d) < 1.25), AbsRel and RMSE of `pred` vs `ref`, after alignment.

    Only pixels where the reference is positive count; aligned predictions are floored at eps.
    """
    ref = np.asarray(ref, np.float64)
    pred = align_scale_shift(pred, ref) if align else np.asarray(pred, np.float64)
    valid = np.isfinite(ref) & np.isfinite(pred) & (ref > eps)
    r, p = ref[valid], np.maximum(pred[valid], eps)
    ratio = np.maximum(r / p, p / r)
    return {
        "delta1": float(np.mean(ratio < 1.25)),
        "abs_rel": float(np.mean(np.abs(p - r) / r)),
        "rmse": float(np.sqrt(np.mean((p - r) ** 2))),
    }


def tensor_metrics(ref: np.ndarray, test: np.ndarray) -> dict:
    return {
        "cosine": cosine_similarity(ref, test),
        "snr_db": snr_db(ref, test),
        "max_abs_error": max_abs_error(ref, test),
    }
