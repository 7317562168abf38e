"""A tiny exported bundle (33x33 DeepLab-shaped model, float32 + int8) for the device-simulator
tests, built once per test process with the real export pipeline; no ../shared needed."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

_CACHE: dict[str, Path] = {}


def tiny_bundle(labels: bool = False) -> Path:
    """Path of a bundle folder; callers copy it before changing it."""
    key = f"labels={labels}"
    if key in _CACHE:
        return _CACHE[key]
    import cv2
    from builders import keras_to_tflite, tiny_segmenter_keras, write_registry

    from toolchain.export import export_model
    from toolchain.images import bundled_photos
    from toolchain.recipes import merge_defaults
    from toolchain.registry import load_registry, sha256_of

    d = Path(tempfile.mkdtemp(prefix="sim-tiny-"))
    (d / "models").mkdir()
    keras_to_tflite(tiny_segmenter_keras(), d / "models" / "tiny.tflite")
    reg = load_registry(
        write_registry(
            d, "tiny", "tflite", "tiny.tflite", 33, 33, "logits", sha=sha256_of(d / "models" / "tiny.tflite")
        )
    )
    (d / "images").mkdir()
    for name, img in list(bundled_photos().items())[:2]:
        cv2.imwrite(str(d / "images" / f"{name}.png"), img[..., ::-1])
    recipe = merge_defaults(
        {
            "precisions": ["float32", "int8"],
            "label_variant": labels,
            "onnx": False,
            "calibration": {"samples": 8, "sources": ["skimage"], "min_samples": 4},
            "import_check": {"max_abs_diff": 1e-3},
            "parity": {"pixel_agreement_min": 0.0, "classes": []},
        }
    )
    old = os.environ.get("PORTRAIT_MODELS_DIR")
    os.environ["PORTRAIT_MODELS_DIR"] = str(d / "models")
    try:
        res = export_model(
            "tiny", out_root=d / "out", recipe=recipe, images_folder=d / "images", registry=reg, quiet=True
        )
    finally:
        if old is None:
            os.environ.pop("PORTRAIT_MODELS_DIR", None)
        else:
            os.environ["PORTRAIT_MODELS_DIR"] = old
    _CACHE[key] = res.bundle
    return res.bundle


def copy_bundle(dst: Path, labels: bool = False) -> Path:
    src = tiny_bundle(labels)
    out = Path(dst) / src.name
    shutil.copytree(src, out)
    return out
