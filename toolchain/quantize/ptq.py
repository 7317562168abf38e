"""Post-training quantization techniques for the w8a8 rung, registered by name.

Two kinds, each with one small interface:
- weight techniques, float .tflite -> equivalent float .tflite with changed weights/biases
  (`WEIGHT_TECHNIQUES`: "cle" and "bias_correction" in equalize.py, "adaround" in adaround.py);
  run in the order cle -> adaround -> bias_correction whatever order the recipe lists them in;
- activation range methods on the calibrated flatbuffer (`RANGE_METHODS`, ranges.py).

`w8a8` is the whole rung: the export's float32 .tflite (pixel input, normalization inside) ->
weight techniques -> re-import with the op-by-op importer (normalization already in the graph, so
scale 1 / offset 0) -> calibrate -> range search -> full-int8 file with uint8 pixel input.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..cache import array_digest
from ..errors import RecipeError
from ..registry import sha256_of
from ..sources.tflite_graph import import_tflite
from .adaround import adaround
from .conversions import uint8_input
from .equalize import bias_correction, equalize
from .graphedit import Editable, LayerStats
from .precisions import calibrate_int8, quantize_calibrated
from .ranges import RANGE_METHODS, search_ranges

WEIGHT_TECHNIQUES = ("cle", "adaround", "bias_correction")  # in the order they run
__all__ = ["WEIGHT_TECHNIQUES", "RANGE_METHODS", "apply_weight_techniques", "reimport", "w8a8"]


def check_names(techniques, ranges: str) -> None:
    unknown = [t for t in techniques if t not in WEIGHT_TECHNIQUES]
    if unknown or ranges not in RANGE_METHODS:
        raise RecipeError(
            f"unknown w8a8 technique(s) {unknown} or range method {ranges!r}",
            fix=f"techniques from {list(WEIGHT_TECHNIQUES)}, ranges from {sorted(RANGE_METHODS)}",
        )


def apply_weight_techniques(
    float_tflite: Path,
    out_path: Path,
    names,
    representative: np.ndarray,
    *,
    images: int = 8,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Write `out_path`: `float_tflite` with the named weight techniques applied. Returns
    {name: record} plus "seconds"."""

    check_names(names, "minmax")
    out_path = Path(out_path)
    work = out_path.with_suffix("")
    records, seconds = {}, {}
    cur = Path(float_tflite)
    idx = np.linspace(0, len(representative) - 1, min(images, len(representative))).round().astype(int)
    sample = representative[idx]
    if "cle" in names:
        t = time.monotonic()
        nxt = Path(f"{work}_cle.tflite")
        records["cle"] = equalize(cur, nxt, representative, progress=progress)  # ReLU6 maxima: every sample
        cur, seconds["cle"] = nxt, round(time.monotonic() - t, 1)
    rounded, stats = None, None
    if "adaround" in names or "bias_correction" in names:
        t = time.monotonic()
        convs = Editable(cur).convs()
        stats = LayerStats(cur, convs, sample, positions=1024, gram="adaround" in names)
        seconds["statistics"] = round(time.monotonic() - t, 1)
    if "adaround" in names:
        t = time.monotonic()
        nxt = Path(f"{work}_adaround.tflite")
        records["adaround"], rounded = adaround(cur, nxt, representative, stats=stats, progress=progress)
        seconds["adaround"] = round(time.monotonic() - t, 1)
        if "bias_correction" not in names:
            cur = nxt
    if "bias_correction" in names:
        t = time.monotonic()
        nxt = Path(f"{work}_bc.tflite")
        # the float weights are those before AdaRound; the int8 model holds AdaRound's (or nearest)
        records["bias_correction"] = bias_correction(
            cur, nxt, representative, quantized_weights=rounded, stats=stats, progress=progress
        )
        cur, seconds["bias_correction"] = nxt, round(time.monotonic() - t, 1)
    shutil.copyfile(cur, out_path)
    records["seconds"] = seconds
    return records


def reimport(
    entry,
    float_tflite: Path,
    workdir: Path,
    *,
    outputs_positions=None,
    with_labels: bool = False,
    leaky_relu_form: str = "op",
):
    """FloatModel of an exported float .tflite (pixel input, normalization already inside): the
    registry entry with scale 1 / offset 0 and the outputs the export kept, through import_tflite.
    Assumes the file's outputs are the kept outputs in the recipe's order (one output in every
    current recipe)."""

    positions = list(outputs_positions) if outputs_positions is not None else list(range(len(entry.outputs)))
    plain = dataclasses.replace(
        entry,
        input=dataclasses.replace(entry.input, scale=1.0, offset=0.0),
        outputs=[entry.outputs[i] for i in positions],
    )
    sub = Path(workdir) / "ptq"
    sub.mkdir(parents=True, exist_ok=True)
    return import_tflite(
        plain, float_tflite, sub, outputs=None, with_labels=with_labels, leaky_relu_form=leaky_relu_form
    )


def w8a8(
    entry,
    float_tflite: Path,
    representative: np.ndarray,
    out_path: Path,
    workdir: Path,
    *,
    techniques=("cle", "adaround", "bias_correction"),
    ranges: str = "mse",
    outputs_positions=None,
    with_labels: bool = False,
    leaky_relu_form: str = "op",
    progress: Callable[[str], None] | None = None,
) -> dict:
    """The w8a8 rung with post-training techniques; writes `out_path` (uint8 pixels in, int8 out).
    leaky_relu_form: how leaky ReLUs are written before conversion (sources/leaky_relu.py).
    Returns a JSON-able record for the manifest."""

    check_names(techniques, ranges)
    t0 = time.monotonic()
    sub = Path(workdir) / "ptq"
    sub.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "techniques": [t for t in WEIGHT_TECHNIQUES if t in techniques],
        "ranges": ranges,
        "leaky_relu": leaky_relu_form,
    }
    source = Path(float_tflite)
    if techniques:
        source = sub / f"{entry.id}_ptq_float.tflite"
        record["per_technique"] = _weights_once(float_tflite, source, techniques, representative, progress)
    model = reimport(
        entry,
        source,
        workdir,
        outputs_positions=outputs_positions,
        with_labels=with_labels,
        leaky_relu_form=leaky_relu_form,
    )
    calibrated = calibrate_int8(model, representative, progress=progress)
    calibrated, record["range_search"] = search_ranges(calibrated, representative, method=ranges, progress=progress)
    quantize_calibrated(calibrated, Path(out_path))
    _uint8_input(Path(out_path))
    record["seconds"] = round(time.monotonic() - t0, 1)
    if progress:
        progress(f"w8a8 {record['techniques']} + {ranges} ranges: {record['seconds']} s")
    return record


_WEIGHTS_MEMO: dict[tuple, tuple[bytes, dict]] = {}  # float file + techniques + samples -> weights, record


def _weights_once(float_tflite: Path, out_path: Path, techniques, representative: np.ndarray, progress) -> dict:
    """apply_weight_techniques, once per float file, techniques and calibration set in this process:
    the ArgMax labels variant takes the w8a8 file's weights (the techniques are deterministic, so a
    second run would write the same bytes; DeepLab: ~23 s)."""
    key = (
        sha256_of(Path(float_tflite)),
        tuple(t for t in WEIGHT_TECHNIQUES if t in techniques),
        array_digest(representative),
    )
    if key in _WEIGHTS_MEMO:
        blob, rec = _WEIGHTS_MEMO[key]
        Path(out_path).write_bytes(blob)
        if progress:  # the record stays the computed one: a bundle must not depend on what ran before
            progress(
                f"w8a8 weights ({', '.join(t for t in WEIGHT_TECHNIQUES if t in techniques)}): "
                "reused from this process's w8a8 file (same float file, techniques and samples)"
            )
        return rec
    rec = apply_weight_techniques(float_tflite, out_path, techniques, representative, progress=progress)
    _WEIGHTS_MEMO.clear()  # one entry: the model being exported
    _WEIGHTS_MEMO[key] = (Path(out_path).read_bytes(), rec)
    return rec


def _uint8_input(path: Path) -> None:
    """The client contract (uint8 pixels in): selective quantization leaves an int8 input."""
    uint8_input(path)
