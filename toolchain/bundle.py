"""Handoff bundles: export/out/<model_id>/ with models, labels.txt and manifest.json.

Written atomically: everything is assembled in a hidden sibling folder (.<id>.staging-<tag>) and
swapped in with renames only once complete, so a failed export leaves the previous bundle as it was and
no partial folder. An export that is killed (SIGKILL, power loss) cannot clean up after itself: its
staging folder stays. So each staging folder has a lock file beside it (.<id>.staging-<tag>.lock, an
flock held by the exporting process for the folder's whole life; the kernel drops it when that
process dies), and every export first removes the leftovers whose lock nobody holds
(`remove_stale_staging`); a folder another export (`--jobs`, another terminal) is still writing is
left alone. No reader takes such a folder for a bundle (`is_staging_name`, bundle_loader.list_bundles).
Not for: deciding what goes in (export.py), or reading bundles (bundle_loader.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .errors import InputError
from .registry import sha256_of

LOCK_SUFFIX = ".lock"
# .<id>.staging-<tag>, its .lock, and .<id>.old-<tag> (the previous bundle during the swap)
_LEFTOVER = re.compile(r"^\.(?P<id>.+)\.(?P<kind>staging|old)-(?P<tag>[^.]+?)(?P<lock>\.lock)?$")


def is_staging_name(name: str) -> bool:
    """True for an export's work folders and lock files (never a bundle)."""
    return _LEFTOVER.match(name) is not None


def file_record(path: Path) -> dict:
    return {"sha256": sha256_of(path), "bytes": path.stat().st_size}


def write_bundle(
    out_root: Path,
    model_id: str,
    files: dict[str, Path],
    manifest: dict,
    extra_text: dict[str, str] | None = None,
    finalize=None,
) -> Path:
    """Copy `files` (bundle name -> source path) and write manifest.json; swap in atomically.

    finalize(staging_dir), if given, runs on the complete staged bundle before the swap (the golden
    vectors are made there); what it adds is listed in the manifest with its SHA-256 too, and what it
    writes into the staged manifest.json is kept.
    """
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out_root)
    final = out_root / model_id
    staging, lock_fd = _new_staging(out_root, model_id)
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
            # finalize may record what it measured in the staged manifest (the clients, handoff_gpu)
            manifest = {**json.loads((staging / "manifest.json").read_text()), "files": records}
            for path in sorted(staging.rglob("*")):
                name = path.relative_to(staging).as_posix()
                if path.is_file() and name != "manifest.json" and name not in records:
                    records[name] = file_record(path)
            _write_manifest(staging, {**manifest, "files": records})
        _swap_in(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        _release(staging, lock_fd)
    return final


def _new_staging(out_root: Path, model_id: str) -> tuple[Path, int]:
    """A fresh staging folder and the fd of its held lock. The lock file comes first, so a staging
    folder without one is always a leftover; a cleanup that took the lock file between its creation and
    our flock has unlinked it, which the inode check sees (then start again)."""
    while True:
        fd, lock = tempfile.mkstemp(prefix=f".{model_id}.staging-", suffix=LOCK_SUFFIX, dir=out_root)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    staging = Path(lock[: -len(LOCK_SUFFIX)])
    staging.mkdir(mode=0o700)
    return staging, fd


def _release(staging: Path, fd: int) -> None:
    try:
        os.unlink(f"{staging}{LOCK_SUFFIX}")
    except FileNotFoundError:
        pass
    os.close(fd)


def remove_stale_staging(out_root: str | Path) -> list[str]:
    """Remove what killed exports left in out_root: staging folders, previous-bundle folders and lock
    files whose lock no live process holds. A previous bundle whose replacement never arrived (killed
    between the two renames of the swap) is put back instead. Returns what was removed or restored."""
    out_root = Path(out_root)
    done = []
    groups: dict[tuple[str, str], list[Path]] = {}
    for p in out_root.glob(".*"):
        m = _LEFTOVER.match(p.name)
        if m:
            groups.setdefault((m["id"], m["tag"]), []).append(p)
    for (mid, tag), items in sorted(groups.items()):
        lock = out_root / f".{mid}.staging-{tag}{LOCK_SUFFIX}"
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            fd = None
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live export holds it
            for p in sorted(items, key=lambda q: q.name.endswith(LOCK_SUFFIX)):  # the lock file last
                if p.name.endswith(LOCK_SUFFIX):
                    p.unlink(missing_ok=True)
                elif ".old-" in p.name and not (out_root / mid).exists():
                    os.replace(p, out_root / mid)
                    done.append(f"{p.name} -> {mid} (restored)")
                    continue
                else:
                    shutil.rmtree(p, ignore_errors=True)
                done.append(p.name)
        finally:
            if fd is not None:
                os.close(fd)
    return done


def record_files(bundle: str | Path, prefix: str) -> dict:
    """Re-record in manifest.json's `files` every file under `prefix` ("goldens/", one file's name, or
    "" for all) of a finished bundle, after a tool rewrote them there (`python -m toolchain.device.goldens
    --bundle`); entries under prefix whose file is gone are dropped. Written with a rename. Returns the
    new manifest."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    files = {k: v for k, v in (manifest.get("files") or {}).items() if not k.startswith(prefix)}
    top = bundle / prefix
    for p in [top] if top.is_file() else sorted(top.rglob("*")):
        name = p.relative_to(bundle).as_posix()
        if p.is_file() and name != "manifest.json" and not is_staging_name(p.name):
            files[name] = file_record(p)
    manifest["files"] = files
    tmp = bundle / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False, default=_json_default))
    os.replace(tmp, bundle / "manifest.json")
    return manifest


def _write_manifest(folder: Path, manifest: dict) -> None:
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=False, default=_json_default))


def _swap_in(staging: Path, final: Path) -> None:
    old = None
    if final.exists():  # named after the staging folder, so that its lock covers it too
        old = final.with_name(f".{final.name}.old-{staging.name.rsplit('.staging-', 1)[1]}")
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
    """manifest.json of a folder, parsed but not checked: for the export's own staged folder and for
    tools that list bundles. Everything that runs a bundle's files opens it with
    bundle_loader.open_bundle, which checks the schema and every file's SHA-256 first."""
    path = Path(bundle) / "manifest.json"
    if not path.is_file():
        raise InputError(f"no manifest.json in {bundle}", fix="pass a bundle written by `portrait export`")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            f"manifest.json is not valid JSON: {exc}",
            where=str(path),
            fix="re-export the bundle, or copy it again from its source",
        ) from None
    if not isinstance(manifest, dict):
        raise InputError("manifest.json is not a JSON object", where=str(path), fix="re-export the bundle")
    return manifest


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
