"""Export cache: what does not change between runs (float import, calibration set, conversions,
parity figures), under PORTRAIT_CACHE_DIR/export/.

Every entry is keyed by a SHA-256 over what decides its content: the source file's SHA-256, the
recipe, the toolchain version and a digest of the toolchain's own source code (so editing an
importer or a converter pass invalidates what it produced), plus the step's own inputs. Entries
are written to a temporary name and renamed into place, so an interrupted run never leaves a
half-written entry. PORTRAIT_EXPORT_CACHE=0 turns the cache off.

Not for: downloaded model files (registry.py keeps those in the same cache root).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import __version__, paths
from .registry import sha256_of


def enabled() -> bool:
    return os.environ.get("PORTRAIT_EXPORT_CACHE", "1") not in ("0", "false", "no", "")


def root() -> Path:
    return paths.cache_dir() / "export"


# The code that produces what is cached: importers, conversions and ladder, calibration and its image
# sources, the runtime and the parity figures. Editing any of these invalidates the cache.
# The post-training techniques (quantize/ptq.py and what it imports) only change the w8a8 file when a
# recipe asks for them; ladder.py adds their digest (PTQ_CODE) to that file's key only.
CODE = (
    "sources/*.py",
    "quantize/__init__.py",
    "quantize/precisions.py",
    "quantize/flatbuffer.py",
    "cache.py",
    "quantize/conversions.py",
    "quantize/onnx_canonical.py",
    "quantize/calibration.py",
    "quantize/ladder.py",
    "calibration_set.py",
    "images.py",
    "runtime.py",
    "registry.py",
    "recipes.py",
    "scenes/*.py",
    "parity/gate.py",
    "parity/bound.py",
    "parity/agreement.py",
    "parity/mixed.py",
    "parity/layers.py",
    "depth/align.py",
    "depth/blur.py",
)
PTQ_CODE = ("quantize/*.py",)


def files_digest(patterns) -> str:
    base = Path(__file__).resolve().parent  # toolchain/
    h = hashlib.sha256()
    for p in sorted({f for pattern in patterns for f in base.glob(pattern)}):
        h.update(p.relative_to(base).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 over the version string and the source of the modules in CODE."""
    return hashlib.sha256((__version__ + files_digest(CODE)).encode()).hexdigest()


def key(*parts) -> str:
    """Stable key over JSON-able parts (+ the code digest)."""
    blob = json.dumps([code_digest(), *parts], sort_keys=True, default=_default)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def array_digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(str((a.shape, a.dtype.str)).encode() + a.tobytes()).hexdigest()


def file_digest(path: Path) -> str:
    return sha256_of(path)


def _default(obj):
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return array_digest(obj)
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    return repr(obj)


def cached_path(k: str, name: str, build: Callable[[Path], None], *, hits: list | None = None) -> Path:
    """Path of a cached file or folder `name` under key `k`; `build(tmp_path)` makes it on a miss."""
    final = root() / k / name
    if enabled() and final.exists():
        if hits is not None:
            hits.append(name)
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    try:
        tmp = tmp_dir / name
        build(tmp)
        if final.exists():  # another run made it meanwhile
            shutil.rmtree(final, ignore_errors=True) if final.is_dir() else final.unlink()
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return final


def cached_json(k: str, compute: Callable[[], dict], *, hits: list | None = None, name: str = "result.json"):
    final = root() / k / name
    if enabled() and final.is_file():
        try:
            value = json.loads(final.read_text())
            if hits is not None:
                hits.append(name)
            return value
        except json.JSONDecodeError:
            pass
    value = compute()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(value, default=_default))
    os.replace(tmp, final)
    return json.loads(final.read_text())


def cached_array(k: str, compute: Callable[[], np.ndarray], *, hits: list | None = None) -> np.ndarray:
    def build(tmp: Path):
        with open(tmp, "wb") as f:
            np.save(f, compute())

    return np.load(cached_path(k, "array.npy", build, hits=hits))
