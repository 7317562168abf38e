"""Representative datasets for full-integer calibration, and their sanity checks.

Deterministic: the same recipe and the same photos give the same samples, in the same order.
Sources: the photos folder (PORTRAIT_DATA_DIR/photos, or the recipe's own folder), the photos
that ship inside scikit-image (all, or named ones), and synthetic portrait scenes (toolchain.scenes),
with seeded augmentations (crop, flip, gain, gamma).
Not for: parity image sets (parity/), though they share `images.py`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import paths
from .errors import InputError
from .images import bundled_photos, load_rgb, to_model_input
from .scenes import generate_scene


def source_images(sources: list[str], photos_folder: Path | None = None) -> list[tuple[str, np.ndarray]]:
    out: list[tuple[str, np.ndarray]] = []
    for src in sources:
        if src == "photos":
            for p in paths.list_photos(photos_folder or paths.photos_dir()):
                out.append((p.name, load_rgb(p)))
        elif src == "skimage":
            out.extend(bundled_photos().items())
        elif src.startswith("skimage:"):
            wanted = src.split(":", 1)[1].split(",")
            out.extend((k, v) for k, v in bundled_photos().items() if k in wanted)
        elif src.startswith("scenes"):  # "scenes" or "scenes:N": N synthetic portrait scenes (person, cat)
            n = int(src.split(":", 1)[1]) if ":" in src else 8
            out.extend((f"scene{i}", generate_scene(seed=100 + i, kind=("person", "cat")[i % 2]).rgb) for i in range(n))
        else:
            raise InputError(
                f"unknown calibration source {src!r}",
                fix='use "photos", "skimage", "skimage:NAME,NAME" or "scenes[:N]"',
            )
    return out


def augment(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random view: crop 55-100% of each side, maybe flip, gain 0.7-1.3, gamma 0.8-1.25."""
    h, w = rgb.shape[:2]
    ch, cw = int(h * rng.uniform(0.55, 1.0)), int(w * rng.uniform(0.55, 1.0))
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    img = rgb[y : y + ch, x : x + cw].astype(np.float32) / 255.0
    if rng.random() < 0.5:
        img = img[:, ::-1]
    img = np.clip(img * rng.uniform(0.7, 1.3), 0, 1) ** rng.uniform(0.8, 1.25)
    return (img * 255.0 + 0.5).astype(np.uint8)


def representative_set(
    size_hw: tuple[int, int],
    *,
    samples: int = 100,
    seed: int = 0,
    sources: list[str] | None = None,
    photos_folder: Path | None = None,
    min_samples: int = 8,
) -> np.ndarray:
    """uint8 [N, H, W, 3] calibration samples; the un-augmented images come first."""
    images = source_images(sources or ["photos", "skimage"], photos_folder)
    if not images:
        raise InputError(
            "no calibration images found",
            where=f"sources {sources}",
            fix='set PORTRAIT_DATA_DIR to a folder with photos/ or keep "skimage" in the sources',
        )
    rng = np.random.default_rng(seed)
    batch = [to_model_input(img, size_hw) for _, img in images[:samples]]
    while len(batch) < samples:
        _, img = images[len(batch) % len(images)]
        batch.append(to_model_input(augment(img, rng), size_hw))
    arr = np.stack(batch)
    check_representative(arr, min_samples=min_samples)
    return arr


def for_recipe(size_hw: tuple[int, int], cal: dict) -> np.ndarray:
    """representative_set as a recipe's [calibration] table asks (samples, seed, sources, min_samples)."""
    return representative_set(
        size_hw, samples=cal["samples"], seed=cal["seed"], sources=cal["sources"], min_samples=cal["min_samples"]
    )


def check_representative(samples: np.ndarray, *, min_samples: int = 8) -> None:
    """Reject degenerate sets: too few, non-finite, constant images, or all the same image."""
    samples = np.asarray(samples)
    if samples.ndim != 4 or samples.shape[-1] != 3:
        raise InputError(f"calibration set must be [N, H, W, 3], got {samples.shape}")
    if len(samples) < min_samples:
        raise InputError(
            f"calibration set has {len(samples)} samples, fewer than {min_samples}",
            fix="raise calibration.samples in the recipe or add photos",
        )
    flat = samples.reshape(len(samples), -1).astype(np.float32)
    if not np.isfinite(flat).all():
        raise InputError("calibration set contains NaN or inf", fix="check the images and preprocessing")
    stds = flat.std(axis=1)
    constant = np.flatnonzero(stds < 1.0)
    if len(constant):
        raise InputError(
            f"{len(constant)} calibration sample(s) are constant images (e.g. #{constant[0]})",
            fix="remove blank images from the calibration folder",
        )
    if len(samples) > 1 and np.all(flat == flat[0]):
        raise InputError("all calibration samples are the same image", fix="use several different photos")
