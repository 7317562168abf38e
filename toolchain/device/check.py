"""The on-device parity checker: outputs dumped by a phone vs the bundle's golden vectors.

`check_outputs(bundle, device_dir)` reads <bundle>/goldens/goldens.json (format: goldens.py),
finds each expected tensor in `device_dir` (same file name, .npy or raw .bin), computes the
vector's metric and returns one verdict per vector. A missing file, a wrong dtype or a wrong shape
fails that vector with a message saying so. `format_report` prints pass/fail per vector with its
metrics; the CLI exits 1 when any vector fails.

Metrics (limits come from goldens.json, written from toolchain/device/tolerances.toml):
- quantized: |q_device - q_golden| in quantization steps: max_abs_q, mean_abs_q; argmax agreement
  over the last axis when it has classes (on pixels whose golden top-1 leads by more than
  argmax_margin_q steps; over all pixels as information); plus the dequantized max abs diff (information).
- labels: fraction of equal labels.
- image: |device - golden| in 8-bit levels: mean, max, fraction over 4 levels.
- float: |device - reference| relative to the reference's range (max, mean), argmax agreement over a
  class axis; used by `portrait device-check` for float files and MediaPipe's confidence masks.

Not for: writing goldens (goldens.py) or the export's float-vs-int8 parity gate (toolchain/parity).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.bundle_loader import open_bundle
from toolchain.errors import InputError, PortraitError

from .goldens import golden_index, load_tensor


@dataclass
class VectorResult:
    name: str
    stage: str
    passed: bool
    metrics: dict = field(default_factory=dict)  # per expected key: {metric: value}
    failures: list[str] = field(default_factory=list)


def read_device_tensor(device_dir: Path, rec: dict) -> np.ndarray:
    """The phone's tensor for one expected record: <file>.npy, or <stem>.bin with raw bytes."""
    npy = device_dir / rec["file"]
    dtype, shape = np.dtype(rec["dtype"]), tuple(rec["shape"])
    if npy.is_file():
        arr = np.load(npy, allow_pickle=False)
        if arr.dtype != dtype:
            raise ValueError(f"dtype {arr.dtype} but the golden is {dtype}")
        if arr.shape != shape:
            if arr.size == int(np.prod(shape)):
                return arr.reshape(shape)
            raise ValueError(f"shape {arr.shape} but the golden is {shape}")
        return arr
    binf = npy.with_suffix(".bin")
    if binf.is_file():
        raw = binf.read_bytes()
        want = int(np.prod(shape)) * dtype.itemsize
        if len(raw) != want:
            raise ValueError(f"{binf.name} has {len(raw)} bytes, expected {want} ({dtype} {list(shape)})")
        return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(shape).astype(dtype)
    raise FileNotFoundError(f"missing: neither {npy.name} nor {binf.name}")


def compare(expected: np.ndarray, got: np.ndarray, rec: dict, tol: dict) -> tuple[dict, list[str]]:
    """Metric values and failure messages for one tensor under the vector's tolerance."""
    metric = tol["metric"]
    m: dict[str, Any] = {}
    fails: list[str] = []
    if metric == "quantized":
        d = np.abs(got.astype(np.int32) - expected.astype(np.int32))
        m["max_abs_q"] = int(d.max()) if d.size else 0
        m["mean_abs_q"] = float(d.mean()) if d.size else 0.0
        if rec.get("scale"):
            m["max_abs_dequantized"] = float(m["max_abs_q"] * rec["scale"])
        if expected.ndim >= 3 and expected.shape[-1] > 1:
            # only where the golden's top-1 leads by more than argmax_margin_q steps: a tie may flip on
            # one step of rounding, which is not an error
            top2 = np.sort(expected.astype(np.int32), axis=-1)[..., -2:]
            decidable = (top2[..., 1] - top2[..., 0]) > int(tol.get("argmax_margin_q", 0))
            same = np.argmax(got, -1) == np.argmax(expected, -1)
            m["argmax_agreement"] = float(np.mean(same[decidable])) if decidable.any() else 1.0
            m["argmax_agreement_all"] = float(np.mean(same))
        if m["max_abs_q"] > tol["max_abs_q"]:
            fails.append(f"max_abs_q {m['max_abs_q']} > {tol['max_abs_q']}")
        if m["mean_abs_q"] > tol["mean_abs_q"]:
            fails.append(f"mean_abs_q {m['mean_abs_q']:.4f} > {tol['mean_abs_q']}")
        if "argmax_agreement" in m and m["argmax_agreement"] < tol["argmax_agreement_min"]:
            fails.append(f"argmax_agreement {m['argmax_agreement']:.5f} < {tol['argmax_agreement_min']}")
    elif metric == "labels":
        m["agreement"] = float(np.mean(got == expected))
        if m["agreement"] < tol["agreement_min"]:
            fails.append(f"agreement {m['agreement']:.5f} < {tol['agreement_min']}")
    elif metric == "image":
        d = np.abs(got.astype(np.int32) - expected.astype(np.int32))
        m["mean_abs"], m["max_abs"] = float(d.mean()), int(d.max())
        m["frac_over_4"] = float(np.mean(d > 4))
        if m["mean_abs"] > tol["mean_abs_max"]:
            fails.append(f"mean_abs {m['mean_abs']:.4f} > {tol['mean_abs_max']}")
        if m["max_abs"] > tol["max_abs_max"]:
            fails.append(f"max_abs {m['max_abs']} > {tol['max_abs_max']}")
        if m["frac_over_4"] > tol["frac_over_4_max"]:
            fails.append(f"frac_over_4 {m['frac_over_4']:.5f} > {tol['frac_over_4_max']}")
    elif metric == "float":
        # float outputs (a float file's logits or probabilities, a client's confidence masks): |device -
        # golden| relative to the golden's range; argmax agreement over a class axis where the golden's
        # top-1 leads by more than argmax_margin_rel of the range. Each limit is checked where the tolerance has it.
        e, g = expected.astype(np.float64), got.astype(np.float64)
        if not np.all(np.isfinite(g)):
            fails.append(f"{int(np.sum(~np.isfinite(g)))} non-finite values")
            g = np.where(np.isfinite(g), g, 0.0)
        df = np.abs(g - e)
        rng = max(float(np.ptp(e)) if e.size else 0.0, 1e-6)
        m["max_abs"] = float(df.max()) if df.size else 0.0
        m["mean_abs"] = float(df.mean()) if df.size else 0.0
        m["max_rel"], m["mean_rel"] = m["max_abs"] / rng, m["mean_abs"] / rng
        if e.ndim >= 3 and e.shape[-1] > 1:
            lead = np.diff(np.sort(e, axis=-1)[..., -2:], axis=-1)[..., 0]  # top-1 minus top-2
            decidable = lead > float(tol.get("argmax_margin_rel", 0.0)) * rng
            same = np.argmax(g, -1) == np.argmax(e, -1)
            m["argmax_agreement"] = float(np.mean(same[decidable])) if decidable.any() else 1.0
            m["argmax_agreement_all"] = float(np.mean(same))
        for name, limit in (("max_rel", "max_rel_max"), ("mean_rel", "mean_rel_max"), ("mean_abs", "mean_abs_max")):
            if limit in tol and m[name] > tol[limit]:
                fails.append(f"{name} {m[name]:.4g} > {tol[limit]}")
        if (
            "argmax_agreement" in m
            and "argmax_agreement_min" in tol
            and m["argmax_agreement"] < tol["argmax_agreement_min"]
        ):
            fails.append(f"argmax_agreement {m['argmax_agreement']:.5f} < {tol['argmax_agreement_min']}")
    else:
        raise InputError(
            f"unknown tolerance metric {metric!r} in goldens.json",
            fix="regenerate the goldens with this toolchain (python -m toolchain.device.goldens)",
        )
    return m, fails


def check_outputs(bundle_dir: str | Path, device_dir: str | Path) -> list[VectorResult]:
    """One verdict per golden vector (see the module docstring)."""
    opened, dev = open_bundle(bundle_dir), Path(device_dir)
    bundle, idx = opened.root, golden_index(opened)
    if not dev.is_dir():
        raise InputError(
            f"device output folder not found: {dev}", fix="copy the phone's dump folder here (adb pull ...) and pass it"
        )
    g = bundle / "goldens"
    results = []
    for v in idx["vectors"]:
        r = VectorResult(v["name"], v["stage"], True)
        for key, rec in v["expected"].items():
            try:
                got = read_device_tensor(dev, rec)
            except (OSError, ValueError, EOFError) as e:  # a phone's file: missing, wrong dtype/shape, unreadable
                r.failures.append(f"{key}: {e}")
                continue
            metrics, fails = compare(load_tensor(g, rec), got, rec, v["tolerance"])
            r.metrics[key] = metrics
            r.failures += [f"{key}: {f}" for f in fails]
        r.passed = not r.failures
        results.append(r)
    return results


def format_report(results: list[VectorResult]) -> str:
    lines = []
    for r in results:
        ms = "; ".join(
            f"{k}: " + ", ".join(f"{n} {v:.4g}" if isinstance(v, float) else f"{n} {v}" for n, v in m.items())
            for k, m in r.metrics.items()
        )
        lines.append(f"{'PASS' if r.passed else 'FAIL'}  {r.name:34} {ms}")
        for f in r.failures:
            lines.append(f"      {f}")
    n_fail = sum(not r.passed for r in results)
    lines.append(f"{len(results) - n_fail}/{len(results)} vectors pass" + (" -> FAIL" if n_fail else " -> PASS"))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m toolchain.device.check",
        description="compare a phone's dumped outputs with a bundle's golden vectors",
    )
    ap.add_argument("--bundle", required=True, type=Path)
    ap.add_argument("--device-outputs", required=True, type=Path)
    args = ap.parse_args(argv)
    try:
        results = check_outputs(args.bundle, args.device_outputs)
    except PortraitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(results))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
