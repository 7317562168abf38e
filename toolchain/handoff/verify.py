"""`portrait verify`: the contract check an app developer would do, on a bundle folder or its zip.

It reads what a client reads: the manifest (the contract of each file) and the file's TFLite
metadata, never the tensor details, to decide how to feed a file. Then it checks, per file:
- files: every manifest entry is present with its SHA-256 and size (a swapped file fails here),
  and nothing unlisted sits in the bundle;
- contract: the record stored in the manifest is the one the manifest implies (an edited manifest);
- tensor: the file's input and output tensors take what the contract says (dtype, shape, uint8
  pixels with scale 1 / zero point 0: a file that wants int8 or other normalization fails here);
- metadata: the TFLite metadata agrees with the record (name, normalization, colour space, output
  meaning and range, labels file, segmenter activation); needs the client environment;
- litert: fed as the contract says, in ai-edge-litert, the outputs match the bundle's golden vectors
  and stay near the float32 model. Files with golden vectors and segmenters' files run on the
  reference kernels (the goldens' kernels, bit for bit); a depth model's float files on XNNPACK;
- mediapipe: files whose clients include MediaPipe Tasks ImageSegmenter load there and their
  category masks agree with the toolchain's decode of the LiteRT run; the labels come back.
A check that cannot run (no client environment) is reported as NOT RUN, never as passed.

Not for: the quantization budget (parity/), or the fused stage's goldens (toolchain/device/check.py).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from toolchain.device.check import compare

from .. import bundle_loader, paths
from ..errors import ExportError, InputError
from ..images import bundled_photos, load_rgb, to_model_input
from ..runtime import recall, remember, run_key
from . import client, clients
from .card import write_card
from .clients import claim_failures, entry_problems
from .metadata import (
    FLOAT_INPUT_PRECISIONS,
    MEDIAPIPE_SEGMENTER,
    contract_input,
    file_record,
    metadata_mismatches,
    read_metadata,
)

TOLERANCES = Path(__file__).resolve().parent / "tolerances.toml"
PASS, FAIL, NOT_RUN, INFO = "pass", "FAIL", "NOT RUN", "info"


@dataclass
class Check:
    file: str
    field: str
    status: str
    message: str = ""
    figures: dict = dataclasses.field(default_factory=dict)  # (`field` is a column here)


@dataclass
class VerifyReport:
    bundle: str
    model_id: str | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not any(c.status == FAIL for c in self.checks)

    @property
    def exit_code(self) -> int:
        """0 pass, 1 a check failed, 3 nothing failed but some checks did not run (not a pass)."""
        return 1 if not self.passed else 3 if self.not_run else 0

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    @property
    def not_run(self) -> list[Check]:
        return [c for c in self.checks if c.status == NOT_RUN]

    def add(self, file: str, fld: str, status: str, message: str = "", **figures) -> None:
        self.checks.append(Check(file, fld, status, message, figures))

    def format(self, verbose: bool = False) -> str:
        lines = [f"verify {self.bundle} ({self.model_id})"]
        for c in self.checks:
            if verbose or c.status not in (PASS, INFO):
                figs = ", ".join(f"{k} {v:.5g}" if isinstance(v, float) else f"{k} {v}" for k, v in c.figures.items())
                lines.append(
                    f"  {c.status:7} {c.file}: {c.field}"
                    + (f": {c.message}" if c.message else "")
                    + (f" [{figs}]" if figs else "")
                )
        n_pass = sum(c.status == PASS for c in self.checks)
        n_info = sum(c.status == INFO for c in self.checks)
        lines.append(
            f"  {n_pass} passed, {len(self.failures)} failed, {len(self.not_run)} not run, {n_info} for information"
        )
        if self.not_run:
            lines.append("  NOT RUN is not a pass: " + "; ".join(sorted({c.message for c in self.not_run})))
        lines.append(
            "RESULT: "
            + (
                "FAIL"
                if not self.passed
                else "INCOMPLETE: everything that ran passed, but some checks were NOT RUN"
                if self.not_run
                else "PASS"
            )
        )
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "bundle": self.bundle,
            "model_id": self.model_id,
            "passed": self.passed,
            "checks": [c.__dict__ for c in self.checks],
        }


def tolerances() -> dict:
    return tomllib.loads(TOLERANCES.read_text())


def verify(
    path: str | Path, *, mediapipe: bool = True, staged: bool = False, images_folder: str | Path | None = None
) -> VerifyReport:
    """Verify a bundle folder, a zip written by `portrait pack`, or a model id (a folder under the bundle
    root). images_folder: photos fed too (resized as the manifest says) in the float-model and MediaPipe
    comparisons, beside the golden inputs. The bundle loader's integrity checks come first; while any
    fails, no file is opened by a runtime and the report lists the damage."""
    path = bundle_loader.resolve(path)
    if not staged:
        bundle_loader.refuse_staging(path)  # an export's work folder is never verified as a bundle
    if path.is_file():
        with tempfile.TemporaryDirectory(prefix="portrait-verify-") as tmp:
            root, _ = bundle_loader.extract_zip(path, Path(tmp))
            report = verify_folder(
                root, mediapipe=mediapipe, label=str(path), images_folder=images_folder, zip_sums=True
            )
            return report
    if not path.is_dir():
        raise InputError(f"not a bundle folder or zip: {path}", fix="pass export/out/<id> or a <id>-<version>.zip")
    return verify_folder(path, mediapipe=mediapipe, staged=staged, images_folder=images_folder)


def verify_folder(
    bundle: Path,
    *,
    mediapipe: bool = True,
    staged: bool = False,
    label: str | None = None,
    images_folder: str | Path | None = None,
    zip_sums: bool = False,
) -> VerifyReport:
    bundle = Path(bundle)
    if not (bundle / "manifest.json").is_file():
        raise InputError(
            f"no manifest.json in {bundle}: not a bundle", fix="pass a bundle written by `portrait export`"
        )
    found = bundle_loader.inspect(bundle, staged=staged)
    if zip_sums:
        found.damages += bundle_loader.check_sha256sums(bundle)
    manifest = found.manifest or {}
    report = VerifyReport(label or str(bundle), manifest.get("model_id") if isinstance(manifest, dict) else None)
    if found.damages:  # integrity first: nothing below opens a file that has not passed it
        for d in found.damages:
            report.add(d.file, d.field, FAIL, d.line() + (f"; what to do: {d.fix}" if d.fix else ""))
        report.add("bundle", "integrity", INFO, "the contract checks did not run: the bundle's integrity failed first")
        return report
    for name in found.intact:
        report.add(name, "files[].sha256", PASS)
    if zip_sums:
        report.add("SHA256SUMS", "sha256", PASS)
    tol = tolerances()
    _check_labels(bundle, manifest, report)
    tflites = [n for n in manifest["models"] if n.endswith(".tflite")]
    records = {}
    for name in tflites:
        records[name] = _check_contract(manifest, name, report)
        _check_tensor_record(bundle, manifest, name, report)
    _check_metadata(bundle, manifest, records, report, mediapipe)
    images = _golden_inputs(bundle)
    if not images:  # a recipe without goldens: the photos bundled with scikit-image, resized as the manifest says
        size = tuple(manifest["input"]["size"])
        images = [
            (k, to_model_input(v, size, manifest["input"].get("resize", "stretch"))[None])
            for k, v in list(bundled_photos().items())[:3]
        ]
        report.add("goldens/", "inputs", NOT_RUN, "the bundle has no golden vectors: fed bundled photos instead")
    if images_folder is not None:
        photos = paths.list_photos(Path(images_folder))
        if not photos:
            raise InputError(f"no photos in {images_folder}", fix="pass a folder with .jpg/.png/.bmp files")
        size = tuple(manifest["input"]["size"])
        images = images + [
            (p.name, to_model_input(load_rgb(p), size, manifest["input"].get("resize", "stretch"))[None])
            for p in photos
        ]
    float_name = f"{manifest['model_id']}_float32.tflite"
    runs = _run_litert_all(
        bundle,
        records,
        images,
        ([float_name] if float_name in records else []) + [n for n in tflites if n != float_name],
        manifest.get("task"),
    )
    float_outs = None
    if float_name in records:
        float_outs = runs[float_name].take(report)
        _check_float_reference(bundle, float_name, float_outs, report, tol)
    litert_outs = {float_name: float_outs} if float_outs is not None else {}
    for name in tflites:
        if name == float_name:
            continue
        outs = runs[name].take(report)
        if outs is None:
            continue
        litert_outs[name] = outs
        _check_goldens(bundle, name, records[name], images, outs, report)
        if float_outs is not None:
            _check_vs_float(manifest, name, records[name], outs, float_outs, report, tol)
    _check_mediapipe(bundle, manifest, records, images, litert_outs, report, tol, mediapipe)
    return report


# ---------------------------------------------------------------- labels, contract


def _check_labels(bundle: Path, manifest: dict, report: VerifyReport) -> None:
    labels = manifest.get("labels") or []
    p = bundle / "labels.txt"
    if not labels:
        return
    if not p.is_file():
        report.add("labels.txt", "labels", FAIL, f"the manifest has {len(labels)} labels, labels.txt is missing")
        return
    got = p.read_text().splitlines()
    if got != list(labels):
        diff = next((i for i, (a, b) in enumerate(zip(got, labels)) if a != b), min(len(got), len(labels)))
        report.add(
            "labels.txt",
            "labels",
            FAIL,
            f"differs from manifest labels at line {diff + 1} ({len(got)} lines vs {len(labels)} labels)",
        )
    else:
        report.add("labels.txt", "labels", PASS)


def _check_contract(manifest: dict, name: str, report: VerifyReport) -> dict:
    """The record the manifest implies; a stored record that differs means the manifest was edited."""
    want = file_record(manifest, name)
    stored = manifest["models"][name].get("contract")
    if stored is None:
        report.add(
            name,
            "models[].contract",
            FAIL,
            "the manifest has no handoff contract for this file (exported before issue 11?): re-export",
        )
        return want
    diffs = _dict_diffs(stored, want)
    if diffs:
        report.add(
            name,
            "models[].contract",
            FAIL,
            "the stored contract disagrees with the rest of the manifest (edited manifest?): " + "; ".join(diffs[:6]),
        )
    else:
        report.add(name, "models[].contract", PASS)
    _check_clients(manifest, name, report)
    return stored


def _check_clients(manifest: dict, name: str, report: VerifyReport) -> None:
    """models[].clients: the measured entries (clients.py), well formed, and no client the manifest
    hands the file off for recorded as failing or not loading it."""
    entries = manifest["models"][name].get("clients")
    bad = entry_problems(entries)
    if not bad:
        bad = [p.split(": ", 1)[1] for p in claim_failures({**manifest, "models": {name: manifest["models"][name]}})]
    report.add(name, "models[].clients", FAIL if bad else PASS, "; ".join(bad[:4]))


def _check_tensor_record(bundle: Path, manifest: dict, name: str, report: VerifyReport) -> None:
    """The manifest's record of the file's tensors (models[].input / outputs) against the file: an
    edit there is named. (Feeding never uses these; it uses the contract.)"""
    try:
        interp = _interpreter(bundle / name, "xnnpack")
    except (ValueError, RuntimeError):
        return  # reported by the LiteRT check
    rec = manifest["models"][name]
    actual = [("input", interp.get_input_details()[0], rec.get("input") or {})]
    by_tensor = {o.get("name"): (k, o) for k, o in (rec.get("outputs") or {}).items()}
    for od in interp.get_output_details():
        key, o = by_tensor.get(od["name"], (od["name"], None))
        actual.append((f"outputs.{key}", od, o))
    bad = []
    for where, d, want in actual:
        if want is None:
            bad.append(f"models[].{where}: the file has output tensor {d['name']!r}, the manifest does not")
            continue
        scale, zp = d.get("quantization", (0.0, 0))
        got = {
            "dtype": np.dtype(d["dtype"]).name,
            "shape": [int(x) for x in d["shape"]],
            "scale": float(scale),
            "zero_point": int(zp),
        }
        for k, v in got.items():
            if k in want and (want[k] != v if k != "scale" else abs(float(want[k]) - v) > 1e-9 * max(1.0, abs(v))):
                bad.append(f"models[].{where}.{k}: manifest says {want[k]!r}, the file has {v!r}")
    report.add(name, "models[].tensors", FAIL if bad else PASS, "; ".join(bad))


def _dict_diffs(a, b, prefix="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _dict_diffs(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += _dict_diffs(x, y, f"{prefix}[{i}]")
        return out
    return [] if a == b else [f"{prefix}: stored {a!r}, implied {b!r}"]


def _check_metadata(bundle, manifest, records, report, mediapipe: bool) -> None:
    if not records:
        return
    if client.client_python() is None or not mediapipe:
        for name in records:
            report.add(
                name,
                "metadata",
                NOT_RUN,
                "the MediaPipe client environment (.venv-client) is absent: "
                "metadata and MediaPipe checks NOT run (make client-env)"
                if mediapipe
                else "skipped on request (--no-mediapipe)",
            )
        return
    read = read_metadata([bundle / n for n in records])
    labels_path = bundle / "labels.txt"
    labels_text = labels_path.read_text() if labels_path.is_file() else None
    for name, record in records.items():
        bad = metadata_mismatches(record, read[str(bundle / name)], labels_text)
        report.add(name, "metadata", FAIL if bad else PASS, "; ".join(bad))


# ---------------------------------------------------------------- feeding


def _golden_inputs(bundle: Path) -> list[tuple[str, np.ndarray]]:
    """The distinct model-stage input images of goldens/ (uint8 [1, h, w, 3], already resized)."""
    p = bundle / "goldens" / "goldens.json"
    if not p.is_file():
        return []
    idx = json.loads(p.read_text())
    seen, out = set(), []
    for v in idx.get("vectors", []):
        if v.get("stage") != "model":
            continue
        src = _vector_source(v, idx.get("model_id", ""))
        if src in seen:
            continue
        seen.add(src)
        out.append((src, np.load(bundle / "goldens" / v["inputs"]["image"]["file"], allow_pickle=False)))
    return out


def _vector_source(v: dict, model_id: str) -> str:
    """goldens.py names model vectors <file short name>_<image source>."""
    short = v["model_file"].removeprefix(model_id + "_").removesuffix(".tflite")
    return v["name"][len(short) + 1 :]


def _interpreter(path: Path, kernels: str = "reference"):
    resolver = {"xnnpack": OpResolverType.AUTO, "reference": OpResolverType.BUILTIN_REF}[kernels]
    interp = Interpreter(model_path=str(path), num_threads=2, experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    return interp


class _Run:
    """One file's LiteRT run done ahead (in a worker thread), with the checks it reported, merged into
    the real report in the file's turn so the report reads the same as a sequential run."""

    def __init__(self, path: Path, record: dict, images, name: str, kernels: str):
        self.local = VerifyReport(name)
        self.outs = _run_litert(path, record, images, self.local, name, kernels)

    def take(self, report: VerifyReport):
        report.checks.extend(self.local.checks)
        return self.outs


def _run_litert_all(bundle: Path, records: dict, images, names: list[str], task: str | None) -> dict[str, _Run]:
    """Every file's LiteRT run, two at a time (LiteRT releases the GIL while it runs). On the
    reference kernels: a file with golden vectors (which those kernels made) and every file of a
    segmenter (its vs-float32 figure is judged, with floors set on those kernels). Otherwise, where
    the run proves the file takes the contract's input and matches the float reference within a
    tolerance, on XNNPACK: PyDNet++ at 448x640 runs ~8 s a frame on the reference kernels, ~0.3 s on
    XNNPACK. Each run has its own interpreter."""
    golden = _golden_files(bundle)

    def kernels(name: str) -> str:
        return "reference" if name in golden or task in ("segmentation", "mask") else "xnnpack"

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {n: pool.submit(_Run, bundle / n, records[n], images, n, kernels(n)) for n in names}
        return {n: f.result() for n, f in futures.items()}


def _golden_files(bundle: Path) -> set[str]:
    """The files goldens/goldens.json has model vectors for."""
    p = bundle / "goldens" / "goldens.json"
    if not p.is_file():
        return set()
    return {v.get("model_file") for v in json.loads(p.read_text()).get("vectors", []) if v.get("stage") == "model"}


def _run_litert(
    path: Path, record: dict, images, report: VerifyReport, name: str, kernels: str = "reference"
) -> list[list[np.ndarray]] | None:
    """Outputs (raw tensors, in the file's output order) for each image fed as the contract says; None
    after reporting why the file cannot be fed that way."""
    try:
        interp = _interpreter(path, kernels)
    except (ValueError, RuntimeError) as exc:
        report.add(name, "litert.load", FAIL, f"ai-edge-litert cannot load it: {exc}")
        return None
    det = interp.get_input_details()
    inp = record["input"]
    problems = []
    if len(det) != 1:
        problems.append(f"input count: {len(det)} inputs, the contract describes one image")
    d = det[0]
    dtype = np.dtype(d["dtype"]).name
    if dtype != inp["dtype"]:
        q = d.get("quantization", (0.0, 0))
        problems.append(
            f"input.dtype: the file takes {dtype}"
            + (f" (scale {q[0]:g}, zero point {q[1]})" if q[0] else "")
            + f", the manifest says {inp['dtype']} pixels {inp['range'][0]}..{inp['range'][1]}"
        )
    elif dtype == "uint8":
        scale, zp = d.get("quantization", (0.0, 0))
        if (scale, zp) not in ((1.0, 0), (0.0, 0)):
            problems.append(
                f"input normalization: uint8 input quantized with scale {scale:g}, zero point {zp}; "
                "the manifest says raw pixels (scale 1, zero point 0)"
            )
    if [int(s) for s in d["shape"]] != list(inp["shape"]):
        problems.append(f"input.shape: {list(d['shape'])}, the manifest says {inp['shape']}")
    if problems:
        report.add(name, "tensor.input", FAIL, "; ".join(problems))
        return None
    report.add(name, "tensor.input", PASS)
    outs_det = interp.get_output_details()
    want_outs = {o["tensor_name"]: o for o in record["outputs"]}
    out_problems = []
    for od in outs_det:
        spec = want_outs.get(od["name"])
        if spec is None:
            out_problems.append(f"output {od['name']!r} is not in the manifest")
        elif spec.get("shape") and [int(s) for s in od["shape"]] != list(spec["shape"]):
            out_problems.append(f"output {spec['key']}.shape: {list(od['shape'])}, manifest says {spec['shape']}")
    if out_problems:
        report.add(name, "tensor.outputs", FAIL, "; ".join(out_problems))
        return None
    results = _feed(interp, record, images, path, kernels)
    report.add(name, "litert.run", PASS, f"{len(images)} images fed as the manifest says ({kernels} kernels)")
    return results


def _feed(interp, record: dict, images, path: Path | None = None, kernels: str | None = None) -> list[list[np.ndarray]]:
    """Raw outputs per image, fed as the contract says. With the file's path and kernels, a reference
    run this process already made on exactly this input (the export's golden vectors) is taken from
    runtime.recall instead of run again; the input is still the contract's."""
    d = interp.get_input_details()[0]
    results = []
    for _, img in images:
        x = contract_input(record, img)
        key = run_key(path, kernels, x) if path is not None and kernels is not None else None
        got = recall(key)
        ods = interp.get_output_details()
        if got is not None and all(od["index"] in got for od in ods):
            results.append([got[od["index"]].copy() for od in ods])
            continue
        interp.set_tensor(d["index"], x)
        interp.invoke()
        results.append([interp.get_tensor(od["index"]).copy() for od in ods])
        remember(key, {od["index"]: r for od, r in zip(ods, results[-1])})
    return results


def _dequant(path: Path) -> list[tuple[float, int]]:
    interp = _interpreter(path, "xnnpack")
    return [tuple(od.get("quantization", (0.0, 0))) for od in interp.get_output_details()]


def _real(raw: np.ndarray, q: tuple[float, int]) -> np.ndarray:
    if q[0] and raw.dtype in (np.int8, np.uint8, np.int16):
        return (raw.astype(np.float32) - q[1]) * q[0]
    return raw


def decode(record: dict, raw_outputs: list[np.ndarray], quant: list[tuple[float, int]]) -> np.ndarray:
    """The toolchain's own decode of a segmenter's first output: class index per pixel [H, W]
    (argmax of logits, the index itself for the labels variant, probability > 0.5 for one channel)."""
    spec = record["outputs"][0]
    v = _real(raw_outputs[0], quant[0])[0]
    if spec["kind"] == "class_index":
        return v.astype(np.int32)
    if v.ndim == 3 and v.shape[-1] > 1:
        return np.argmax(v, -1).astype(np.int32)
    return (v.reshape(v.shape[:2]) > 0.5).astype(np.int32)


def _check_goldens(bundle: Path, name: str, record: dict, images, outs, report: VerifyReport) -> None:
    """The golden vectors of the file against its LiteRT outputs (reference kernels) on the same inputs."""
    p = bundle / "goldens" / "goldens.json"
    if not p.is_file():
        return
    idx = json.loads(p.read_text())
    vectors = [v for v in idx.get("vectors", []) if v.get("stage") == "model" and v.get("model_file") == name]
    if not vectors:
        return
    order = [od["name"] for od in _interpreter(bundle / name, "xnnpack").get_output_details()]
    by_key = {o["key"]: o["tensor_name"] for o in record["outputs"]}
    sources = [src for src, _ in images]
    fails, figs = [], {}
    for v in vectors:
        src = _vector_source(v, idx.get("model_id", ""))
        if src not in sources:
            fails.append(f"{v['name']}: its input is not among the golden inputs")
            continue
        got_all = outs[sources.index(src)]
        for key, rec in v["expected"].items():
            tname = by_key.get(key, key)
            if tname not in order:
                fails.append(f"{v['name']}: output {key} not in the file")
                continue
            got = got_all[order.index(tname)]
            expected = np.load(bundle / "goldens" / rec["file"], allow_pickle=False)
            m, f = compare(expected, got, rec, v["tolerance"])
            figs.update(
                {f"{src}.{k}": val for k, val in m.items() if k in ("max_abs_q", "agreement", "argmax_agreement")}
            )
            fails += [f"{v['name']}.{key}: {x}" for x in f]
    report.add(
        name,
        "goldens",
        FAIL if fails else PASS,
        "; ".join(fails) or f"{len(vectors)} golden vectors reproduced",
        **figs,
    )


def _check_float_reference(bundle: Path, float_name: str, float_outs, report: VerifyReport, tol: dict) -> None:
    if float_outs is None:
        return
    if not (bundle / "goldens" / "goldens.json").is_file():
        return
    idx = json.loads((bundle / "goldens" / "goldens.json").read_text())
    worst = None
    order = [src for src, _ in _golden_inputs(bundle)]
    for v in idx.get("vectors", []):
        if v.get("stage") != "model" or "float_reference" not in v:
            continue
        src = _vector_source(v, idx.get("model_id", ""))
        if src not in order:
            continue
        got_all = float_outs[order.index(src)]
        for rec in v["float_reference"].values():
            ref = np.load(bundle / "goldens" / rec["file"], allow_pickle=False).astype(np.float32)
            got = next((g.astype(np.float32) for g in got_all if g.shape == ref.shape), None)
            if got is None:
                continue
            rel = float(np.max(np.abs(got - ref)) / max(float(np.ptp(ref)), 1e-6))
            worst = rel if worst is None else max(worst, rel)
    if worst is None:
        return
    ok = worst <= tol["float_model"]["float_reference_max_rel"]
    report.add(
        float_name,
        "goldens.float_reference",
        PASS if ok else FAIL,
        ""
        if ok
        else f"float32 output differs from the goldens' float reference by {worst:.3g} of its range "
        f"> {tol['float_model']['float_reference_max_rel']} (wrong input normalization?)",
        max_rel_diff=worst,
    )


def _check_vs_float(manifest, name, record, outs, float_outs, report, tol) -> None:
    """Task figure of the file vs the float32 model, both fed as the contract says."""
    if manifest.get("task") not in ("segmentation", "mask"):
        return
    bundle_float = f"{manifest['model_id']}_float32.tflite"
    fl_record = manifest["models"][bundle_float].get("contract") or file_record(manifest, bundle_float)
    q_file = [(o.get("scale", 0.0), o.get("zero_point", 0)) for o in manifest["models"][name]["outputs"].values()]
    # output quantization from the manifest, paired by tensor name in the file's output order
    by_tensor = {
        o["name"]: (o.get("scale", 0.0), o.get("zero_point", 0)) for o in manifest["models"][name]["outputs"].values()
    }
    order = [o["tensor_name"] for o in record["outputs"]]
    q_file = [by_tensor.get(t, (0.0, 0)) for t in order] or q_file
    figs = []
    for raw, fraw in zip(outs, float_outs):
        got = decode(record, raw, q_file)
        ref = decode(fl_record, fraw, [(0.0, 0)] * len(fraw))
        if manifest["task"] == "mask":
            a, b = got > 0, ref > 0
            if b.mean() < 0.01:
                continue
            figs.append(float((a & b).sum() / max((a | b).sum(), 1)))
        else:
            figs.append(float(np.mean(got == ref)))
    if not figs:
        return
    worst = min(figs)
    key, floor = (
        ("mask_iou", tol["float_model"]["mask_iou_min"])
        if manifest["task"] == "mask"
        else ("pixel_agreement", tol["float_model"]["segmentation_agreement_min"])
    )
    # never stricter than the recipe's own parity budget (a test recipe may allow a weak model)
    budget = ((manifest.get("recipe") or {}).get("parity") or {}).get(
        "iou_min" if key == "mask_iou" else "pixel_agreement_min"
    )
    if isinstance(budget, (int, float)):
        floor = min(floor, float(budget))
    ok = worst >= floor
    judged = (
        name in (manifest.get("handoff"), manifest.get("handoff_cpu"), manifest.get("handoff_gpu"))
        or manifest["models"][name].get("precision") in FLOAT_INPUT_PRECISIONS
    )
    if not judged:  # a file the gate did not hand off: its figure is information (the gate's are in the manifest)
        report.add(
            name,
            "litert.vs_float32",
            INFO,
            "not a handoff: figure reported, not judged",
            **{f"worst_{key}": worst, f"mean_{key}": float(np.mean(figs))},
        )
        return
    report.add(
        name,
        "litert.vs_float32",
        PASS if ok else FAIL,
        ""
        if ok
        else f"fed as the manifest says, worst {key} vs the float32 model {worst:.4f} < {floor}: "
        "the file does not do what the manifest says (input type, normalization or output meaning)",
        **{f"worst_{key}": worst, f"mean_{key}": float(np.mean(figs))},
    )


# ---------------------------------------------------------------- MediaPipe


def _check_mediapipe(bundle, manifest, records, images, litert_outs, report, tol, mediapipe: bool) -> None:
    names = [n for n, r in records.items() if MEDIAPIPE_SEGMENTER in r.get("clients", [])]
    if not names:
        return
    if not mediapipe or client.client_python() is None:
        for n in names:
            report.add(
                n,
                "mediapipe",
                NOT_RUN,
                "the MediaPipe client environment (.venv-client) is absent: "
                "MediaPipe Tasks ImageSegmenter was NOT run (make client-env)"
                if mediapipe
                else "skipped on request (--no-mediapipe)",
            )
        return
    labels = list(manifest.get("labels") or [])
    with tempfile.TemporaryDirectory(prefix="portrait-mp-") as tmp_name:
        tmp = Path(tmp_name)
        paths = []
        for i, (_, img) in enumerate(images):
            p = tmp / f"img{i}.npy"
            np.save(p, np.ascontiguousarray(img[0] if img.ndim == 4 else img))
            paths.append(str(p))
        for n in names:
            record = records[n]
            outs = litert_outs.get(n)
            reply = client.call("segment", {"model": str(bundle / n), "images": paths, "out_dir": str(tmp / n)})
            if not reply.get("loaded"):
                report.add(
                    n,
                    "mediapipe.load",
                    FAIL,
                    f"MediaPipe Tasks ImageSegmenter refuses the file, which the "
                    f"manifest lists for it: {reply.get('error')}",
                )
                continue
            want_labels = labels if any(o.get("labels_file") for o in record["outputs"]) else []
            if reply.get("labels", []) != want_labels:
                report.add(
                    n,
                    "mediapipe.labels",
                    FAIL,
                    f"MediaPipe reads labels {(reply.get('labels') or [])[:4]}... "
                    f"({len(reply.get('labels', []))}), the manifest has {len(want_labels)}",
                )
            if outs is None:
                report.add(n, "mediapipe.agreement", FAIL, "no LiteRT outputs to compare with (see the tensor check)")
                continue
            # compared with LiteRT on each kernel set, judged on the closer one: MediaPipe's own TFLite build
            # picks its kernels (XNNPACK where it applies), so the figure measures the client's handling
            # (resize, normalization, dequantization, decode), not which kernel library ran
            quant = _dequant(bundle / n)
            best = None
            for kernels in ("xnnpack", "reference"):
                figs = _mediapipe_vs_litert(
                    record,
                    reply["results"],
                    _feed(_interpreter(bundle / n, kernels), record, images, bundle / n, kernels),
                    quant,
                )
                figs["litert_kernels"] = kernels
                key = (figs["worst_category_agreement"], -figs["confidence_max_abs"])
                if best is None or key > best[0]:
                    best = (key, figs)
            assert best is not None  # both kernel sets ran
            figs = best[1]
            floor = tol["mediapipe"]["category_agreement_min"]
            cmax = tol["mediapipe"]["confidence_mean_abs_max"]
            ok = (
                figs["worst_category_agreement"] >= floor
                and (figs["confidence_mean_abs"] or 0.0) <= cmax
                and np.isfinite(figs["confidence_max_abs"])
            )
            judged = (
                n in (manifest.get("handoff"), manifest.get("handoff_cpu"), manifest.get("handoff_gpu"))
                or manifest["models"][n].get("precision") in FLOAT_INPUT_PRECISIONS
            )
            if not ok and not judged:  # not handed off: the figure is information, the load itself passed
                report.add(
                    n,
                    "mediapipe.agreement",
                    INFO,
                    "not a handoff: below the agreement floor, reported not judged",
                    **figs,
                )
                continue
            report.add(
                n,
                "mediapipe.agreement",
                PASS if ok else FAIL,
                ""
                if ok
                else f"MediaPipe category mask vs the toolchain decode: worst "
                f"{figs['worst_category_agreement']:.5f} (min {floor}); confidence vs LiteRT mean diff "
                f"{figs['confidence_mean_abs']} (max {cmax}), max diff {figs['confidence_max_abs']:.3g}",
                **figs,
            )


def _mediapipe_vs_litert(record: dict, results: list[dict], outs, quant) -> dict:
    agree: list[float] = []
    conf_mean: list[float] = []
    conf_max = 0.0
    for res, raw in zip(results, outs):
        mine = decode(record, raw, quant)
        cat = np.load(res["category"]).astype(np.int32)
        conf = np.load(res["confidence"])
        real = _real(raw[0], quant[0])[0]
        if conf.shape[-1] == 1:
            # MediaPipe's category mask of a one-channel model: 0 where the probability > 0.5
            cat = (cat == 0).astype(np.int32)
            probs = real.reshape(conf.shape)
        else:
            e = np.exp(real - real.max(-1, keepdims=True))
            probs = e / e.sum(-1, keepdims=True)
        agree.append(float(np.mean(cat == mine)))
        if probs.shape == conf.shape:
            d = np.abs(conf - probs)
            conf_max, conf_mean = max(conf_max, float(d.max())), conf_mean + [float(d.mean())]
        else:
            conf_max = float("inf")
    return {
        "worst_category_agreement": min(agree),
        "mean_category_agreement": float(np.mean(agree)),
        "confidence_max_abs": conf_max,
        "confidence_mean_abs": float(np.mean(conf_mean)) if conf_mean else None,
        "images": len(agree),
    }


def verify_staged(staged: Path, *, progress=None) -> VerifyReport:
    """The export's last step, on the staged bundle: verify, then write the model card (README.md).
    Raises ExportError (the bundle is not handed off) on any failed or not-run check."""
    say = progress or (lambda m: None)
    report = verify(staged, staged=True)
    for line in report.format().splitlines()[1:]:
        say("verify: " + line.strip())
    client_not_run = [c for c in report.not_run if c.field in ("metadata", "mediapipe")]
    if not report.passed or client_not_run:
        raise ExportError(
            "the staged bundle fails `portrait verify`; nothing is handed off:\n"
            + "\n".join(f"  {c.file}: {c.field}: {c.message}" for c in report.failures + client_not_run),
            where=str(staged),
            fix="fix the file or the manifest field named above and re-export",
        )
    _record_native_clients(staged, report, say)
    write_card(staged, report)
    say("model card written (README.md)")
    return report


def _record_native_clients(staged: Path, report: VerifyReport, say) -> None:
    """The clients this verify run measured (ai-edge-litert, MediaPipe in Python) into the staged
    manifest, before the web entries the export's device-check recorded; a claimed client that fails
    stops the export (as a parity miss does)."""
    mpath = staged / "manifest.json"
    manifest = json.loads(mpath.read_text())
    try:
        mpv = client.version()
    except client.ClientError:
        mpv = None
    native = clients.native_entries(report, manifest, litert_version=version("ai-edge-litert"), mediapipe_version=mpv)
    web = {
        n: [
            e
            for e in (r.get("clients") or [])
            if isinstance(e, dict) and e.get("runtime") not in (clients.LITERT_NATIVE, clients.MEDIAPIPE_NATIVE)
        ]
        for n, r in manifest.get("models", {}).items()
        if n.endswith(".tflite")
    }
    clients.record(manifest, native, web)
    mpath.write_text(json.dumps(manifest, indent=2))
    bad = clients.claim_failures(manifest)
    if bad:
        raise ExportError(
            "a handoff file fails in a client the manifest hands it off for; nothing is handed off:\n"
            + "\n".join(f"  {b}" for b in bad),
            where=str(staged),
            fix="see the runtime's message above; choose another rung or file for that client",
        )
    say(
        "clients recorded in the manifest: "
        + "; ".join(
            f"{n}: {clients.summary(r['clients'])}"
            for n, r in manifest["models"].items()
            if n.endswith(".tflite")
            and n in (manifest.get("handoff"), manifest.get("handoff_cpu"), manifest.get("handoff_gpu"))
        )
    )
