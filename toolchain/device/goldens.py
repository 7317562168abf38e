"""Golden vectors: a small set of inputs and reference outputs written into a bundle, for a phone
port to reproduce (checked by check.py).

Run on an existing bundle:  python -m toolchain.device.goldens --bundle export/out/<model_id>
The export calls `write_goldens(bundle_dir)` after the bundle is written.

FILE FORMAT (format "portrait-goldens", version 1), in <bundle>/goldens/:
- goldens.json, the index::

    {"format": "portrait-goldens", "format_version": 1, "model_id": ..., "vectors": [VECTOR, ...]}

  VECTOR = {"name": "<stage>_<source>" (unique), "stage": "model" | "fused",
            "model_file": "<id>_int8.tflite" (model stage only),
            "inputs":   {KEY: TENSOR, ...},
            "expected": {KEY: TENSOR, ...},   what a port must reproduce (int8 reference kernels for
                                              models; the fixed-point device stage for "fused")
            "float_reference": {KEY: TENSOR}  model stage: the float32 model's outputs, stored as
                                              float16 to keep the bundle small (information: how
                                              far int8 is from float; not checked)
            "params": {...}                   fused stage: output_spec, focus_m, max_blur_px, mode
            "tolerance": {"metric": "quantized" | "labels" | "image", ...limits}}
  TENSOR = {"file": "<name>.npy", "dtype": "uint8" | "int8" | "float32" | ..., "shape": [...],
            "scale": float, "zero_point": int (quantized tensors only; real = (q - zero_point) * scale)}
- one .npy file per tensor (NumPy format 1.0, C order, little-endian), named in the index.

Model vectors: the input is the uint8 RGB image exactly as fed to the model ([1, h, w, 3], already
resized as the manifest says); expected outputs are the raw (not dequantized) output tensors of the
int8 model run with the reference kernels. Fused vectors: inputs are the RGB frame (uint8 H x W x 3),
the int8 model output (raw, with its quantization), registered depth (float32 metres, NaN = hole)
and its confidence (float32 0..1); expected are alpha (uint8, 255 = subject) and the composite
(uint8 RGB).

DEVICE OUTPUTS (what `portrait check --device-outputs DIR` reads): for every expected tensor, a file
in DIR with the same name as in goldens/ (e.g. model_astronaut.ResizeBilinear_3.npy), either .npy or
raw little-endian bytes in C order with the extension .bin (dtype and shape from goldens.json).
`dump_outputs` writes such a folder from this host (the simulator acting as the phone).

Not for: judging (check.py) or the export's parity gate (toolchain/parity).
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.bundle import read_manifest, record_files
from toolchain.bundle_loader import Bundle, open_bundle
from toolchain.depth.registration import register_depth
from toolchain.depth.sequence import load_sequence
from toolchain.errors import InputError, PortraitError
from toolchain.images import bundled_photos, to_model_input
from toolchain.paths import SEQUENCES_DIR
from toolchain.render.api import render
from toolchain.render.photo import output_spec
from toolchain.runtime import TfliteRunner

FORMAT, FORMAT_VERSION = "portrait-goldens", 1
TOLERANCES = Path(__file__).resolve().parent / "tolerances.toml"
SEQUENCES = SEQUENCES_DIR  # sample sequences, data beside the simulator


def tolerances() -> dict:
    return tomllib.loads(TOLERANCES.read_text())


def _tensor(folder: Path, fname: str, arr: np.ndarray, quant: tuple[float, int] | None = None) -> dict:
    arr = np.ascontiguousarray(arr)
    np.save(folder / fname, arr, allow_pickle=False)
    rec: dict[str, Any] = {"file": fname, "dtype": arr.dtype.name, "shape": [int(s) for s in arr.shape]}
    if quant is not None and quant[0]:
        rec["scale"], rec["zero_point"] = float(quant[0]), int(quant[1])
    return rec


def golden_images(size_hw: tuple[int, int]) -> list[tuple[str, np.ndarray]]:
    """(name, full-size RGB) sources: the first frame of each sample sequence, and one bundled photo."""
    out = []
    for d in sorted(SEQUENCES.glob("*/meta.json")):
        try:
            out.append((d.parent.name, load_sequence(d.parent)[0].rgb()))
        except InputError:
            continue
    photos = bundled_photos()
    if "astronaut" in photos:
        out.append(("astronaut", photos["astronaut"]))
    return out


def write_goldens(bundle_dir: str | Path, *, fused: bool = True, progress=None) -> Path:
    """Write <bundle>/goldens/ (format in the module docstring); returns the folder. Overwrites."""
    say = progress or (lambda m: None)
    bundle = Path(bundle_dir)
    manifest = read_manifest(bundle)
    mid = manifest["model_id"]
    size_hw = tuple(manifest["input"]["size"])
    float_file = f"{mid}_float32.tflite"
    # every int8 file and the handoff, whatever its rung (w8a16, mixed float): what a port must reproduce
    int8_files = sorted(
        n
        for n in manifest.get("models", {})
        if n.endswith(".tflite") and ("_int8" in n or n == manifest.get("handoff"))
    )
    if not int8_files:
        raise InputError(
            f"bundle {mid} has no int8 model to write goldens for",
            where=str(bundle),
            fix="export with int8 in the recipe's precisions",
        )
    folder = bundle / "goldens"
    if folder.exists():
        for p in folder.iterdir():
            p.unlink()
    folder.mkdir(exist_ok=True)
    tol = tolerances()
    images = golden_images(size_hw)
    inputs_of = {src: to_model_input(rgb, size_hw)[None] for src, rgb in images}
    float_of = {}
    if (bundle / float_file).is_file():
        ref = TfliteRunner(bundle / float_file)
        float_of = {src: ref.run(x.astype(np.float32)) for src, x in inputs_of.items()}

    def reference_run(model_file):  # one interpreter per file, on the reference kernels (one core)
        runner = TfliteRunner(bundle / model_file, kernels="reference", threads=1)
        return runner.output_details(), {src: runner.run(x, dequantize=False) for src, x in inputs_of.items()}

    # LiteRT releases the GIL while it runs: two files at a time (PyDNet++'s int8 and w8a16 files take
    # ~4-6 s a frame each on the reference kernels); the outputs are the same as one after the other
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = dict(zip(int8_files, pool.map(reference_run, int8_files)))
    vectors = []
    fused_source = None
    for model_file in int8_files:
        details, outs_of = runs[model_file]
        short = model_file.removeprefix(mid + "_").removesuffix(".tflite")
        for src, _rgb in images:
            x = inputs_of[src]
            name = f"{short}_{src}"
            outs = outs_of[src]
            inputs = {"image": _tensor(folder, f"{name}.input.image.npy", x)}
            expected, kinds = {}, set()
            for k, v in sorted(outs.items()):
                q = details[k].get("quantization", (0.0, 0))
                expected[k] = _tensor(folder, f"{name}.{k}.npy", v, q)
                kinds.add("labels" if not q[0] else "model")
            vec = {
                "name": name,
                "stage": "model",
                "model_file": model_file,
                "inputs": inputs,
                "expected": expected,
                "tolerance": dict(tol["labels" if kinds == {"labels"} else "model"]),
            }
            if src in float_of and "labels" not in kinds:
                fl = float_of[src]
                vec["float_reference"] = {
                    k: _tensor(folder, f"{name}.float.{k}.npy", v.astype(np.float16)) for k, v in sorted(fl.items())
                }
            vectors.append(vec)
            if (
                fused_source is None
                and model_file == f"{mid}_int8.tflite"
                and src in {p.parent.name for p in SEQUENCES.glob("*/meta.json")}
            ):
                k0 = sorted(outs)[0]
                fused_source = (src, outs[k0], details[k0].get("quantization", (0.0, 0)))
            say(f"golden vector {name}")
    # the fused stage takes a mask model's output; a depth model's bundle gets model vectors only
    if fused and fused_source is not None and manifest.get("task") in ("segmentation", "mask"):
        vectors.append(_fused_vector(folder, manifest, *fused_source, tol["fused"]))
        say(f"golden vector {vectors[-1]['name']}")
    index = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_id": mid,
        "created_by": "python -m toolchain.device.goldens",
        "doc": "toolchain/device/goldens.py (module docstring)",
        "vectors": vectors,
    }
    (folder / "goldens.json").write_text(json.dumps(index, indent=1))
    return folder


def fused_spec(manifest: dict, quant: tuple[float, int]) -> dict:
    """The fused stage's spec for the int8 model output stored in a golden vector: the manifest's
    (photo.output_spec: kind, classes, edge band) with the int8 file's quantization."""
    return {**output_spec(manifest, ""), "dtype": "int8", "scale": float(quant[0]), "zero_point": int(quant[1])}


def _fused_vector(folder: Path, manifest: dict, seq_name: str, low: np.ndarray, quant, tol: dict) -> dict:
    seq = load_sequence(SEQUENCES / seq_name)
    f = seq[0]
    rgb = f.rgb()
    rng, conf = f.tof()
    depth_m, confidence, _ = register_depth(rng, conf, seq.tof_intrinsics, seq.rgb_intrinsics, seq.extrinsics, rgb)
    spec = fused_spec(manifest, quant)
    focus = float(f.subject_depth_m) if np.isfinite(f.subject_depth_m) else None
    params = {"output_spec": spec, "focus_m": focus, "max_blur_px": 8.0, "mode": "blur", "implementation": "device"}
    res = render(
        rgb, low, spec, depth_m=depth_m, confidence=confidence, focus_m=focus, max_blur_px=8.0, implementation="device"
    )
    name = f"fused_{seq_name}"
    return {
        "name": name,
        "stage": "fused",
        "inputs": {
            "image": _tensor(folder, f"{name}.input.image.npy", rgb),
            "model_output": _tensor(folder, f"{name}.input.model_output.npy", low, quant),
            "depth_m": _tensor(folder, f"{name}.input.depth_m.npy", depth_m.astype(np.float32)),
            "confidence": _tensor(folder, f"{name}.input.confidence.npy", confidence.astype(np.float32)),
        },
        "expected": {
            "alpha": _tensor(folder, f"{name}.alpha.npy", alpha_u8(res.alpha)),
            "composite": _tensor(folder, f"{name}.composite.npy", res.composite),
        },
        "params": params,
        "tolerance": dict(tol),
    }


def alpha_u8(alpha: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(alpha, np.float32) * 255.0), 0, 255).astype(np.uint8)


def read_index(bundle_dir: str | Path) -> dict:
    """goldens.json of an intact bundle (bundle_loader.open_bundle: schema, SHA-256 of every file); a
    bundle without goldens is an InputError that says how to make them."""
    return golden_index(open_bundle(bundle_dir))


def golden_index(bundle: Bundle) -> dict:
    if bundle.goldens is None:
        raise InputError(
            "bundle has no golden vectors",
            where=str(bundle.root / "goldens" / "goldens.json"),
            fix=f"run `python -m toolchain.device.goldens --bundle {bundle.label}` (or re-export the model)",
        )
    return bundle.goldens


def load_tensor(folder: Path, rec: dict) -> np.ndarray:
    """One golden tensor, as its record in goldens.json says (dtype and shape checked)."""
    p = Path(folder) / rec["file"]
    try:
        arr = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(
            f"cannot read the golden tensor: {exc}",
            where=str(p),
            fix="regenerate the goldens (python -m toolchain.device.goldens) or re-export",
        ) from None
    if arr.dtype.name != rec["dtype"] or list(arr.shape) != list(rec["shape"]):
        raise InputError(
            f"golden tensor is {arr.dtype.name} {list(arr.shape)}, goldens.json says {rec['dtype']} "
            f"{list(rec['shape'])}",
            where=str(p),
            fix="regenerate the goldens or re-export",
        )
    return arr


def dump_outputs(bundle_dir: str | Path, out_dir: str | Path, *, kernels: str = "reference") -> Path:
    """Act as the phone: run every golden vector's inputs on this host and write the outputs in the
    device-output format (same file names as goldens/). Model stage with `kernels`; fused stage with
    the device implementation."""
    opened, out = open_bundle(bundle_dir), Path(out_dir)
    bundle, idx = opened.root, golden_index(opened)
    g = bundle / "goldens"
    out.mkdir(parents=True, exist_ok=True)
    runners: dict[str, TfliteRunner] = {}
    for v in idx["vectors"]:
        if v["stage"] == "model":
            r = runners.get(v["model_file"]) or runners.setdefault(
                v["model_file"], TfliteRunner(bundle / v["model_file"], kernels=kernels, threads=1)
            )
            outs = r.run(load_tensor(g, v["inputs"]["image"]), dequantize=False)
            for k, rec in v["expected"].items():
                np.save(out / rec["file"], outs[k], allow_pickle=False)
        elif v["stage"] == "fused":
            p = v["params"]
            i = {k: load_tensor(g, rec) for k, rec in v["inputs"].items()}
            res = render(
                i["image"],
                i["model_output"],
                p["output_spec"],
                depth_m=i["depth_m"],
                confidence=i["confidence"],
                focus_m=p["focus_m"],
                max_blur_px=p["max_blur_px"],
                mode=p.get("mode", "blur"),
                implementation=p.get("implementation", "device"),
            )
            np.save(out / v["expected"]["alpha"]["file"], alpha_u8(res.alpha), allow_pickle=False)
            np.save(out / v["expected"]["composite"]["file"], res.composite, allow_pickle=False)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m toolchain.device.goldens", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True, type=Path, help="bundle folder (export/out/<model_id>)")
    ap.add_argument("--dump", type=Path, help="instead: write this host's outputs for the goldens into DIR")
    ap.add_argument("--kernels", default="reference", choices=("reference", "xnnpack"), help="with --dump")
    args = ap.parse_args(argv)
    try:
        if args.dump:
            print(f"device outputs written to {dump_outputs(args.bundle, args.dump, kernels=args.kernels)}")
        else:
            folder = write_goldens(args.bundle, progress=lambda m: print(m, file=sys.stderr))
            record_files(args.bundle, "goldens/")  # the manifest lists them with their SHA-256
            print(f"goldens written to {folder} and recorded in manifest.json")
    except PortraitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
