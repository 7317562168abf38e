"""Render one photo with an exported bundle: the library call behind `portrait render`.

Runs the bundle's segmentation model (int8 by default) on the photo as its manifest says, reads
optional depth (a depth photo, a .npy in metres, or a 16-bit PNG in millimetres) or runs a depth
bundle's handoff model (`run_depth_model`: relative inverse depth, no metric scale), and calls the
fused stage (`api.render`). Writes the composite and, when asked, the alpha (8-bit PNG), the
decontaminated foreground (RGBA PNG) and the inverse depth used (16-bit PNG, nearer is brighter).
Not for: the stage's math (golden.py / device.py / matting.py).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..bundle import handoff_model
from ..bundle_loader import Bundle, open_bundle
from ..depth.readers import read_depth_photo
from ..errors import InputError
from ..images import load_rgb, to_model_input
from ..runtime import TfliteRunner
from .api import RenderResult, render

_KIND = {"logits": "logits", "probabilities": "probabilities", "labels": "labels"}


def resolve_bundle(model: str | Path | Bundle) -> Bundle:
    """A bundle folder, zip, or model id whose bundle is in the output folder, opened by the bundle
    loader (schema and SHA-256 of every file checked before any file is run)."""
    return model if isinstance(model, Bundle) else open_bundle(model)


def output_spec(manifest: dict, model_file: str) -> dict:
    """The fused stage's output spec from the manifest (outputs come dequantized from the runner)."""
    first = manifest["outputs"][0]
    kind = _KIND.get(first.get("kind"), "logits")
    if model_file.endswith("_labels.tflite"):
        kind = "labels"
    spec = {
        "kind": kind,
        "dtype": "float32" if kind != "labels" else "uint8",
        "foreground_classes": list(manifest.get("foreground_classes", {}).values()) or [1],
        "layout": "NHWC",
    }
    if first.get("edge_band_model_px") is not None:  # the registry's word on how well it places edges
        spec["edge_band_model_px"] = first["edge_band_model_px"]
    return spec


SEGMENTATION_DEFAULT = "handoff_cpu"


def segmentation_file(manifest: dict, precision: str = SEGMENTATION_DEFAULT) -> str:
    """The bundle file `precision` names: "handoff_cpu" (the fastest file that met the budget on
    XNNPACK, the default), "handoff" (the first ladder rung that met), or a precision suffix
    (int8, float32, w8a16, ...: <id>_<precision>.tflite, met or not)."""
    if precision in ("handoff_cpu", "handoff"):
        name = manifest.get("handoff_cpu") if precision == "handoff_cpu" else handoff_model(manifest)
        if not name:
            raise InputError(
                f"bundle {manifest.get('model_id')} names no {precision}",
                where="manifest.json",
                fix="export it again, or pass --precision int8 / float32",
            )
        return name
    return f"{manifest['model_id']}_{precision}.tflite"


def run_segmentation(
    bundle: str | Path | Bundle, image: np.ndarray, precision: str = SEGMENTATION_DEFAULT, kernels: str = "xnnpack"
):
    b = resolve_bundle(bundle)
    manifest = b.manifest
    if manifest["task"] not in ("segmentation", "mask"):
        raise InputError(
            f"{manifest['model_id']} is a {manifest['task']} model, not a segmentation model",
            fix="pass a segmentation bundle (deeplab… or selfie_segmenter)",
        )
    name = segmentation_file(manifest, precision)
    if name not in manifest["models"]:
        raise InputError(f"bundle has no {name}", where=str(b.root), fix="choose another --precision")
    runner = TfliteRunner(b.path(name), kernels=kernels)
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
        d = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if d is None or d.dtype != np.uint16:
            raise InputError(f"{p.name} is not a 16-bit PNG", fix="store depth in millimetres as 16-bit PNG")
        depth = d.astype(np.float32) / 1000.0
        depth[d == 0] = np.nan
        return depth, None
    if suffix in (".jpg", ".jpeg"):
        photo = read_depth_photo(p)  # GDepth, then Apple MPF; an error lists what each reader found
        if photo.depth_m is not None:
            return photo.depth_m.astype(np.float32), photo.confidence
        if photo.disparity is None:
            raise InputError(
                f"{p.name} carries neither depth nor disparity",
                where=str(p),
                fix="pass a portrait photo with depth, or a depth map",
            )
        with np.errstate(divide="ignore"):
            return np.where(photo.disparity > 0, 1.0 / photo.disparity, np.nan).astype(np.float32), None
    raise InputError(
        f"unknown depth format {suffix!r}",
        where=str(p),
        fix="use .npy (metres), 16-bit .png (millimetres) or a GDepth / iPhone portrait .jpg",
    )


INVERSE_KINDS = ("relative_inverse_depth", "inverse_depth", "disparity")  # larger = nearer
DEPTH_KINDS = ("relative_depth", "depth")  # larger = farther
FAR_PERCENTILE = 2.0  # relative inverse depth: this percentile is taken as "infinitely far" ...
NEAR_PERCENTILE = 99.5  # ... and this one as the nearest; pseudo-depth 1 / s in between (no metric scale)


def run_depth_model(model: str | Path, image: np.ndarray, kernels: str = "xnnpack") -> tuple[np.ndarray, str]:
    """Run a depth bundle's handoff model on a photo -> (relative inverse depth float32 at the model's
    output size, larger = nearer, the file that ran). The manifest's `handoff_cpu` wins over `handoff`;
    a depth output that grows with distance is inverted (1 / d)."""
    b = resolve_bundle(model)
    bundle, manifest = b.root, b.manifest
    if manifest.get("task") != "depth":
        raise InputError(
            f"{manifest.get('model_id')} is a {manifest.get('task')} model, not a depth model",
            where=str(bundle),
            fix="pass a depth bundle to --depth-model (e.g. pydnet_pp_mobile)",
        )
    name = manifest.get("handoff_cpu") or handoff_model(manifest)
    if not name or name not in manifest["models"]:
        raise InputError(
            f"depth bundle {manifest.get('model_id')} has no handoff model",
            where=f"{bundle}/manifest.json (handoff_cpu / handoff: {name!r})",
            fix="export it again; a depth export that failed its parity gate hands nothing off",
        )
    runner = TfliteRunner(bundle / name, kernels=kernels)
    outs = runner.run(to_model_input(image, tuple(manifest["input"]["size"])))
    out = np.asarray(outs[sorted(outs)[0]], np.float32)
    out = out.reshape(out.shape[-3:-1]) if out.ndim >= 3 else out
    kind = (manifest.get("outputs") or [{}])[0].get("kind", "relative_depth")
    if kind in INVERSE_KINDS:
        inv = out
    elif kind in DEPTH_KINDS:
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(out > 0, 1.0 / np.maximum(out, 1e-6), 0).astype(np.float32)
    else:
        raise InputError(
            f"depth output kind {kind!r} is not known",
            where=f"{bundle}/manifest.json outputs[0].kind",
            fix=f"use one of {', '.join(INVERSE_KINDS + DEPTH_KINDS)}",
        )
    return inv.astype(np.float32), name


def pseudo_depth(inverse: np.ndarray) -> np.ndarray:
    """Relative inverse depth (any scale and offset) -> a unit-less pseudo-depth the stage's thin-lens
    CoC can use: s = (inv - far) / (near - far) in (0, 1], depth = 1 / s. Only ratios to the focus
    distance matter (coc = K (1 - focus / z)), so no metric scale is needed; the far percentile is
    treated as infinity (CoC = K there)."""
    inv = np.asarray(inverse, np.float32)
    ok = np.isfinite(inv)
    if not ok.any():
        raise InputError("the depth model's output has no finite value", fix="check the depth bundle")
    lo, hi = np.percentile(inv[ok], [FAR_PERCENTILE, NEAR_PERCENTILE])
    s = np.clip((inv - lo) / max(float(hi - lo), 1e-9), 1e-3, 1.0)
    return np.where(ok, 1.0 / s, np.nan).astype(np.float32)


def monocular_depth(depth_model: str | Path, image: np.ndarray) -> tuple[np.ndarray, str]:
    """A depth bundle's pseudo-depth for a photo (at the model's resolution, the photo's aspect) and
    the file that ran."""
    inv, ran = run_depth_model(depth_model, image)
    # the model saw the photo stretched to its input size: stretch its map back to the photo's aspect
    f = max(inv.shape) / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * f)), max(1, round(image.shape[0] * f)))
    return pseudo_depth(cv2.resize(inv, size, interpolation=cv2.INTER_LINEAR)), ran


def inverse_depth_png(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """Depth (metres or pseudo-depth; NaN / <= 0 = hole) -> uint16 inverse depth at the photo's size,
    nearest sampling as the stage samples it: 65535 at the nearest pixel, 0 at holes and infinity."""
    d = np.asarray(depth, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(np.isfinite(d) & (d > 0), 1.0 / d, 0).astype(np.float32)
    top = float(inv.max())
    q = np.round(inv / top * 65535) if top > 0 else np.zeros_like(inv)
    q = q.astype(np.uint16)
    return cv2.resize(q, (width, height), interpolation=cv2.INTER_NEAREST)


def _write(path: Path, image: np.ndarray, what: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA if image.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    try:
        ok = cv2.imwrite(str(path), image)
    except cv2.error:
        ok = False
    if not ok:
        raise InputError(f"cannot write the {what} to {path}", fix="use a .png name in a writable folder")


def render_photo(
    model: str | Path,
    image_path: str | Path,
    out_path: str | Path,
    *,
    depth: str | Path | None = None,
    background: str | Path | None = None,
    mode: str | None = None,
    f_number: float | None = None,
    max_blur_px: float | None = None,
    focus_m: float | None = None,
    implementation: str = "golden",
    precision: str = SEGMENTATION_DEFAULT,
    depth_model: str | Path | None = None,
    alpha_out: str | Path | None = None,
    foreground_out: str | Path | None = None,
    depth_out: str | Path | None = None,
    edges: str = "matting",
) -> RenderResult:
    """Segment `image_path` with the bundle's model, render the portrait, write `out_path` (PNG/JPEG)
    and the optional outputs (alpha 8-bit PNG, foreground RGBA PNG, inverse depth 16-bit PNG)."""
    for p in (alpha_out, foreground_out, depth_out):
        if p is not None and Path(p).suffix.lower() != ".png":
            raise InputError(f"{p} must be a .png file", fix="alpha, foreground and depth are written as PNG")
    if depth is not None and depth_model is not None:
        raise InputError("--depth and --depth-model both given", fix="pass one depth source")
    if depth_out is not None and depth is None and depth_model is None:
        raise InputError("--depth-out needs depth", fix="pass --depth or --depth-model")
    bundle = resolve_bundle(model)  # integrity first: a damaged bundle is named before the photo is read
    image = load_rgb(image_path)
    low_res, spec = run_segmentation(bundle, image, precision=precision)
    depth_m = confidence = None
    depth_source = "sensor"
    notes = []
    if depth is not None:
        depth_m, confidence = read_depth(depth)
    elif depth_model is not None:
        depth_m, ran = monocular_depth(depth_model, image)
        depth_source = "monocular"
        notes.append(f"depth from {ran} (relative, no metric scale)")
    bg = load_rgb(background) if background is not None else None
    result = render(
        image,
        low_res,
        spec,
        depth_m=depth_m,
        confidence=confidence,
        focus_m=focus_m,
        f_number=f_number,
        max_blur_px=max_blur_px,
        mode=mode or ("replace" if bg is not None else "blur"),
        background=bg,
        implementation=implementation,
        edges=edges,
        depth_source=depth_source,
    )
    result.warnings.extend(notes)
    result.model_file = segmentation_file(bundle.manifest, precision)
    _write(Path(out_path), result.composite, "composite")
    if alpha_out is not None:
        _write(Path(alpha_out), np.clip(np.rint(result.alpha * 255), 0, 255).astype(np.uint8), "alpha")
    if foreground_out is not None:
        fg = result.foreground if result.foreground is not None else image
        a8 = np.clip(np.rint(result.alpha * 255), 0, 255).astype(np.uint8)
        _write(Path(foreground_out), np.dstack([fg, a8]), "foreground")
    if depth_out is not None and depth_m is not None:
        _write(Path(depth_out), inverse_depth_png(depth_m, *image.shape[:2]), "inverse depth")
    return result
