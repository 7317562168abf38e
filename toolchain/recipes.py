"""Export recipes (export/recipes/<model>.toml): precisions, calibration, budgets, allowed float ops.

Recipes are data; this module reads and validates them and fills documented defaults.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from . import paths
from .errors import RecipeError
from .quantize import ladder

DEFAULTS: dict[str, Any] = {
    "precisions": ["float32", "float16", "dynamic", "int8"],
    "label_variant": False,
    "onnx": True,
    "goldens": True,  # golden vectors for the on-device checker (toolchain/device/goldens.py)
    "outputs": None,  # positions of the source outputs to keep; None keeps all
    "calibration": {"samples": 100, "seed": 0, "sources": ["photos", "skimage"], "min_samples": 8},
    "import_check": {},
    "onnx_check": {"max_abs_diff": 1e-3, "samples": 3},
    "int8": {"allow_float_ops": []},
    "parity": {"kernels": "both"},  # judge every budget on XNNPACK and the reference kernels
}


def load_recipe(name: str, recipes_dir: Path | None = None) -> dict:
    path = Path(recipes_dir or paths.RECIPES_DIR) / f"{name}.toml"
    if not path.is_file():
        raise RecipeError(
            f"no export recipe named {name!r}",
            where=str(path),
            fix="add export/recipes/<model>.toml (copy an existing one)",
        )
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"recipe is not valid TOML: {exc}", where=str(path)) from exc
    return merge_defaults(raw, where=str(path))


IMAGE_SETS = ("photos", "depth_photos")  # folders of PORTRAIT_DATA_DIR a recipe's parity may be judged on


def merge_defaults(raw: dict, where: str = "recipe") -> dict:
    recipe = copy.deepcopy(DEFAULTS)
    for key, value in raw.items():
        if isinstance(value, dict) and isinstance(recipe.get(key), dict):
            recipe[key].update(value)
        else:
            recipe[key] = value
    bad = [p for p in recipe["precisions"] if p not in DEFAULTS["precisions"]]
    if bad:
        raise RecipeError(f"unknown precision(s) {bad}", where=where, fix=f"use {DEFAULTS['precisions']}")
    samples = recipe["calibration"]["samples"]
    if not isinstance(samples, int) or samples < 1:
        raise RecipeError(f"calibration.samples must be a positive integer, got {samples!r}", where=where)
    if recipe["parity"].get("kernels") not in ("both", "reference", "xnnpack"):
        raise RecipeError('parity.kernels must be "both", "reference" or "xnnpack"', where=where)
    sets = recipe["parity"].get("image_sets")
    if sets is not None and (not isinstance(sets, list) or not sets or not set(sets) <= set(IMAGE_SETS)):
        raise RecipeError(
            f"parity.image_sets must be a non-empty list from {list(IMAGE_SETS)}, got {sets!r}",
            where=where,
            fix='e.g. image_sets = ["photos", "depth_photos"]',
        )
    ladder.settings(recipe)
    recipe["_path"] = where
    return recipe
