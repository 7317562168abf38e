"""Image loading and model-input preparation (resize to the registry's input size).

Not for: calibration policy (calibration_set.py) or rendering (render/).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import skimage.data as d

from .errors import InputError


def load_rgb(path: str | Path) -> np.ndarray:
    """Read a photo as uint8 RGB HxWx3; a missing or unreadable file is an InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: {path}", fix="check the path")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(
            f"cannot decode image {path.name}",
            where=str(path),
            fix="pass a JPEG, PNG or BMP file that opens in an image viewer",
        )
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def to_model_input(rgb: np.ndarray, size_hw: tuple[int, int], resize: str = "stretch") -> np.ndarray:
    """uint8 RGB photo -> uint8 [H, W, 3] at the model's input size (area filter when shrinking)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(
            f"expected an RGB image HxWx3, got shape {rgb.shape}", fix="convert grey or RGBA images to RGB first"
        )
    if resize != "stretch":
        raise InputError(f"resize mode {resize!r} is not supported", fix='use resize = "stretch"')
    h, w = size_hw
    interp = cv2.INTER_AREA if rgb.shape[0] > h or rgb.shape[1] > w else cv2.INTER_LINEAR
    return cv2.resize(rgb, (w, h), interpolation=interp)


def bundled_photos() -> dict[str, np.ndarray]:
    """Colour photos shipped inside scikit-image (no download): people, a cat, objects."""
    out = {}
    for name in (
        "astronaut",
        "chelsea",
        "coffee",
        "rocket",
        "hubble_deep_field",
        "immunohistochemistry",
        "retina",
        "colorwheel",
    ):
        try:
            img = getattr(d, name)()
        except Exception:  # some skimage builds fetch a few images over the network
            continue
        if img.ndim == 3 and img.shape[2] >= 3:
            out[name] = np.ascontiguousarray(img[..., :3])
    return out
