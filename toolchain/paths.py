"""Where things live: models directories, data directory, cache, bundle output.

Environment settings (all optional):
  PORTRAIT_MODELS_DIR  directories holding model files, separated by os.pathsep
  PORTRAIT_DATA_DIR    a folder with photos/ and depth_photos/ (for example ../shared)
  PORTRAIT_CACHE_DIR   where downloaded models go (default ~/.cache/portrait)
  PORTRAIT_OUT_DIR     where bundles are written (default <repo>/export/out)
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REGISTRY_FILE = REPO_ROOT / "models" / "registry.toml"
RECIPES_DIR = REPO_ROOT / "export" / "recipes"
SEQUENCES_DIR = REPO_ROOT / "device_sim" / "sequences"  # sample ToF sequences (python -m device_sim.make_sequences)

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def models_dirs() -> list[Path]:
    raw = os.environ.get("PORTRAIT_MODELS_DIR", "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


def cache_dir() -> Path:
    return Path(os.environ.get("PORTRAIT_CACHE_DIR", "~/.cache/portrait")).expanduser()


def data_dir() -> Path | None:
    raw = os.environ.get("PORTRAIT_DATA_DIR", "").strip()
    return Path(raw).expanduser() if raw else None


def out_dir() -> Path:
    return Path(os.environ.get("PORTRAIT_OUT_DIR", REPO_ROOT / "export" / "out")).expanduser()


def photos_dir() -> Path | None:
    d = data_dir()
    return d / "photos" if d and (d / "photos").is_dir() else None


def depth_photos_dir() -> Path | None:
    d = data_dir()
    return d / "depth_photos" if d and (d / "depth_photos").is_dir() else None


def list_photos(folder: Path | None) -> list[Path]:
    """Photos in a folder, sorted; mattes (`*_alpha*`) are not photos."""
    if folder is None or not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and "_alpha" not in p.stem)
