"""Render one photo with an exported bundle: the library call behind `portrait render`.

Runs the bundle's segmentation model (int8 by default) on the photo as its manifest says, reads
optional depth (a depth photo, a .npy in metres, or a 16-bit PNG in millimetres), and calls the
fused stage (`api.render`). Not for: the stage's math (golden.py / device.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import paths
from ..bundle import read_manifest
from ..errors import InputError
from ..images import load_rgb, to_model_input
from .api import RenderResult, render

_KIND = {"logits": "logits", "probabilities": "probabilities", "labels": "labels"}


def resolve_bundle(model: str | Path) -> Path:
    """A bundle folder, or a model id whose bundle is in the output folder."""
    p = Path(model)
    if (p / "manifest.json").is_file():
        return p
    q = paths.out_dir() / str(model)
    if (q / "manifest.json").is_file():
        return q
    raise InputError(f"no exported bundle for {model!r}", where=f"looked in {p} and {q}",
                     fix="run `make export-int8` (or `portrait export <id>`) first, or pass a bundle folder")


def output_spec(manifest: dict, model_file: str) -> dict:
    """The fused stage's output spec from the manifest (outputs come dequantized from the runner)."""
    first = manifest["outputs"][0]
    kind = _KIND.get(first.get("kind"), "logits")
    if model_file.endswith("_labels.tflite"):
        kind = "labels"
    return {"kind": kind, "dtype": "float32" if kind != "labels" else "uint8",
            "foreground_classes": list(manifest.get("foreground_classes", {}).values()) or [1],
            "layout": "NHWC"}


def run_segmentation(bundle: Path, image: np.ndarray, precision: str = "int8", kernels: str = "xnnpack"):
    from ..runtime import TfliteRunner
    manifest = read_manifest(bundle)
    if manifest["task"] not in ("segmentation", "mask"):
        raise InputError(f"{manifest['model_id']} is a {manifest['task']} model, not a segmentation model",
                         fix="pass a segmentation bundle (deeplab… or selfie_segmenter)")
    name = f"{manifest['model_id']}_{precision}.tflite"
    if not (bundle / name).is_file():
        raise InputError(f"bundle has no {name}", where=str(bundle), fix="choose another --precision")
    runner = TfliteRunner(bundle / name, kernels=kernels)
    outs = runner.run(to_model_input(image, tuple(manifest["input"]["size"])))
    return outs[sorted(outs)[0]], output_spec(manifest, name)


def read_depth(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Depth in metres (NaN = unknown) and optional confidence, from a file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"depth file not found: {p}", fix="check the path")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return np.asarray(np.load(p), np.float32), None
    if suffix == ".png":
        import cv2
        d = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if d is None or d.dtype != np.uint16:
            raise InputError(f"{p.name} is not a 16-bit PNG", fix="store depth in millimetres as 16-bit PNG")
        depth = d.astype(np.float32) / 1000.0
        depth[d == 0] = np.nan
        return depth, None
    if suffix in (".jpg", ".jpeg"):
        from ..depth.readers import read_depth_photo
        photo = read_depth_photo(p)  # GDepth, then Apple MPF; an error lists what each reader found
        if photo.depth_m is not None:
            return photo.depth_m.astype(np.float32), photo.confidence
        with np.errstate(divide="ignore"):
            return np.where(photo.disparity > 0, 1.0 / photo.disparity, np.nan).astype(np.float32), None
    raise InputError(f"unknown depth format {suffix!r}", where=str(p),
                     fix="use .npy (metres), 16-bit .png (millimetres) or a GDepth / iPhone portrait .jpg")


def render_photo(model: str | Path, image_path: str | Path, out_path: str | Path, *, depth: str | Path | None = None,
                 background: str | Path | None = None, mode: str | None = None, f_number: float | None = None,
                 max_blur_px: float | None = None, focus_m: float | None = None,
                 implementation: str = "golden", precision: str = "int8") -> RenderResult:
    """Segment `image_path` with the bundle's model, render the portrait, write `out_path` (PNG/JPEG)."""
    import cv2
    bundle = resolve_bundle(model)
    image = load_rgb(image_path)
    low_res, spec = run_segmentation(bundle, image, precision=precision)
    depth_m = confidence = None
    if depth is not None:
        depth_m, confidence = read_depth(depth)
    bg = load_rgb(background) if background is not None else None
    result = render(image, low_res, spec, depth_m=depth_m, confidence=confidence, focus_m=focus_m,
                    f_number=f_number, max_blur_px=max_blur_px,
                    mode=mode or ("replace" if bg is not None else "blur"), background=bg,
                    implementation=implementation)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out_path), cv2.cvtColor(result.composite, cv2.COLOR_RGB2BGR)):
        raise InputError(f"cannot write {out_path}", fix="use a .png or .jpg name in a writable folder")
    return result
