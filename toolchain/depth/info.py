"""What a photo carries: the library call behind `portrait depth-info`.

`depth_info(path)` reads a JPEG with `read_depth_photo(require_depth=False)` and describes each plane
(image, depth, disparity, confidence, portrait matte, semantic mattes) with its size and range, plus
the EXIF orientation; `write_planes(photo, folder)` writes them as PNGs. Not for rendering.

Files written by --write (all upright, i.e. EXIF orientation applied):
- image.png: 8-bit RGB.
- depth.png: 16-bit, depth in millimetres (0 = none): the format `portrait render --depth` reads.
  Values beyond 65.535 (Near/Far units for a relative GDepth map) are clipped, and said so.
- disparity.png: 16-bit, nearer is brighter: 65535 * (d - min) / (max - min); min/max (1/m) are in
  info.json, so the values can be recovered.
- confidence.png, matte.png, <kind>_matte.png (hair, skin, teeth, ...): 8-bit, 255 = 1.
- info.json: what --json prints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from toolchain.depth.readers import DepthPhoto, read_depth_photo
from toolchain.errors import InputError

ORIENTATION_NAMES = {
    1: "normal",
    2: "mirror horizontal",
    3: "rotate 180",
    4: "mirror vertical",
    5: "mirror horizontal and rotate 270 CW",
    6: "rotate 90 CW",
    7: "mirror horizontal and rotate 90 CW",
    8: "rotate 270 CW",
}


def _plane(a: np.ndarray | None, **extra) -> dict | None:
    if a is None:
        return None
    d: dict[str, Any] = {"width": int(a.shape[1]), "height": int(a.shape[0])}
    if a.dtype.kind == "f":
        fin = a[np.isfinite(a)]
        if fin.size:
            d.update(min=round(float(fin.min()), 6), max=round(float(fin.max()), 6))
        d["valid_fraction"] = round(float(fin.size) / max(a.size, 1), 6)
    d.update({k: v for k, v in extra.items() if v is not None})
    return d


def describe(photo: DepthPhoto) -> dict:
    """The JSON-able description of a read photo (keys: image, depth, disparity, matte, ... )."""
    gd = photo.format in ("RangeInverse", "RangeLinear")
    source = f"GDepth {photo.format}" if gd else ("Apple auxiliary image" if photo.format else None)
    o = photo.orientation
    return {
        "file": photo.path,
        "format": ("GDepth" if gd else "Apple MPF" if photo.format in ("disparity", "depth") else photo.format),
        "image": _plane(
            photo.image, channels=int(photo.image.shape[2]) if photo.image.ndim == 3 else 1, source=photo.image_source
        ),
        "depth": _plane(
            photo.depth_m,
            units=photo.units,
            source=source if photo.depth_m is not None else None,
            near=photo.near if photo.depth_m is not None else None,
            far=photo.far if photo.depth_m is not None else None,
        ),
        "disparity": _plane(
            photo.disparity,
            units="1/m" if photo.disparity is not None else None,
            source=source if photo.disparity is not None else None,
        ),
        "confidence": _plane(photo.confidence),
        "matte": _plane(photo.matte, source="Apple portraitEffectsMatte" if photo.matte is not None else None),
        "semantic_mattes": {
            k: _plane(v, source=f"Apple semantic segmentation matte ({k})") for k, v in sorted(photo.semantic.items())
        },
        "orientation": {
            "exif": o,
            "name": ORIENTATION_NAMES.get(o) if o is not None else None,
            "applied": o not in (None, 1),
        },
        "focus": photo.focus or None,
        "auxiliary_images": photo.aux or None,
        "notes": photo.notes or None,
    }


def depth_info(path: str | Path) -> tuple[DepthPhoto, dict]:
    photo = read_depth_photo(path, require_depth=False)
    return photo, describe(photo)


def _u8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.nan_to_num(a) * 255), 0, 255).astype(np.uint8)


def write_planes(photo: DepthPhoto, out_dir: str | Path, info: dict | None = None) -> list[Path]:
    """Write the photo's planes as PNGs (see the module docstring) and info.json; returns the paths."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(
            f"cannot create the output folder ({e.strerror})", where=str(out), fix="pass a writable folder to --write"
        ) from None
    info = dict(info if info is not None else describe(photo))
    files: dict[str, np.ndarray] = {"image.png": cv2.cvtColor(photo.image, cv2.COLOR_RGB2BGR)}
    if photo.depth_m is not None:
        mm = np.nan_to_num(photo.depth_m.astype(np.float64) * 1000.0, nan=0.0, posinf=0.0, neginf=0.0)
        clipped = float(np.mean(mm > 65535))
        if clipped:
            info.setdefault("write_notes", []).append(f"depth.png: {clipped:.1%} of pixels beyond 65.535 clipped")
        files["depth.png"] = np.clip(np.rint(mm), 0, 65535).astype(np.uint16)
    if photo.disparity is not None:
        d = photo.disparity.astype(np.float64)
        lo, hi = float(np.nanmin(d)), float(np.nanmax(d))
        scaled = (d - lo) / (hi - lo) if hi > lo else np.zeros_like(d)
        files["disparity.png"] = np.clip(np.rint(np.nan_to_num(scaled) * 65535), 0, 65535).astype(np.uint16)
        info["disparity_png"] = {"min": lo, "max": hi, "decode": "d = min + (max - min) * png / 65535"}
    if photo.confidence is not None:
        files["confidence.png"] = _u8(photo.confidence)
    if photo.matte is not None:
        files["matte.png"] = _u8(photo.matte)
    for k, v in sorted(photo.semantic.items()):
        files[f"{k}_matte.png"] = _u8(v)
    written = []
    for name, arr in files.items():
        p = out / name
        if not cv2.imwrite(str(p), arr):
            raise InputError(f"cannot write {name}", where=str(p), fix="pass a writable folder to --write")
        written.append(p)
    info["written"] = [p.name for p in written]
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    return written + [out / "info.json"]


def summary_lines(info: dict) -> list[str]:
    """Human-readable lines for the terminal."""

    def size(p):
        return f"{p['width']}x{p['height']}"

    lines = [f"{info['file']}: {info['format'] or 'no depth format found'}"]
    lines.append(f"  image      {size(info['image'])} ({info['image'].get('source')})")
    for key in ("depth", "disparity", "confidence", "matte"):
        p = info[key]
        if p is None:
            lines.append(f"  {key:10} none")
            continue
        rng = f", {p['min']:g} .. {p['max']:g}" if "min" in p else ""
        unit = f" {p['units']}" if p.get("units") else ""
        lines.append(f"  {key:10} {size(p)}{rng}{unit}" + (f" ({p['source']})" if p.get("source") else ""))
    sem = info["semantic_mattes"]
    lines.append("  semantic   " + (", ".join(f"{k} {size(v)}" for k, v in sem.items()) if sem else "none"))
    o = info["orientation"]
    if o["exif"] is None:
        lines.append("  orientation no EXIF orientation: planes as stored")
    else:
        lines.append(
            f"  orientation EXIF {o['exif']} ({o['name']})" + (", applied to every plane" if o["applied"] else "")
        )
    for a in info.get("auxiliary_images") or []:
        lines.append(
            f"  MPF image {a['index']}: {a['kind'] or 'not an Apple auxiliary image'}"
            + (
                f" (type {a['type']!r}" + (f", subtype {a['subtype']!r}" if a.get("subtype") else "") + ")"
                if a.get("type")
                else ""
            )
        )
    for n in info.get("notes") or []:
        lines.append(f"  note: {n}")
    return lines
