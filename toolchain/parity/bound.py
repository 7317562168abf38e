"""The output-grid bound: the best any file with a given output contract can do against float.

A quantized file hands its result over on a fixed grid: an int8 (or int16) output tensor with the
file's scale and zero point. Take the float model's own outputs, exact in every layer, and round
them onto that grid: the parity figures of the rounded outputs against float are what a perfect
quantized file with this output contract would get. No file with this contract can do better on
these images except by luck, so a budget above the bound is one nobody can meet.

A recipe may therefore judge a figure relative to the bound instead of absolutely:

    [parity]
    relative_to_bound = { pixel_agreement = 0.003, worst_class_iou = 0.01 }

means "pixel_agreement >= bound - 0.003 and worst_class_iou >= bound - 0.01" (for a figure where
lower is better, such as abs_rel: "<= bound + margin"), on every judged kernel set.

Not for: computing the figures themselves (gate.py does, on the rounded outputs as on any others).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import RecipeError
from ..runtime import TfliteRunner

# Figures where a larger value is better; every other budgeted figure is better smaller.
HIGHER_IS_BETTER = frozenset(
    {
        "pixel_agreement",
        "pixel_agreement_worst",
        "worst_class_iou",
        "edge_band_agreement",
        "delta1",
        "iou",
        "cosine",
        "snr_db",
    }
)
LOWER_IS_BETTER = frozenset({"abs_rel", "rmse", "mean_abs_diff", "blur_mean_px", "blur_p99_px"})

_RANGES = {np.dtype(np.int8): (-128, 127, 8), np.dtype(np.uint8): (0, 255, 8), np.dtype(np.int16): (-32768, 32767, 16)}


@dataclass(frozen=True)
class OutputGrid:
    """The values a quantized output tensor can hold: (q - zero_point) * scale, q in [qmin, qmax]."""

    scale: float
    zero_point: int
    qmin: int
    qmax: int
    bits: int

    @property
    def lo(self) -> float:
        return (self.qmin - self.zero_point) * self.scale

    @property
    def hi(self) -> float:
        return (self.qmax - self.zero_point) * self.scale

    def round(self, x: np.ndarray) -> np.ndarray:
        """x rounded onto the grid as a quantizing kernel would write it (nearest step, clipped)."""
        q = np.clip(np.round(np.asarray(x, np.float64) / self.scale) + self.zero_point, self.qmin, self.qmax)
        return (q - self.zero_point) * self.scale

    def describe(self) -> str:
        return f"{self.bits}-bit output grid [{self.lo:.4g}, {self.hi:.4g}], step {self.scale:.4g}"


def output_grid(quant_path: Path) -> OutputGrid | None:
    """The grid of the file's first output (the one the gate judges), or None when that output is
    float (nothing rounds it) or not a quantized value (e.g. ArgMax class indices)."""
    outs = TfliteRunner(quant_path).output_details()
    d = outs[min(outs)]
    scale, zp = d.get("quantization", (0.0, 0))
    dtype = np.dtype(d["dtype"])
    if not scale or dtype not in _RANGES:
        return None
    qmin, qmax, bits = _RANGES[dtype]
    return OutputGrid(float(scale), int(zp), qmin, qmax, bits)


def rounded_outputs(refs: list[np.ndarray], grid: OutputGrid | None) -> list[np.ndarray]:
    """The float outputs on the file's output grid (unchanged where there is no grid)."""
    return [np.asarray(r, np.float64) if grid is None else grid.round(r) for r in refs]


def check_margins(margins: dict, where: str = "recipe") -> dict:
    """A recipe's relative_to_bound table, validated: {figure: margin >= 0}."""
    if not isinstance(margins, dict) or not margins:
        raise RecipeError(
            f"relative_to_bound must be a table of figure = margin, got {margins!r}",
            where=where,
            fix="e.g. relative_to_bound = { pixel_agreement = 0.003, worst_class_iou = 0.01 }",
        )
    known = HIGHER_IS_BETTER | LOWER_IS_BETTER
    for fig, m in margins.items():
        if fig not in known:
            raise RecipeError(
                f"relative_to_bound names an unknown figure {fig!r}",
                where=where,
                fix=f"use figures from {sorted(known)}",
            )
        if not isinstance(m, (int, float)) or isinstance(m, bool) or m < 0:
            raise RecipeError(f"relative_to_bound.{fig} must be a margin >= 0, got {m!r}", where=where)
    return {k: float(v) for k, v in margins.items()}


def judge_relative(figures: dict, bound: dict, margins: dict) -> list[str]:
    """Failures of `figures` against `bound` within `margins` (figures missing or NaN in either are skipped:
    e.g. no image where float finds a class)."""
    failures = []
    for fig, margin in margins.items():
        value, best = figures.get(fig), bound.get(fig)
        if not _number(value) or not _number(best):
            continue
        if fig in HIGHER_IS_BETTER and value < best - margin - 1e-12:
            failures.append(f"{fig} = {value:.4f} < bound {best:.4f} - {margin}")
        elif fig in LOWER_IS_BETTER and value > best + margin + 1e-12:
            failures.append(f"{fig} = {value:.4f} > bound {best:.4f} + {margin}")
    return failures


def gap_to_bound(figures: dict, bound: dict, margins: dict) -> dict:
    """How far each judged figure is from its bound (positive = worse than the bound), for reports."""
    out = {}
    for fig in margins:
        value, best = figures.get(fig), bound.get(fig)
        if _number(value) and _number(best):
            v, b = float(value), float(best)  # type: ignore[arg-type]  # _number checked both
            out[fig] = b - v if fig in HIGHER_IS_BETTER else v - b
    return out


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))
