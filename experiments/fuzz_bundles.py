"""Mutation fuzzing of the bundle consumers (issue 28): damaged copies of one bundle, and each consumer's
verdict on them; prints the figures (mutants, uncaught, passed while damaged, max time to the verdict).

    python -m experiments.fuzz_bundles [--n 1000] [--seed 0] [--bundle ID|FOLDER] [--json OUT]

The bundle (default: selfie_segmenter in the bundle root, PORTRAIT_OUT_DIR or export/out) is copied to a
temporary folder and never changed. Each mutant is a copy with one damage (MUTATIONS, drawn by a seeded
generator):
- manifest.json edited as data: a required key dropped, renamed or retyped, a reference left dangling
  (handoff -> a missing file, a model or file entry renamed), a recorded SHA-256 or size changed, a value
  outside its set (task, model_id, input size, empty outputs);
- manifest.json edited as bytes: truncated, a structural character ({}[]:," outside strings) bit-flipped,
  a letter inserted between tokens, a byte that is not UTF-8;
- goldens/goldens.json edited as data or truncated, and re-recorded in the manifest (so that only the
  goldens checks can catch it), or edited without re-recording;
- model files (.tflite / .onnx), golden tensors, labels.txt, README.md: truncated, bit-flipped, extended,
  swapped, deleted; an unlisted file added;
- a .tflite cut short and re-recorded in the manifest (only the flatbuffer check can catch it). A bit flip
  re-recorded is not drawn: it may leave a valid model with one different weight, which no check can call
  damaged.
Every mutation is a real damage by construction; a byte mutation of manifest.json that leaves it parsing
to the very same data would be neutral and is counted apart (`neutral`), never as a pass.

Each consumer runs on each mutant: the loader (open_bundle), `portrait verify` (without MediaPipe),
`portrait check` (against the clean bundle's own golden outputs) and `portrait render`. An outcome is
"error" (the project's error), "fail" (verify reported FAIL), "passed" / "ran" (the consumer accepted the
damaged bundle) or "uncaught" (any other exception: a bug). Exit status 1 if anything is uncaught, a
consumer accepts a damaged bundle, or a call takes longer than --limit-s before its verdict.
tests/test_bundle_fuzz.py runs a seeded 150 of them on the tiny test bundle. Not a general-purpose fuzzer.

Measured (seed 0, 1,000 mutants each, x86_64, 2 cores shared with other jobs): copies of the exported
selfie_segmenter and deeplabv3_mnv2_pascal_257 bundles gave 0 uncaught, 0 neutral, 0 damaged bundles
passed by verify or accepted by any consumer; the slowest call reached its verdict in 0.07 s (selfie, quiet
host) to 1.4 s (DeepLab, busy host).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from toolchain.bundle import file_record
from toolchain.bundle_loader import GOLDENS, MANIFEST_SCHEMA, open_bundle
from toolchain.device.check import check_outputs
from toolchain.errors import InputError, PortraitError
from toolchain.handoff.verify import verify
from toolchain.images import bundled_photos
from toolchain.render.photo import render_photo

LIMIT_S = 5.0
JUNK_LETTERS = b"gjkqvwxzGJKQVWXZ"  # invalid anywhere outside a JSON string (no true/false/null/NaN/e)
STRUCTURAL = b'{}[]:,"'
WRONG_TYPES = [42, 4.5, "x", [], {}, None, True]


# ---------------------------------------------------------------- helpers


def _read(root: Path, name: str):
    return json.loads((root / name).read_text())


def _write(root: Path, name: str, data) -> None:
    (root / name).write_text(json.dumps(data, indent=2))


def _restamp(root: Path, name: str) -> None:
    m = _read(root, "manifest.json")
    m["files"][name] = file_record(root / name)
    _write(root, "manifest.json", m)


def _pick(rng: np.random.Generator, seq):
    seq = list(seq)
    return seq[int(rng.integers(0, len(seq)))]


def _get(d, path):
    for p in path:
        d = d[p]
    return d


def _set(d, path, value):
    _get(d, path[:-1])[path[-1]] = value


def _paths_manifest(m: dict) -> list[tuple]:
    """Paths the manifest schema and references cover (each must be there, with its type)."""
    out = [(k,) for k in MANIFEST_SCHEMA["required"]]
    out += [("input", "size"), ("outputs", 0, "kind")]
    out += [("models", n, "precision") for n in m["models"]]
    out += [("files", n, k) for n in m["files"] for k in ("sha256", "bytes")]
    return out


def _typed_paths(m: dict) -> list[tuple]:
    """Paths whose value has a type the schema checks (for retyping), optional ones where present."""
    out = _paths_manifest(m)
    out += [
        (k,) for k in ("handoff", "handoff_cpu", "handoff_gpu", "labels", "foreground_classes") if m.get(k) is not None
    ]
    out += [("foreground_classes", k) for k in (m.get("foreground_classes") or {})]
    out += [("input", "size", 0)]
    return out


def _wrong_value(rng, original, nullable: bool):
    choices = [
        v
        for v in WRONG_TYPES
        if type(v) is not type(original)
        and not (nullable and v is None)
        and not (isinstance(original, float) and type(v) is int)
    ]
    return _pick(rng, choices)


def _structure(text: bytes) -> list[tuple[int, str]]:
    """(offset, kind) of the structural bytes of a JSON text: "struct" ({}[]:, outside strings), "open"
    and "close" (the quotes that start and end a string)."""
    out, in_str, esc = [], False, False
    for i, c in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif c == 0x5C:
                esc = True
            elif c == 0x22:
                in_str = False
                out.append((i, "close"))
        elif c == 0x22:
            in_str = True
            out.append((i, "open"))
        elif c in STRUCTURAL:
            out.append((i, "struct"))
    return out


def _flip_targets(text: bytes) -> list[int]:
    """Bytes whose flip always breaks the syntax: structural characters and opening quotes (a closing
    quote's flip could only extend a string)."""
    return [i for i, k in _structure(text) if k != "close"]


def _token_gaps(text: bytes) -> list[int]:
    """Offsets between tokens (after a structural character or a closing quote, never inside a string)."""
    return [i + 1 for i, k in _structure(text) if k != "open"]


# ---------------------------------------------------------------- mutations (each: (rng, root) -> description)


def m_drop_key(rng, root):
    m = _read(root, "manifest.json")
    path = _pick(rng, _paths_manifest(m))
    del _get(m, path[:-1])[path[-1]]
    _write(root, "manifest.json", m)
    return f"manifest: drop {path}"


def m_retype(rng, root):
    m = _read(root, "manifest.json")
    path = _pick(rng, _typed_paths(m))
    v = _wrong_value(rng, _get(m, path), nullable=path[0] in ("handoff", "handoff_cpu", "handoff_gpu"))
    _set(m, path, v)
    _write(root, "manifest.json", m)
    return f"manifest: retype {path} -> {v!r}"


def m_rename_key(rng, root):
    m = _read(root, "manifest.json")
    kind = _pick(rng, ["top", "model", "file", "nested"])
    if kind == "top":
        k = _pick(rng, MANIFEST_SCHEMA["required"])
        m[k[::-1] if k[::-1] != k else k + "_"] = m.pop(k)
        desc = f"rename key {k}"
    elif kind == "model":
        n = _pick(rng, sorted(m["models"]))
        m["models"][n.replace(".", "_renamed.", 1)] = m["models"].pop(n)
        desc = f"rename models entry {n}"
    elif kind == "file":
        n = _pick(rng, sorted(m["files"]))
        m["files"]["renamed_" + n.replace("/", "_")] = m["files"].pop(n)
        desc = f"rename files entry {n}"
    else:
        path = _pick(rng, [("input", "size"), ("outputs", 0, "kind")] + [("files", n, "sha256") for n in m["files"]])
        parent = _get(m, path[:-1])
        parent[path[-1] + "_x"] = parent.pop(path[-1])
        desc = f"rename key {path}"
    _write(root, "manifest.json", m)
    return "manifest: " + desc


def m_dangle(rng, root):
    m = _read(root, "manifest.json")
    kind = _pick(rng, ["handoff", "handoff_other", "ghost_file", "ghost_model", "ghost_model_file"])
    if kind == "handoff":
        key = _pick(rng, [k for k in ("handoff", "handoff_cpu", "handoff_gpu") if m.get(k)] or ["handoff"])
        m[key] = "nonexistent.tflite"
        desc = f"{key} -> nonexistent.tflite"
    elif kind == "handoff_other":  # a file the bundle has, but not a model
        key = _pick(rng, [k for k in ("handoff", "handoff_cpu") if m.get(k)] or ["handoff"])
        m[key] = _pick(rng, sorted(n for n in m["files"] if n not in m["models"]))
        desc = f"{key} -> {m[key]} (not a model)"
    elif kind == "ghost_file":
        m["files"]["ghost.bin"] = {"sha256": "0" * 64, "bytes": 10}
        desc = "files lists ghost.bin, which is not there"
    elif kind == "ghost_model":
        m["models"][f"{m['model_id']}_ghost.tflite"] = {"precision": "int8"}
        desc = "models describes a file not in files"
    else:
        m["files"][f"{m['model_id']}_ghost.tflite"] = {"sha256": "0" * 64, "bytes": 10}
        desc = "files lists a model that models does not describe (and is not there)"
    _write(root, "manifest.json", m)
    return "manifest: dangle: " + desc


def m_bad_value(rng, root):
    m = _read(root, "manifest.json")
    kind = _pick(rng, ["task", "model_id", "size", "outputs", "models", "sha", "bytes", "fg"])
    if kind == "task":
        m["task"] = _pick(rng, ["segmentaton", "classification", ""])
    elif kind == "model_id":
        m["model_id"] = _pick(rng, ["other_model", "", "../x"])
    elif kind == "size":
        m["input"]["size"] = _pick(rng, [[0, 256], [256], [256, 256, 3], [-1, 5]])
    elif kind == "outputs":
        m["outputs"] = []
    elif kind == "models":
        m["models"] = {}
    elif kind == "sha":
        n = _pick(rng, sorted(m["files"]))
        s = m["files"][n]["sha256"]
        i = int(rng.integers(0, 64))
        m["files"][n]["sha256"] = s[:i] + ("0" if s[i] != "0" else "1") + s[i + 1 :]
        kind = f"sha256 of {n}"
    elif kind == "bytes":
        n = _pick(rng, sorted(m["files"]))
        m["files"][n]["bytes"] += int(_pick(rng, [-1, 1, 1000]))
        kind = f"bytes of {n}"
    else:
        m["foreground_classes"] = {"person": -1}
    _write(root, "manifest.json", m)
    return f"manifest: bad value: {kind}"


def m_manifest_bytes(rng, root):
    p = root / "manifest.json"
    b = bytearray(p.read_bytes())
    kind = _pick(rng, ["truncate", "flip", "insert", "utf8"])
    if kind == "truncate":
        del b[int(rng.integers(0, len(b))) :]
    elif kind == "flip":
        i = _pick(rng, _flip_targets(bytes(b)))
        b[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == "insert":
        i = _pick(rng, _token_gaps(bytes(b)))
        b[i:i] = bytes([_pick(rng, JUNK_LETTERS)])
    else:
        i = int(rng.integers(0, len(b)))
        b[i:i] = b"\xff"
    p.write_bytes(bytes(b))
    return f"manifest bytes: {kind}"


def _goldens_paths(g: dict) -> list[tuple]:
    out = [(k,) for k in ("format", "format_version", "model_id", "vectors")]
    for i, v in enumerate(g["vectors"]):
        out += [("vectors", i, k) for k in ("name", "stage", "inputs", "expected", "tolerance")]
        out += [("vectors", i, "tolerance", "metric")]
        if v["stage"] == "model":
            out += [("vectors", i, "model_file")]
        for part in ("inputs", "expected"):
            for key in v[part]:
                out += [("vectors", i, part, key, k) for k in ("file", "dtype", "shape")]
    return out


def m_goldens(rng, root):
    """goldens.json damaged, then re-recorded in the manifest: only the goldens checks can catch it."""
    g = _read(root, GOLDENS)
    kind = _pick(rng, ["drop", "retype", "value", "truncate"])
    if kind == "truncate":
        b = (root / GOLDENS).read_bytes()
        (root / GOLDENS).write_bytes(b[: int(rng.integers(0, len(b)))])
        _restamp(root, GOLDENS)
        return "goldens.json (re-recorded): truncate"
    if kind == "drop":
        path = _pick(rng, _goldens_paths(g))
        del _get(g, path[:-1])[path[-1]]
        desc = f"drop {path}"
    elif kind == "retype":
        path = _pick(rng, _goldens_paths(g))
        v = _wrong_value(rng, _get(g, path), nullable=False)
        _set(g, path, v)
        desc = f"retype {path} -> {v!r}"
    else:
        i = int(rng.integers(0, len(g["vectors"])))
        v = g["vectors"][i]
        rec = next(iter(v["expected"].values()))
        choice = _pick(
            rng, ["format", "version", "stage", "metric", "dtype", "file", "model_file", "empty", "dup", "limit"]
        )
        if choice == "format":
            g["format"] = "other-goldens"
        elif choice == "version":
            g["format_version"] = 99
        elif choice == "stage":
            v["stage"] = "bogus"
        elif choice == "metric":
            v["tolerance"]["metric"] = "bogus"
        elif choice == "dtype":
            rec["dtype"] = "float99"
        elif choice == "file":
            rec["file"] = "ghost.npy"
        elif choice == "model_file":
            v["stage"], v["model_file"] = "model", "ghost.tflite"
        elif choice == "empty":
            g["vectors"] = []
        elif choice == "dup":
            g["vectors"].append(dict(v))
        else:
            need = {"quantized": "max_abs_q", "labels": "agreement_min", "image": "mean_abs_max"}[
                v["tolerance"]["metric"]
            ]
            del v["tolerance"][need]
        desc = f"bad value: {choice} (vector {i})"
    _write(root, GOLDENS, g)
    _restamp(root, GOLDENS)
    return f"goldens.json (re-recorded): {desc}"


def m_goldens_unrecorded(rng, root):
    g = _read(root, GOLDENS)
    g["vectors"] = g["vectors"][:-1] or [{}]
    _write(root, GOLDENS, g)
    return "goldens.json edited, not re-recorded"


def m_file_bytes(rng, root):
    m = _read(root, "manifest.json")
    models = sorted(m["models"])
    others = sorted(n for n in m["files"] if n not in m["models"])
    name = _pick(rng, models) if rng.random() < 0.6 else _pick(rng, others)
    p = root / name
    b = bytearray(p.read_bytes())
    kind = _pick(rng, ["truncate", "truncate_100k", "flip", "flip", "append", "swap", "delete", "empty"])
    if kind == "truncate":
        del b[int(rng.integers(0, max(1, len(b)))) :]
    elif kind == "truncate_100k":
        del b[min(100_000, len(b) - 1) :]
    elif kind == "flip":
        i = int(rng.integers(0, len(b)))
        b[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == "append":
        b += bytes(rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8))
    elif kind == "swap":
        other = _pick(rng, [n for n in m["files"] if n != name and (root / n).read_bytes() != bytes(b)])
        b = bytearray((root / other).read_bytes())
        kind = f"swap with {other}"
    elif kind == "delete":
        p.unlink()
        return f"{name}: deleted"
    else:
        b = bytearray()
    p.write_bytes(bytes(b))
    return f"{name}: {kind}"


def m_model_recorded(rng, root):
    """A .tflite cut short, then re-recorded in the manifest: only the flatbuffer check can catch it."""
    m = _read(root, "manifest.json")
    name = _pick(rng, sorted(n for n in m["models"] if n.endswith(".tflite")))
    p = root / name
    b = p.read_bytes()
    p.write_bytes(b[: int(rng.integers(0, len(b)))])
    _restamp(root, name)
    return f"{name}: truncated, re-recorded"


def m_unlisted(rng, root):
    m = _read(root, "manifest.json")
    name = _pick(rng, ["notes.txt", "goldens/extra.npy", f"{m['model_id']}_extra.tflite", "sub/x.bin", ".hidden"])
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(b"not in the manifest")
    return f"unlisted file {name}"


MUTATIONS = [  # (name, function, weight)
    ("drop_key", m_drop_key, 8),
    ("retype", m_retype, 8),
    ("rename_key", m_rename_key, 6),
    ("dangle", m_dangle, 6),
    ("bad_value", m_bad_value, 6),
    ("manifest_bytes", m_manifest_bytes, 10),
    ("goldens", m_goldens, 12),
    ("goldens_unrecorded", m_goldens_unrecorded, 4),
    ("file_bytes", m_file_bytes, 16),
    ("model_recorded", m_model_recorded, 6),
    ("unlisted", m_unlisted, 4),
]


def mutate(clean: Path, dest: Path, rng: np.random.Generator) -> tuple[str, str, bool]:
    """A damaged copy of `clean` at dest -> (mutation name, description, neutral). neutral: the damage
    left every file the same and manifest.json parsing to the same data (then it is no damage)."""
    shutil.copytree(clean, dest)
    weights = np.array([w for *_, w in MUTATIONS], float)
    name, fn, _ = MUTATIONS[int(rng.choice(len(MUTATIONS), p=weights / weights.sum()))]
    before = (clean / "manifest.json").read_bytes()
    desc = fn(rng, dest)
    return name, desc, _same(clean, dest, before)


def _same(clean: Path, dest: Path, manifest_before: bytes) -> bool:
    def names(r: Path) -> list[str]:
        return sorted(p.relative_to(r).as_posix() for p in r.rglob("*") if p.is_file())

    if names(clean) != names(dest):
        return False
    for n in names(clean):
        if n != "manifest.json" and (clean / n).read_bytes() != (dest / n).read_bytes():
            return False
    try:
        return json.loads((dest / "manifest.json").read_bytes()) == json.loads(manifest_before)
    except ValueError:
        return False


# ---------------------------------------------------------------- running the consumers


@dataclass
class Verdict:
    outcome: str  # "error", "fail", "passed", "ran", "uncaught"
    seconds: float
    detail: str = ""


def judge(consumer: str, fn) -> Verdict:
    t = time.perf_counter()
    try:
        res = fn()
    except PortraitError as e:
        return Verdict("error", time.perf_counter() - t, f"{type(e).__name__}: {str(e).splitlines()[0][:160]}")
    except Exception as e:  # noqa: BLE001 - what the fuzzer exists to find
        return Verdict("uncaught", time.perf_counter() - t, f"{type(e).__name__}: {str(e)[:200]}")
    dt = time.perf_counter() - t
    if consumer == "verify":
        if res.passed:
            return Verdict("passed", dt, "verify passed")
        first = res.failures[0]
        return Verdict("fail", dt, f"FAIL {first.file}: {first.field}")
    if consumer == "check" and not all(r.passed for r in res):
        return Verdict("fail", dt, "a golden vector failed")
    return Verdict("ran", dt, "accepted")


def consumers(bundle: Path, device_dir: Path, photo: Path, out: Path) -> list[tuple[str, object]]:
    return [
        ("loader", lambda: open_bundle(bundle)),
        ("verify", lambda: verify(bundle, mediapipe=False)),
        ("check", lambda: check_outputs(bundle, device_dir)),
        ("render", lambda: render_photo(bundle, photo, out)),
    ]


def golden_outputs(bundle: Path, dest: Path) -> Path:
    """A device-output folder with exactly the goldens' expected tensors (a perfect phone)."""
    dest.mkdir(parents=True, exist_ok=True)
    g = _read(bundle, GOLDENS)
    for v in g["vectors"]:
        for rec in v["expected"].values():
            shutil.copyfile(bundle / "goldens" / rec["file"], dest / rec["file"])
    return dest


@dataclass
class Tally:
    mutants: int = 0
    neutral: int = 0
    by_mutation: dict = field(default_factory=dict)
    outcomes: dict = field(default_factory=dict)  # consumer -> {outcome: count}
    max_seconds: dict = field(default_factory=dict)  # consumer -> max seconds
    over_limit: int = 0
    uncaught: list = field(default_factory=list)
    accepted: list = field(default_factory=list)  # damaged bundles a consumer accepted
    details: dict = field(default_factory=dict)
    limit_s: float = LIMIT_S

    def add(self, mutation: str, desc: str, neutral: bool, verdicts: dict) -> None:
        self.mutants += 1
        self.by_mutation[mutation] = self.by_mutation.get(mutation, 0) + 1
        if neutral:
            self.neutral += 1
        for c, v in verdicts.items():
            o = self.outcomes.setdefault(c, {})
            o[v.outcome] = o.get(v.outcome, 0) + 1
            self.max_seconds[c] = max(self.max_seconds.get(c, 0.0), v.seconds)
            if v.seconds > self.limit_s:
                self.over_limit += 1
            if v.outcome == "uncaught" and len(self.uncaught) < 30:
                self.uncaught.append(f"{c} on [{desc}]: {v.detail}")
            if v.outcome in ("passed", "ran") and not neutral and len(self.accepted) < 30:
                self.accepted.append(f"{c} on [{desc}]")
            if c == "loader":
                key = v.detail.split("(expected")[0][:90]
                self.details[key] = self.details.get(key, 0) + 1

    def count(self, outcome: str, consumer: str | None = None) -> int:
        return sum(n for c, o in self.outcomes.items() if consumer in (None, c) for k, n in o.items() if k == outcome)

    @property
    def passed_while_damaged(self) -> int:
        return len([a for a in self.accepted if a.startswith("verify")])

    def report(self) -> str:
        lines = [
            f"mutants {self.mutants} (neutral {self.neutral}); by mutation: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.by_mutation.items()))
        ]
        for c, o in self.outcomes.items():
            lines.append(
                f"  {c:7} " + "  ".join(f"{k} {n}" for k, n in sorted(o.items())) + f"  max {self.max_seconds[c]:.3f} s"
            )
        lines.append(
            f"uncaught {self.count('uncaught')}; verify passed a damaged bundle {self.count('passed', 'verify')}; "
            f"a consumer accepted a damaged bundle {len(self.accepted)}; calls over {self.limit_s:g} s: "
            f"{self.over_limit}; max time to the verdict {max(self.max_seconds.values(), default=0):.3f} s"
        )
        return "\n".join(lines)


def campaign(
    clean: str | Path,
    work: Path,
    n: int,
    seed: int = 0,
    photo: Path | None = None,
    *,
    limit_s: float = LIMIT_S,
    progress=None,
) -> Tally:
    """n mutants of the bundle `clean` (copied under work), every consumer on each. The clean copy is
    run first: the loader, verify and check must accept it and render must run, else the campaign
    could not tell a pass from a fail (InputError)."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    base = work / "clean"
    shutil.copytree(open_bundle(clean).root, base)
    device = golden_outputs(base, work / "device")
    if photo is None:
        photo = work / "photo.png"
        img = next(iter(bundled_photos().values()))
        cv2.imwrite(str(photo), cv2.resize(img, (96, 72))[..., ::-1])
    baseline = {c: judge(c, fn) for c, fn in consumers(base, device, photo, work / "out.png")}
    bad = {c: v for c, v in baseline.items() if v.outcome != ("passed" if c == "verify" else "ran")}
    if bad:
        raise InputError(
            "the clean bundle is not accepted by every consumer, so a damaged one could not be told "
            "apart: " + "; ".join(f"{c}: {v.outcome} {v.detail}" for c, v in bad.items()),
            where=str(clean),
            fix="fuzz a bundle that passes `portrait verify --no-mediapipe` and `portrait check`",
        )
    rng = np.random.default_rng(seed)
    tally = Tally(limit_s=limit_s)
    for i in range(n):
        dest = work / f"m{i % 2}"
        shutil.rmtree(dest, ignore_errors=True)
        mutation, desc, neutral = mutate(base, dest, rng)
        verdicts = {c: judge(c, fn) for c, fn in consumers(dest, device, photo, work / "out.png")}
        tally.add(mutation, desc, neutral, verdicts)
        if progress and (i + 1) % 100 == 0:
            progress(f"{i + 1}/{n} mutants: uncaught {tally.count('uncaught')}, accepted {len(tally.accepted)}")
    shutil.rmtree(work / "m0", ignore_errors=True)
    shutil.rmtree(work / "m1", ignore_errors=True)
    return tally


# ---------------------------------------------------------------- the command


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.fuzz_bundles", description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="mutated bundles")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bundle", default="selfie_segmenter", help="model id (in the bundle root) or bundle folder")
    ap.add_argument("--limit-s", type=float, default=LIMIT_S)
    ap.add_argument("--json", type=Path, help="write the tally here")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="fuzz-bundles-") as tmp:
            tally = campaign(
                a.bundle, Path(tmp), a.n, a.seed, limit_s=a.limit_s, progress=lambda m: print(m, file=sys.stderr)
            )
    except PortraitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - t0
    print(
        f"bundle {a.bundle}, seed {a.seed}; host {platform.machine()} ({platform.processor() or 'n/a'}), "
        f"{os.cpu_count()} CPUs; wall {wall:.0f} s"
    )
    print(tally.report())
    print("most frequent first damage named by the loader:")
    for k, c in sorted(tally.details.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {c:5}  {k}")
    for line in tally.uncaught:
        print("UNCAUGHT:", line)
    for line in tally.accepted:
        print("ACCEPTED WHILE DAMAGED:", line)
    if a.json:
        a.json.write_text(
            json.dumps({"bundle": a.bundle, "n": a.n, "seed": a.seed, "wall_s": wall, **tally.__dict__}, indent=2)
        )
    bad = tally.count("uncaught") + len(tally.accepted) + tally.over_limit
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
