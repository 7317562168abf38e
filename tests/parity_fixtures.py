"""A tiny exported pair (float32 + int8 .tflite from the real import path) for the parity tests,
and a way to damage one layer's quantization on purpose. Built by code, never committed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from builders import keras_to_tflite, tiny_segmenter_keras, write_registry

from toolchain.bundle import record_files

MID = "tiny"


@dataclass
class TinyPair:
    root: Path
    registry: dict
    entry: object
    float_model: object
    representative: np.ndarray
    bundle: Path
    float_path: Path
    int8_path: Path
    images: list
    images_dir: Path


def build_tiny_pair(root: Path) -> TinyPair:
    import cv2

    from toolchain import calibration_set, quantize
    from toolchain.images import bundled_photos, to_model_input
    from toolchain.registry import load_registry, sha256_of
    from toolchain.sources import import_model

    models = root / "models"
    models.mkdir(parents=True)
    src = keras_to_tflite(tiny_segmenter_keras(), models / f"{MID}.tflite")
    reg = load_registry(write_registry(root, MID, "tflite", f"{MID}.tflite", 33, 33, "logits", sha=sha256_of(src)))
    entry = reg[MID]
    fm = import_model(entry, src, root / "work")
    rep = calibration_set.representative_set((33, 33), samples=12, seed=0, sources=["skimage"], min_samples=8)
    bundle = root / "out" / MID
    bundle.mkdir(parents=True)
    f32 = quantize.convert(fm, "float32", bundle / f"{MID}_float32.tflite")
    i8 = quantize.convert(fm, "int8", bundle / f"{MID}_int8.tflite", representative=rep)
    (bundle / "manifest.json").write_text(
        json.dumps(
            {  # the least an intact bundle carries (bundle_loader)
                "model_id": MID,
                "task": "segmentation",
                "input": {"size": [33, 33]},
                "outputs": [{"name": "logits", "kind": "logits", "shape": [1, 33, 33, 21]}],
                "models": {f32.name: {"precision": "float32"}, i8.name: {"precision": "int8"}},
            }
        )
    )
    record_files(bundle, "")
    images_dir = root / "images"
    images_dir.mkdir()
    photos = list(bundled_photos().items())[:4]
    for name, img in photos:
        cv2.imwrite(str(images_dir / f"{name}.png"), img[..., ::-1])
    images = [(f"{n}.png", to_model_input(img, (33, 33))) for n, img in photos]
    return TinyPair(root, reg, entry, fm, rep, bundle, f32, i8, images, images_dir)


def damage_scale(src: Path, dst: Path, tensor_name: str, factor: float = 32.0) -> Path:
    """Copy of an int8 model where one activation tensor's quantization step is `factor` times
    coarser: same real values, far fewer levels (what a bad calibration range does)."""
    from tensorflow.lite.tools import flatbuffer_utils as fu

    model = fu.read_model(str(src))
    hit = 0
    for t in model.subgraphs[0].tensors:
        if (t.name or b"").decode() == tensor_name and t.quantization is not None and t.quantization.scale is not None:
            t.quantization.scale = [float(s) * factor for s in t.quantization.scale]
            hit += 1
    assert hit == 1, f"tensor {tensor_name!r} not found once in {src}"
    fu.write_model(model, str(dst))
    return dst


def rename_tensors(src: Path, dst: Path) -> Path:
    """Copy with every tensor renamed (t0, t1, ...): what a file from another import path looks like."""
    from tensorflow.lite.tools import flatbuffer_utils as fu

    model = fu.read_model(str(src))
    for i, t in enumerate(model.subgraphs[0].tensors):
        t.name = f"t{i}".encode()
    fu.write_model(model, str(dst))
    return dst


def tiny_search_setup(root: Path):
    """(pair, calibrated flatbuffer, culprit ranking, recipe) for a mixed-float search on the tiny pair."""
    from toolchain import quantize
    from toolchain.parity import layers
    from toolchain.recipes import merge_defaults

    pair = build_tiny_pair(root)
    calibrated = quantize.calibrate_int8(pair.float_model, pair.representative)
    ranking = layers.compare_layers(pair.float_path, pair.int8_path, pair.images)["culprits"]
    recipe = merge_defaults({"parity": {"classes": [], "pixel_agreement_min": 0.5}})
    return pair, calibrated, ranking, recipe


def tiny_search(pair, calibrated, ranking, recipe, out: Path, budget: float, cap: int = 16, **engine) -> dict:
    """mixed.search on tiny_search_setup's pieces for a pixel-agreement budget; writes out/mixed.tflite.
    engine: mixed.search's engine keywords (engine, workers, width, ...)."""
    from toolchain.parity import mixed

    return mixed.search(
        pair.entry,
        recipe,
        pair.float_path,
        calibrated,
        ranking,
        pair.images,
        out / "mixed.tflite",
        budgets={"pixel_agreement_min": budget},
        max_conversions=cap,
        **engine,
    )
