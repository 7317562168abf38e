"""Handoff bundles: export/out/<model_id>/ with models, labels.txt and manifest.json.

Written atomically: everything is assembled in a hidden sibling folder and swapped in with
renames only once complete, so a failed export leaves the previous bundle as it was and no
partial folder. Not for: deciding what goes in (export.py).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .errors import InputError
from .registry import sha256_of


def file_record(path: Path) -> dict:
    return {"sha256": sha256_of(path), "bytes": path.stat().st_size}


def write_bundle(out_root: Path, model_id: str, files: dict[str, Path], manifest: dict,
                 extra_text: dict[str, str] | None = None, finalize=None) -> Path:
    """Copy `files` (bundle name -> source path) and write manifest.json; swap in atomically.

    finalize(staging_dir), if given, runs on the complete staged bundle before the swap (the golden
    vectors are made there); what it adds is listed in the manifest with its SHA-256 too.
    """
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    final = out_root / model_id
    staging = Path(tempfile.mkdtemp(prefix=f".{model_id}.staging-", dir=out_root))
    try:
        records = {}
        for name, src in files.items():
            dst = staging / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            records[name] = file_record(dst)
        for name, text in (extra_text or {}).items():
            (staging / name).write_text(text)
            records[name] = file_record(staging / name)
        manifest = {**manifest, "files": records}
        _write_manifest(staging, manifest)
        if finalize is not None:
            finalize(staging)
            for path in sorted(staging.rglob("*")):
                name = path.relative_to(staging).as_posix()
                if path.is_file() and name != "manifest.json" and name not in records:
                    records[name] = file_record(path)
            _write_manifest(staging, {**manifest, "files": records})
        _swap_in(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def _write_manifest(folder: Path, manifest: dict) -> None:
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=False, default=_json_default))


def _swap_in(staging: Path, final: Path) -> None:
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    try:
        os.replace(staging, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)  # put the previous bundle back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_manifest(bundle: Path) -> dict:
    path = Path(bundle) / "manifest.json"
    if not path.is_file():
        raise InputError(f"no manifest.json in {bundle}", fix="pass a bundle written by `portrait export`")
    return json.loads(path.read_text())


def handoff_model(manifest: dict) -> str | None:
    """The bundle's quantized model that met its parity budget (plain int8 or mixed precision), or
    None when nothing passed. Bundles written before the manifest named it fall back to the int8
    model when its parity passed."""
    if manifest.get("handoff"):
        return manifest["handoff"]
    passed = (manifest.get("parity") or {}).get("passed")
    return f"{manifest['model_id']}_int8.tflite" if passed else None


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
