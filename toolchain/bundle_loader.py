"""Open a bundle and prove it intact before anything reads it: the one loader every consumer uses.

`open_bundle(target)` takes a bundle folder, a `portrait pack` zip or a model id (a folder under the
bundle root) and returns a `Bundle` (root, manifest, goldens index). Before it returns, in this order:
1. manifest.json is present, UTF-8, JSON, and matches MANIFEST_SCHEMA (required keys and their types);
2. every reference resolves: `handoff`, `handoff_cpu`, `handoff_gpu` name a model in `models`; every
   model is listed in `files` and is named <model_id>_...; every `.tflite` / `.onnx` in `files` is
   described in `models`; every name is a relative path inside the bundle;
3. every file in `files` is present with the recorded size and SHA-256, and no file on disk is missing
   from `files` (manifest.json, README.md and a zip's SHA256SUMS aside); a zip's SHA256SUMS agrees too;
   each .tflite is a complete flatbuffer with every index in range (`tflite_problem`: read by the
   schema's Python code, no interpreter; for a damaged file whose SHA-256 was re-recorded);
4. goldens/goldens.json, when the bundle has one, matches GOLDENS_SCHEMA and every tensor file and
   model file it names is in the bundle.
The first damage is raised as BundleError (file, field, expected vs found, what to do); `inspect`
returns all of them (what `portrait verify` reports). No runtime opens a file here: sizes come before
hashes, so a truncated file is named without reading it.

A folder named like an export's staging folder (.<id>.staging-*, .<id>.old-*) is never a bundle;
`list_bundles` skips them and `open_bundle` refuses them (the export itself verifies its staged
bundle with staged=True). Not for: the contract checks that feed the files (handoff/verify.py), or
writing bundles (bundle.py).
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import jsonschema
from ai_edge_litert import schema_py_generated as tflite_schema  # the flatbuffer schema, pure Python

from . import paths
from .bundle import handoff_model, is_staging_name
from .errors import BundleError, InputError
from .registry import sha256_of

UNLISTED_OK = ("manifest.json", "README.md", "SHA256SUMS")  # never in `files`: the manifest, the card, a zip's sums
HANDOFF_KEYS = ("handoff", "handoff_cpu", "handoff_gpu")
MODEL_SUFFIXES = (".tflite", ".onnx")
GOLDENS = "goldens/goldens.json"
GOLDENS_FORMAT, GOLDENS_VERSION = "portrait-goldens", 1

# ---------------------------------------------------------------- the schemas (data)

_NAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    # a relative path inside the bundle: no leading '/', no '..' part, no backslash or NUL
    "pattern": r"^(?!/)(?!(.*/)?\.\.(/|$))[^\\\x00]+$",
}
_INT_LIST = {"type": "array", "items": {"type": "integer", "minimum": 0}}
_FILE_RECORD = {
    "type": "object",
    "required": ["sha256", "bytes"],
    "properties": {
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "bytes": {"type": "integer", "minimum": 0},
    },
}
_TENSOR_RECORD = {
    "type": "object",  # a model file's tensor as the manifest records it
    "properties": {
        "name": {"type": "string"},
        "shape": _INT_LIST,
        "dtype": {"type": "string"},
        "scale": {"type": "number"},
        "zero_point": {"type": "integer"},
    },
}
_MODEL_RECORD = {
    "type": "object",
    "required": ["precision"],
    "properties": {
        "precision": {"type": "string", "minLength": 1},
        "input": _TENSOR_RECORD,
        "outputs": {"type": "object", "additionalProperties": _TENSOR_RECORD},
        "contract": {"type": "object"},
        "clients": {"type": "array", "items": {"type": "string"}},
    },
}
_HANDOFF = {"type": ["string", "null"]}

MANIFEST_SCHEMA = {
    "type": "object",
    "required": ["model_id", "task", "input", "outputs", "models", "files"],
    "properties": {
        "model_id": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"},
        "task": {"enum": ["segmentation", "mask", "depth"]},
        "input": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2, "maxItems": 2},
                "layout": {"enum": ["NHWC", "NCHW"]},
                "color": {"type": "string"},
                "resize": {"type": "string"},
                "normalization_inside_model": {"type": "object"},
            },
        },
        "outputs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["kind"],
                "properties": {
                    "name": {"type": "string"},
                    "kind": {"type": "string", "minLength": 1},
                    "shape": _INT_LIST,
                },
            },
        },
        "labels": {"type": "array", "items": {"type": "string"}},
        "foreground_classes": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
        "models": {"type": "object", "minProperties": 1, "propertyNames": _NAME, "additionalProperties": _MODEL_RECORD},
        "files": {"type": "object", "minProperties": 1, "propertyNames": _NAME, "additionalProperties": _FILE_RECORD},
        "handoff": _HANDOFF,
        "handoff_cpu": _HANDOFF,
        "handoff_gpu": _HANDOFF,
        "parity": {"type": ["object", "null"]},
    },
}

_GOLDEN_TENSOR = {
    "type": "object",
    "required": ["file", "dtype", "shape"],
    "properties": {
        "file": _NAME,
        "dtype": {"enum": ["uint8", "int8", "int16", "int32", "float16", "float32", "float64", "bool"]},
        "shape": _INT_LIST,
        "scale": {"type": "number"},
        "zero_point": {"type": "integer"},
    },
}
_TENSORS = {"type": "object", "minProperties": 1, "additionalProperties": _GOLDEN_TENSOR}
_LIMITS = {
    "quantized": ["max_abs_q", "mean_abs_q", "argmax_agreement_min"],
    "labels": ["agreement_min"],
    "image": ["mean_abs_max", "max_abs_max", "frac_over_4_max"],
}
GOLDENS_SCHEMA = {
    "type": "object",
    "required": ["format", "format_version", "model_id", "vectors"],
    "properties": {
        "format": {"const": GOLDENS_FORMAT},
        "format_version": {"type": "integer", "minimum": 1, "maximum": GOLDENS_VERSION},
        "model_id": {"type": "string"},
        "vectors": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "stage", "inputs", "expected", "tolerance"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "stage": {"enum": ["model", "fused"]},
                    "model_file": _NAME,
                    "inputs": _TENSORS,
                    "expected": _TENSORS,
                    "float_reference": _TENSORS,
                    "params": {"type": "object"},
                    "tolerance": {
                        "type": "object",
                        "required": ["metric"],
                        "properties": {"metric": {"enum": sorted(_LIMITS)}},
                        "additionalProperties": {"type": "number"},
                        "allOf": [
                            {"if": {"properties": {"metric": {"const": m}}}, "then": {"required": need}}
                            for m, need in _LIMITS.items()
                        ],
                    },
                },
                "allOf": [
                    {
                        "if": {"properties": {"stage": {"const": "model"}}},
                        "then": {"required": ["model_file"], "properties": {"inputs": {"required": ["image"]}}},
                    },
                    {
                        "if": {"properties": {"stage": {"const": "fused"}}},
                        "then": {
                            "required": ["params"],
                            "properties": {
                                "inputs": {"required": ["image", "model_output", "depth_m", "confidence"]},
                                "expected": {"required": ["alpha", "composite"]},
                                "params": {"required": ["output_spec", "focus_m", "max_blur_px"]},
                            },
                        },
                    },
                ],
            },
        },
    },
}

_MANIFEST_CHECK = jsonschema.Draft202012Validator(MANIFEST_SCHEMA)
_GOLDENS_CHECK = jsonschema.Draft202012Validator(GOLDENS_SCHEMA)

FIX_MANIFEST = (
    "manifest.json was edited or damaged: copy the bundle again from where it came from, or re-export "
    "it (`portrait export {id}`)"
)
FIX_FILE = (
    "the file changed after export (a damaged copy, a truncated download, an edit or a swap): copy the "
    "bundle again, or re-export it (`portrait export {id}`)"
)
FIX_UNLISTED = "a bundle holds only what its manifest lists: remove the file, or re-export (`portrait export {id}`)"


@dataclass
class Damage:
    """One thing wrong with a bundle (what BundleError carries)."""

    file: str
    field: str
    what: str
    expected: str = ""
    found: str = ""
    fix: str = ""

    def error(self, where: str) -> BundleError:
        return BundleError(
            self.what,
            file=self.file,
            field=self.field,
            expected=self.expected,
            found=self.found,
            where=where,
            fix=self.fix,
        )

    def line(self) -> str:
        return f"{self.what}" + (
            f" (expected {self.expected or '-'}, found {self.found or '-'})" if self.expected or self.found else ""
        )


@dataclass
class Inspection:
    """What `inspect` found: the manifest and goldens when they parse, the damages, the files proven intact."""

    root: Path
    manifest: dict | None = None
    goldens: dict | None = None
    damages: list[Damage] = field(default_factory=list)
    intact: list[str] = field(default_factory=list)


@dataclass
class Bundle:
    """An intact bundle: every listed file has the SHA-256 the manifest records."""

    root: Path
    manifest: dict
    goldens: dict | None
    label: str
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def model_id(self) -> str:
        return self.manifest["model_id"]

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def from_zip(self) -> bool:
        return Path(self.label).is_file()

    @property
    def handoff(self) -> str | None:
        return handoff_model(self.manifest)

    def path(self, name: str) -> Path:
        """The path of a file the manifest lists (InputError for any other name)."""
        if name not in self.manifest["files"]:
            raise InputError(
                f"bundle {self.model_id} has no {name}",
                where=str(self.root),
                fix="see the manifest's `files` for what the bundle holds",
            )
        return self.root / name

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------- finding bundles


def list_bundles(root: str | Path | None = None) -> list[Path]:
    """Bundle folders under `root` (default: the bundle root): folders with a manifest.json, sorted,
    never an export's staging or previous-bundle folder."""
    root = Path(root or paths.out_dir())
    if not root.is_dir():
        return []
    return sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not is_staging_name(p.name) and not p.name.startswith(".") and (p / "manifest.json").is_file()
    )


def resolve(target: str | Path, root: str | Path | None = None) -> Path:
    """A bundle folder, a zip, or a model id under `root` (default: the bundle root) -> its path."""
    p = Path(target)
    if p.exists():
        return p
    q = Path(root or paths.out_dir()) / str(target)
    if q.exists():
        return q
    looked = f"looked for the folder or zip {p}" + (f" and for {q}" if q != p else "")
    raise InputError(
        f"no exported bundle {str(target)!r}",
        where=looked,
        fix="run `make export-int8` (or `portrait export <id>`) first, or pass a bundle folder or zip",
    )


def refuse_staging(path: Path) -> None:
    if is_staging_name(path.name):
        raise InputError(
            f"{path.name} is an export's staging folder (an export in progress, or one that was killed), not a bundle",
            where=str(path),
            fix="pass the bundle folder export/out/<id>; the next export removes a stale staging folder",
        )


# ---------------------------------------------------------------- open and inspect


def open_bundle(
    target: str | Path, *, root: str | Path | None = None, staged: bool = False, workdir: str | Path | None = None
) -> Bundle:
    """The intact bundle at `target` (folder, zip, or model id under `root`); BundleError names the
    first damage. staged: the export's own staged folder (goldens not yet listed in `files`).
    A zip is unpacked into `workdir` when given (the caller owns it), else into a temporary folder that
    lives as long as the returned Bundle (`close()` or `with`)."""
    path = resolve(target, root)
    if not staged:
        refuse_staging(path)
    tmp = None
    if path.is_file():
        if workdir is None:
            tmp = tempfile.TemporaryDirectory(prefix="portrait-bundle-")
            dest = Path(tmp.name)
        else:
            dest = Path(workdir)
        try:
            folder, _ = extract_zip(path, dest)
        except BaseException:
            if tmp is not None:
                tmp.cleanup()
            raise
    elif path.is_dir():
        folder = path
    else:
        raise InputError(f"not a bundle folder or zip: {path}", fix="pass export/out/<id> or a <id>-<version>.zip")
    # a zip: its SHA256SUMS first (it covers manifest.json too), then the bundle inside
    damages = check_sha256sums(folder) if path.is_file() else []
    found = inspect(folder, staged=staged) if not damages else Inspection(folder, damages=damages)
    if found.damages:
        if tmp is not None:
            tmp.cleanup()
        raise found.damages[0].error(str(path))
    assert found.manifest is not None  # no damage: it parsed and matched the schema
    return Bundle(folder, found.manifest, found.goldens, str(path), tmp)


def inspect(folder: str | Path, *, staged: bool = False) -> Inspection:
    """Every damage of a bundle folder, in the order open_bundle raises them. Stops at the first stage
    that fails (a manifest that does not parse has no references to follow)."""
    folder = Path(folder)
    out = Inspection(folder)
    manifest, damages = _read_json(folder, "manifest.json", _MANIFEST_CHECK, "", required=True)
    mid = manifest.get("model_id") if isinstance(manifest, dict) else None
    mid = mid if isinstance(mid, str) and mid else folder.name  # a bundle folder is named after its model
    for d in damages:
        d.fix = d.fix or FIX_MANIFEST.format(id=mid)
    if damages:
        out.damages = damages
        return out
    out.manifest = manifest
    out.damages = _references(manifest)
    if out.damages:
        return out
    out.damages, out.intact = _files(folder, manifest, staged)
    if out.damages:
        return out
    for name in sorted(manifest["files"]):
        if name.endswith(".tflite"):
            problem = tflite_problem(folder / name, manifest["files"][name]["sha256"])
            if problem:
                out.damages.append(
                    Damage(
                        name,
                        "flatbuffer",
                        "not a complete TFLite model: " + problem,
                        "a TFLite flatbuffer",
                        "a damaged one (its SHA-256 was re-recorded)",
                        FIX_FILE.format(id=manifest["model_id"]),
                    )
                )
    if out.damages:
        return out
    if (folder / GOLDENS).is_file():
        out.goldens, out.damages = _goldens(folder, manifest, staged)
    return out


def _read_json(folder: Path, name: str, validator, fix: str, required: bool) -> tuple[Any, list[Damage]]:
    p = folder / name
    if not p.is_file():
        return None, [
            Damage(
                name,
                "present",
                "missing",
                "the file",
                "nothing",
                fix="pass a bundle written by `portrait export` (it has a manifest.json)",
            )
        ] if required else []
    try:
        data = json.loads(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        return None, [
            Damage(
                name,
                "encoding",
                "not UTF-8 text",
                "UTF-8",
                f"byte 0x{exc.object[exc.start]:02x} at offset {exc.start}",
                fix,
            )
        ]
    except json.JSONDecodeError as exc:
        return None, [
            Damage(
                name,
                f"line {exc.lineno} column {exc.colno}",
                "not valid JSON",
                "valid JSON",
                f"{exc.msg[0].lower() + exc.msg[1:]} at byte {exc.pos}",
                fix,
            )
        ]
    except RecursionError:
        return None, [Damage(name, "structure", "nested too deeply to read", "JSON", "nesting beyond the parser", fix)]
    errors = sorted(
        validator.iter_errors(data), key=lambda e: (len(e.absolute_path), [str(x) for x in e.absolute_path])
    )
    return data, [_schema_damage(name, e, fix) for e in errors]


def _schema_damage(name: str, e: jsonschema.ValidationError, fix: str) -> Damage:
    where = _json_path(e.absolute_path)
    v, vv = e.validator, e.validator_value
    if v == "required":
        missing = next((k for k in vv if isinstance(e.instance, dict) and k not in e.instance), "?")
        return Damage(
            name, f"{where}.{missing}" if where else missing, "a required key is missing", "the key", "absent", fix
        )
    if v == "type":
        return Damage(
            name,
            where or "(top level)",
            "wrong type",
            " or ".join(vv) if isinstance(vv, list) else vv,
            _type_name(e.instance),
            fix,
        )
    if v in ("enum", "const"):
        return Damage(
            name,
            where,
            "not an allowed value",
            "one of " + ", ".join(map(repr, vv)) if v == "enum" else repr(vv),
            _short(e.instance),
            fix,
        )
    if v == "propertyNames":
        return Damage(
            name,
            where,
            "a file name that is not a relative path inside the bundle",
            "a relative path (no '/', '..' or '\\' at its start)",
            _short(e.instance),
            fix,
        )
    what = {
        "minItems": "too few items",
        "maxItems": "too many items",
        "minProperties": "empty",
        "pattern": "malformed",
        "minimum": "out of range",
        "maximum": "out of range",
        "minLength": "empty",
        "maxLength": "too long",
    }.get(v, f"fails the schema's {v!r}")
    return Damage(name, where or "(top level)", what, f"{v} {_short(vv)}", _short(e.instance), fix)


def _json_path(parts) -> str:
    out = ""
    for p in parts:
        out += (
            f"[{p}]"
            if isinstance(p, int)
            else (f".{p}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(p)) else f"[{json.dumps(p)}]")
        )
    return out.lstrip(".")


def _type_name(x) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "number",
        type(None): "null",
    }.get(type(x), type(x).__name__)


def _short(x, n: int = 80) -> str:
    s = json.dumps(x) if not isinstance(x, str) else repr(x)
    return s if len(s) <= n else s[: n - 3] + "..."


def _references(m: dict) -> list[Damage]:
    mid, files, models = m["model_id"], m["files"], m["models"]
    fix = FIX_MANIFEST.format(id=mid)
    out = []
    for key in HANDOFF_KEYS:
        name = m.get(key)
        if name is not None and name not in models:
            out.append(
                Damage(
                    "manifest.json",
                    key,
                    "names a file the manifest does not describe",
                    "a file in `models`",
                    repr(name),
                    fix,
                )
            )
    for name in models:
        if name not in files:
            out.append(
                Damage(
                    "manifest.json",
                    f"models[{json.dumps(name)}]",
                    "a model the manifest describes but does not list with its SHA-256",
                    "an entry in `files`",
                    "none",
                    fix,
                )
            )
        if not name.startswith(f"{mid}_"):
            out.append(
                Damage(
                    "manifest.json",
                    f"models[{json.dumps(name)}]",
                    "a model named for another model id",
                    f"{mid}_<precision>...",
                    repr(name),
                    fix,
                )
            )
    for name in files:
        if name.endswith(MODEL_SUFFIXES) and name not in models:
            out.append(
                Damage(
                    "manifest.json",
                    f"files[{json.dumps(name)}]",
                    "a model file the manifest lists but does not describe",
                    "an entry in `models`",
                    "none",
                    fix,
                )
            )
    return out


def _files(folder: Path, m: dict, staged: bool) -> tuple[list[Damage], list[str]]:
    mid, listed = m["model_id"], m["files"]
    out = []
    # presence and size first (cheap; a truncated file is named without hashing), then SHA-256
    for name, rec in sorted(listed.items()):
        p = folder / name
        if not p.is_file():
            out.append(
                Damage(
                    name,
                    "files[].present",
                    "listed in the manifest, missing from the bundle",
                    "the file",
                    "nothing",
                    FIX_FILE.format(id=mid),
                )
            )
        elif p.stat().st_size != rec["bytes"]:
            size = p.stat().st_size
            out.append(
                Damage(
                    name,
                    "files[].bytes",
                    "truncated" if size < rec["bytes"] else "longer than recorded",
                    f"{rec['bytes']} bytes",
                    f"{size} bytes",
                    FIX_FILE.format(id=mid),
                )
            )
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if rel in listed or rel in UNLISTED_OK or p.is_dir() or (staged and rel.startswith("goldens/")):
            continue
        out.append(
            Damage(
                rel,
                "files",
                "in the bundle but not in the manifest",
                "no such file",
                "a file",
                FIX_UNLISTED.format(id=mid),
            )
        )
    if out:
        return out, []
    for name, rec in sorted(listed.items()):
        digest = sha256_of(folder / name)
        if digest != rec["sha256"]:
            out.append(
                Damage(
                    name,
                    "files[].sha256",
                    "the content differs from the one the manifest records",
                    f"SHA-256 {rec['sha256'][:16]}...",
                    f"{digest[:16]}...",
                    FIX_FILE.format(id=mid),
                )
            )
    return out, [] if out else sorted(listed)


def _goldens(folder: Path, m: dict, staged: bool) -> tuple[dict | None, list[Damage]]:
    fix = (
        "goldens/goldens.json was edited or damaged: regenerate it (`python -m toolchain.device.goldens "
        f"--bundle {folder}`) or re-export (`portrait export {m['model_id']}`)"
    )
    idx, damages = _read_json(folder, GOLDENS, _GOLDENS_CHECK, fix, required=False)
    if damages:
        return None, damages
    out, names = [], set()
    for i, v in enumerate(idx["vectors"]):
        if v["name"] in names:
            out.append(
                Damage(GOLDENS, f"vectors[{i}].name", "two vectors with one name", "unique names", repr(v["name"]), fix)
            )
        names.add(v["name"])
        if v["stage"] == "model" and v["model_file"] not in m["models"]:
            out.append(
                Damage(
                    GOLDENS,
                    f"vectors[{i}].model_file",
                    "names a model the bundle does not have",
                    "a file in the manifest's `models`",
                    repr(v["model_file"]),
                    fix,
                )
            )
        for part in ("inputs", "expected", "float_reference"):
            for key, rec in (v.get(part) or {}).items():
                name = f"goldens/{rec['file']}"
                if not (folder / name).is_file() or not (staged or name in m["files"]):
                    out.append(
                        Damage(
                            GOLDENS,
                            f"vectors[{i}].{part}.{key}.file",
                            "names a tensor file the bundle does not list",
                            "a file in goldens/ listed in the manifest",
                            repr(rec["file"]),
                            fix,
                        )
                    )
    return idx, out


_TFLITE_OK: set[str] = set()  # SHA-256 of files already found sound in this process


def tflite_problem(path: Path, digest: str | None = None, *, packed_files: bool = False) -> str | None:
    """What makes a .tflite file unreadable, or None: the file identifier, every table and vector of
    the flatbuffer inside the file (read with the schema's generated Python, no interpreter), every
    index (operator code, tensor, buffer) in range, and the zip of associated files (labels) the
    metadata writer appends, when any part of one is there or `packed_files` says there must be one
    (CRC of each member; a file without the labels its contract names is verify's metadata check). Catches a truncated or cut file whose SHA-256 was re-recorded before an interpreter (or
    MediaPipe's metadata reader) trips over it."""
    if digest in _TFLITE_OK:
        return None
    data = path.read_bytes()
    # a zip of associated files is appended after the flatbuffer; any of its signatures means one must be whole
    if packed_files or any(sig in data for sig in (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06")):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                bad = zf.testzip()
            if bad is not None:
                return f"the associated file {bad} packed in the model fails its CRC"
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
            return f"the zip of associated files (labels) packed after the model is unreadable: {exc}"
    if len(data) < 8 or data[4:8] != b"TFL3":
        return f"no TFL3 file identifier (bytes 4-8 are {data[4:8]!r})"
    try:
        model = tflite_schema.ModelT.InitFromObj(tflite_schema.Model.GetRootAs(data, 0))
    except (
        struct.error,
        IndexError,
        ValueError,
        TypeError,
        AttributeError,
        UnicodeDecodeError,
        OverflowError,
        MemoryError,
        RecursionError,
    ) as exc:
        return f"the flatbuffer reaches outside the file: {str(exc)[:120]}"
    n_codes, n_buffers = len(model.operatorCodes or []), len(model.buffers or [])
    if not model.subgraphs:
        return "no subgraph"
    for b_i, buf in enumerate(model.buffers or []):
        if buf.offset and buf.offset > 1 and buf.offset + buf.size > len(data):
            return f"buffer {b_i} ends at byte {buf.offset + buf.size}, the file has {len(data)}"
    for g_i, g in enumerate(model.subgraphs):
        n_t = len(g.tensors or [])
        for t_i, t in enumerate(g.tensors or []):
            if not 0 <= t.buffer < max(n_buffers, 1):
                return f"subgraph {g_i} tensor {t_i} names buffer {t.buffer} of {n_buffers}"
        ios = [("input", i) for i in (g.inputs if g.inputs is not None else [])] + [
            ("output", i) for i in (g.outputs if g.outputs is not None else [])
        ]
        for o_i, op in enumerate(g.operators or []):
            if not 0 <= op.opcodeIndex < n_codes:
                return f"subgraph {g_i} operator {o_i} names operator code {op.opcodeIndex} of {n_codes}"
            ios += [("operator input", i) for i in (op.inputs if op.inputs is not None else [])]
            ios += [("operator output", i) for i in (op.outputs if op.outputs is not None else [])]
        stray = next(((k, int(i)) for k, i in ios if not -1 <= int(i) < n_t), None)
        if stray:
            return f"subgraph {g_i}: {stray[0]} tensor {stray[1]} of {n_t}"
    if digest:
        _TFLITE_OK.add(digest)
    return None


# ---------------------------------------------------------------- zips


def extract_zip(zpath: Path, dest: Path) -> tuple[Path, Path | None]:
    """Unpack a `portrait pack` zip into dest -> (bundle folder, its SHA256SUMS or None)."""
    try:
        with zipfile.ZipFile(zpath) as zf:
            for info in zf.infolist():
                target = (dest / info.filename).resolve()
                if not str(target).startswith(str(dest.resolve()) + os.sep):
                    raise InputError(
                        f"unsafe path in zip: {info.filename}",
                        where=str(zpath),
                        fix="make the zip with `portrait pack`",
                    )
            zf.extractall(dest)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise InputError(
            f"cannot read the zip: {exc}", where=str(zpath), fix="make it again with `portrait pack`"
        ) from None
    manifests = sorted(dest.rglob("manifest.json"), key=lambda p: len(p.parts))
    if not manifests:
        raise InputError("the zip holds no manifest.json", where=str(zpath), fix="make it with `portrait pack`")
    folder = manifests[0].parent
    sums = folder / "SHA256SUMS"
    return folder, sums if sums.is_file() else None


def check_sha256sums(folder: Path) -> list[Damage]:
    """A zip's SHA256SUMS (sha256sum format) against the extracted files."""
    fix = "the zip was damaged or edited after `portrait pack`: make it again"
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        return [Damage("SHA256SUMS", "present", "the zip has no SHA256SUMS", "the file", "nothing", fix)]
    out = []
    try:
        lines = sums.read_text("utf-8").splitlines()
    except UnicodeDecodeError:
        return [Damage("SHA256SUMS", "encoding", "not UTF-8 text", "UTF-8", "other bytes", fix)]
    for n, line in enumerate(lines, 1):
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            out.append(Damage("SHA256SUMS", f"line {n}", "malformed", "<sha256>  <name>", _short(line), fix))
            continue
        name = parts[1].lstrip("*")
        p = folder / name
        if not p.is_file() or sha256_of(p) != parts[0]:
            out.append(
                Damage(
                    "SHA256SUMS",
                    f"line {n} ({name})",
                    "the file differs from the zip's SHA256SUMS",
                    parts[0][:16] + "...",
                    sha256_of(p)[:16] + "..." if p.is_file() else "missing",
                    fix,
                )
            )
    return out
