"""One calibration pass per float graph and calibration set, with every tensor's true range, shared by rungs.

TFLite's post-training quantizers (the MLIR int8 quantizer, and the old quantizer that 16x8 needs)
both start by running the float model over the calibration set and recording each tensor's min and
max. The TF converter does that inside every `convert()`, with TF's own `Calibrator`:

- **It records wrong ranges.** Its interpreter runs ADD and MUL in place (the output overwrites the
  first input's buffer) and its logger reads an op's inputs after the op has run, so the tensor
  feeding an in-place op is recorded with the op's output range. Measured on the real models: the
  residual head `Conv2D_401` of PyDNet++ spans -4.0..3.2 but was recorded as -121..86 (the sum it
  feeds), so its int8 step was 30x too coarse; 31 tensors of the selfie segmenter (each hard-swish's
  `x * relu6(x + 3)` recorded as up to 6x its range) and 13 of DeepLab (the residual projections)
  were wrong in the same way. `ranges.py` only ever shrinks a recorded range, by at most 0.15x, so it
  could not repair them.
- **It is slow:** one core, the builtin kernels, ~1.25 s a sample for PyDNet++ at 448x640, and
  inside every conversion (PyDNet++ once for its w8a8 rung and again for its w8a16 rung).

`shared_calibration(samples)` is a context manager for one conversion: inside it, the TF converter's
own calibration calls (`Calibrator.calibrate` on the MLIR path, `Calibrator.calibrate_and_quantize`
on the 16x8 path) get their ranges from `calibrated()` instead of feeding the set again. Everything
else (the float graph, the quantizer, io types, metadata) stays the converter's own.

`calibrated(model_content, samples)`:
- returns the ranges of an earlier pass when the float graph (the flatbuffer without its metadata)
  and the samples are the same (`reused`), copied onto this flatbuffer tensor by tensor;
- also when this graph is an earlier one with non-float ops added (DeepLab's ArgMax labels variant:
  ARG_MAX after the logits): every float tensor here must be computed in the earlier graph the same
  way (`structural_ids`: type, shape, constants, ops and their inputs, whatever the names), and its
  ranges are copied from there (`covers`);
- otherwise runs one pass (`true_ranges`): a copy of the graph in which every float tensor that
  TF's calibrator would record (the graph input and every op's float output) is also a graph output,
  on LiteRT's default CPU kernels (XNNPACK). A graph output is never shared with another tensor, so
  every value read is the tensor's own; the ranges are written onto the same tensors, in the same
  form (per-tensor min/max), as TF's calibrator writes them (tests/test_calibration.py: the same
  tensors, the true values, 0.42 s a sample for PyDNet++ on one thread).
  A graph with more than one subgraph or input (none of the registry's) falls back to TF's calibrator.

PORTRAIT_CALIBRATION_THREADS sets the pass's interpreter threads (default: the cores, at most 4).

Every pass ends with `ranges.clamp_saturated`: a tensor whose every use ends in a sigmoid or tanh
(through ops that only move values) keeps only the range that op can tell apart (+-8 for a sigmoid).

Not for: choosing ranges (ranges.py searches them after this), quantizing (precisions.py, conversions.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
from collections.abc import Callable

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from ..cache import array_digest
from ..errors import ExportError
from . import flatbuffer, ranges
from .flatbuffer import FLOAT32, is_constant

ENV_THREADS = "PORTRAIT_CALIBRATION_THREADS"
MAX_THREADS = 4
_MEMO: dict[tuple[str, str], bytes] = {}  # (graph digest, samples digest) -> calibrated flatbuffer (most recent few)
_MEMO_SIZE = 4
STATS = {"passes": 0, "reused": 0}  # counters for tests and progress


def threads() -> int:
    """Interpreter threads for a calibration pass."""
    raw = os.environ.get(ENV_THREADS, "").strip()
    if raw:
        try:
            n = int(raw)
        except ValueError:
            raise ExportError(
                f"{ENV_THREADS}={raw!r} is not a whole number",
                fix=f"set {ENV_THREADS} to the number of interpreter threads, e.g. 1",
            ) from None
        if n < 1:
            raise ExportError(f"{ENV_THREADS}={raw!r} must be at least 1")
        return n
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_THREADS))


def graph_digest(model_content: bytes) -> str:
    """SHA-256 of the float graph: tensors (name, type, shape, data) and operators, without the
    flatbuffer's metadata (which records the converter options, e.g. int8 vs 16x8)."""
    m = flatbuffer.read(model_content)
    h = hashlib.sha256()
    for sg in m.subgraphs:
        for t in sg.tensors:
            data = m.buffers[t.buffer].data if t.buffer < len(m.buffers) else None
            h.update(repr((t.name, t.type, None if t.shape is None else list(t.shape))).encode())
            h.update(b"" if data is None else np.asarray(data).tobytes())
        for op in sg.operators:
            code = m.operatorCodes[op.opcodeIndex]
            h.update(
                repr(
                    (
                        max(code.builtinCode, code.deprecatedBuiltinCode),
                        code.customCode,
                        list(op.inputs),
                        list(op.outputs),
                        op.builtinOptionsType,
                    )
                ).encode()
            )
    return h.hexdigest()


def _has_range(q) -> bool:
    return q is not None and q.min is not None and len(q.min) > 0


def _ranges(blob: bytes) -> list:
    """Per tensor of subgraph 0: its quantization object when it carries calibration min/max, else None."""
    return [t.quantization if _has_range(t.quantization) else None for t in flatbuffer.read(blob).subgraphs[0].tensors]


def with_ranges(model_content: bytes, calibrated_blob: bytes, *, by_structure: bool = False) -> bytes:
    """`model_content` with the calibration min/max of `calibrated_blob` on its tensors: the same
    graph tensor by tensor, or (by_structure) a graph that `covers()` says computes them the same way."""
    if calibrated_blob == model_content:
        return calibrated_blob
    m = flatbuffer.read(model_content)
    tensors = m.subgraphs[0].tensors
    ranged = flatbuffer.read(calibrated_blob).subgraphs[0].tensors
    if by_structure:
        earlier = dict(zip(structural_ids(flatbuffer.read(calibrated_blob)), ranged))
        pairs = [(t, earlier[i]) for i, t in zip(structural_ids(m), tensors) if i in earlier]
    else:
        if len(ranged) != len(tensors) or any(t.name != r.name for t, r in zip(tensors, ranged)):
            raise ExportError(
                "reused calibration ranges do not fit this graph", fix="set PORTRAIT_EXPORT_CACHE=0 and report this"
            )
        pairs = list(zip(tensors, ranged))
    for t, r in pairs:
        if _has_range(r.quantization):
            t.quantization = r.quantization
    return flatbuffer.write(m)


def representative_gen(samples: np.ndarray, progress: Callable[[str], None] | None = None):
    """The converter's `representative_dataset`: each sample as a float32 batch of one, with a
    progress line about every tenth sample."""

    def gen():
        n = len(samples)
        for i, s in enumerate(samples):
            if progress and (i % max(1, n // 10) == 0 or i == n - 1):
                progress(f"calibration {i + 1}/{n}")
            yield {"image": s[None].astype(np.float32)}

    return gen


def _calibrate_here(model_content: bytes, samples: np.ndarray, say=None) -> bytes:
    """TF's own calibration pass (the fallback, and what tests compare against)."""
    tf_calibrator = _originals()  # the converter's own method, also while shared_calibration is active
    return _ORIGINAL["calibrate"](tf_calibrator.Calibrator(model_content), representative_gen(samples, say))


def recorded_tensors(model) -> list[int]:
    """Tensors of subgraph 0 that TF's calibrator records: the float graph inputs and every op's
    float, non-constant output."""
    sg = model.subgraphs[0]
    produced = {o for op in sg.operators for o in op.outputs if o >= 0}
    return [
        i
        for i, t in enumerate(sg.tensors)
        if t.type == FLOAT32 and not is_constant(model, t) and (i in produced or i in sg.inputs)
    ]


def probe_ready(model) -> bool:
    """Whether `true_ranges` can run this graph (one subgraph with one float input)."""
    sg = model.subgraphs[0]
    return len(model.subgraphs) == 1 and len(sg.inputs) == 1 and sg.tensors[sg.inputs[0]].type == FLOAT32


def true_ranges(model_content: bytes, samples: np.ndarray, say=None) -> bytes:
    """`model_content` with each recorded tensor's min/max over `samples`, read as graph outputs of a
    probe copy run on LiteRT's default CPU kernels (see the module docstring)."""
    schema = flatbuffer.schema()
    m = flatbuffer.read(model_content)
    sg = m.subgraphs[0]
    wanted = recorded_tensors(m)
    probe = flatbuffer.read(model_content)
    probe.subgraphs[0].outputs = list(dict.fromkeys([int(o) for o in sg.outputs] + wanted))
    interp = Interpreter(model_content=flatbuffer.write(probe), num_threads=threads())
    interp.allocate_tensors()
    index = interp.get_input_details()[0]["index"]
    lo = np.full(len(wanted), np.inf)
    hi = np.full(len(wanted), -np.inf)
    n = len(samples)
    for k, s in enumerate(samples):
        if say and (k % max(1, n // 5) == 0 or k == n - 1):
            say(f"calibration {k + 1}/{n}")
        interp.set_tensor(index, np.asarray(s, dtype=np.float32)[None])
        interp.invoke()
        for j, i in enumerate(wanted):
            view = interp.tensor(i)  # a view of the output buffer: no copy, and none kept past invoke()
            lo[j] = min(lo[j], float(view().min()))
            hi[j] = max(hi[j], float(view().max()))
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        bad = [
            sg.tensors[i].name.decode(errors="replace")
            for j, i in enumerate(wanted)
            if not (np.isfinite(lo[j]) and np.isfinite(hi[j]))
        ]
        raise ExportError(
            f"calibration: the float model gives non-finite values in {len(bad)} tensors (first: {bad[0]})",
            fix="check the float model and the calibration images",
        )
    for j, i in enumerate(wanted):
        q = schema.QuantizationParametersT()
        q.min, q.max = [float(np.float32(lo[j]))], [float(np.float32(hi[j]))]
        sg.tensors[i].quantization = q
    return flatbuffer.write(m)


def _options(op) -> str:
    opts = op.builtinOptions
    if opts is None:
        return "None"
    return repr(
        sorted((k, np.asarray(v).tolist() if isinstance(v, (list, np.ndarray)) else v) for k, v in vars(opts).items())
    )


def structural_ids(model) -> list[str]:
    """Per tensor of subgraph 0, a digest of how it is computed: type, shape and, for a constant its
    data, for a graph input its name, for an op's output the op (code, options, output index) and
    its inputs' digests. Equal digests mean equal values on equal inputs, whatever the tensors'
    names (the converter renames the last op's output when ops are added after it)."""
    sg = model.subgraphs[0]
    producer = {}
    for op in sg.operators:
        for k, o in enumerate(op.outputs):
            producer[o] = (op, k)
    ids: list[str | None] = [None] * len(sg.tensors)

    def ident(i: int) -> str:
        known = ids[i]
        if known is not None:
            return known
        t = sg.tensors[i]
        head = repr((t.type, None if t.shape is None else [int(d) for d in t.shape]))
        if i in producer:
            op, k = producer[i]
            code = model.operatorCodes[op.opcodeIndex]
            body = repr(
                (
                    max(code.builtinCode, code.deprecatedBuiltinCode),
                    code.customCode,
                    _options(op),
                    k,
                    [ident(j) if j >= 0 else None for j in op.inputs],
                )
            )
        else:
            data = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
            body = repr(t.name) if data is None else hashlib.sha256(np.asarray(data).tobytes()).hexdigest()
        digest = hashlib.sha256((head + body).encode()).hexdigest()
        ids[i] = digest
        return digest

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * len(sg.tensors) + 100))
    try:
        return [ident(i) for i in range(len(sg.tensors))]
    finally:
        sys.setrecursionlimit(limit)


def covers(earlier: bytes, model_content: bytes) -> bool:
    """Whether every float tensor of `model_content` is computed in `earlier` the same way (equal
    `structural_ids`): the graph is `earlier` with non-float ops added (or some outputs dropped)."""
    new = flatbuffer.read(model_content)
    old_ids = set(structural_ids(flatbuffer.read(earlier)))
    floats = [i for i, t in zip(structural_ids(new), new.subgraphs[0].tensors) if t.type == FLOAT32]
    return bool(floats) and all(i in old_ids for i in floats)


def calibrated(model_content: bytes, samples: np.ndarray, progress: Callable[[str], None] | None = None) -> bytes:
    """`model_content` (a float flatbuffer) with each tensor's min/max over `samples` (uint8 pixels,
    NHWC), in the form TF's `Calibrator.calibrate` returns it: reused, or from one `true_ranges` pass."""
    say = progress or (lambda _m: None)
    samples = np.asarray(samples)
    sdigest = array_digest(samples)
    key = (graph_digest(model_content), sdigest)
    if key in _MEMO:
        STATS["reused"] += 1
        say(f"calibration: reused the ranges of this run's earlier pass (same float graph, {len(samples)} samples)")
        return with_ranges(model_content, _MEMO[key])
    for (_graph, sd), blob in reversed(list(_MEMO.items())):
        if sd == sdigest and covers(blob, model_content):
            STATS["reused"] += 1
            say(
                f"calibration: reused the ranges of this run's earlier pass (this graph is that one with "
                f"non-float ops added, {len(samples)} samples)"
            )
            return with_ranges(model_content, blob, by_structure=True)
    t0 = time.monotonic()
    if probe_ready(flatbuffer.read(model_content)):
        say(f"calibration: {len(samples)} samples, every float tensor read as a graph output ({threads()} threads)")
        blob = true_ranges(model_content, samples, say)
    else:
        say(
            f"calibration: {len(samples)} samples with TF's calibrator (this graph has more than one "
            "subgraph or input; ranges of tensors that feed in-place ops may be too wide)"
        )
        blob = _calibrate_here(model_content, samples, say)
    blob, cut = ranges.clamp_saturated(blob)
    if cut:
        say(
            f"calibration: {len(cut)} tensor(s) feeding only a sigmoid/tanh cut to the range it can "
            f"tell apart (e.g. {cut[0][0]}: {cut[0][1][0]:.4g}..{cut[0][1][1]:.4g} -> "
            f"{cut[0][2][0]:.4g}..{cut[0][2][1]:.4g})"
        )
    STATS["passes"] += 1
    _MEMO[key] = blob
    while len(_MEMO) > _MEMO_SIZE:
        _MEMO.pop(next(iter(_MEMO)))
    say(f"calibration: {time.monotonic() - t0:.1f} s")
    return blob


_ORIGINAL: dict = {}


def _originals():
    # TensorFlow: ~3 s to import, so it loads only when a conversion runs (`portrait --help` stays fast)
    from tensorflow.lite.python.optimize import calibrator as tf_calibrator

    if not _ORIGINAL:
        _ORIGINAL["calibrate"] = tf_calibrator.Calibrator.calibrate
        _ORIGINAL["calibrate_and_quantize"] = tf_calibrator.Calibrator.calibrate_and_quantize
    return tf_calibrator


@contextlib.contextmanager
def shared_calibration(samples: np.ndarray | None, progress: Callable[[str], None] | None = None):
    """Within this block, TF converter calibrations use `calibrated()` over `samples` (which must be
    what the converter's representative_dataset yields) instead of feeding the set themselves.
    samples None: nothing in the block calibrates (a float conversion)."""
    tf_calibrator = _originals()

    def calibrate(self, dataset_gen):
        assert samples is not None, "a calibration inside shared_calibration(None)"
        return calibrated(self._model_content, samples, progress)

    def calibrate_and_quantize(
        self,
        dataset_gen,
        input_type,
        output_type,
        allow_float,
        activations_type=None,
        bias_type=None,
        resize_input=True,
        disable_per_channel=False,
        disable_per_channel_quantization_for_dense_layers=False,
    ):
        # TensorFlow: ~3 s to import, so it loads only when a conversion runs (`portrait --help` stays fast)
        from tensorflow.python.framework import dtypes

        activations_type = dtypes.int8 if activations_type is None else activations_type
        bias_type = dtypes.int32 if bias_type is None else bias_type
        assert samples is not None, "a calibration inside shared_calibration(None)"
        # the old quantizer reads the ranges from the flatbuffer when nothing was fed to this wrapper
        ranged = tf_calibrator.Calibrator(calibrated(self._model_content, samples, progress))
        return ranged._calibrator.QuantizeModel(
            np.dtype(input_type.as_numpy_dtype()).num,
            np.dtype(output_type.as_numpy_dtype()).num,
            allow_float,
            np.dtype(activations_type.as_numpy_dtype()).num,
            np.dtype(bias_type.as_numpy_dtype()).num,
            disable_per_channel,
            disable_per_channel_quantization_for_dense_layers,
        )

    tf_calibrator.Calibrator.calibrate = calibrate
    tf_calibrator.Calibrator.calibrate_and_quantize = calibrate_and_quantize
    try:
        yield
    finally:
        tf_calibrator.Calibrator.calibrate = _ORIGINAL["calibrate"]
        tf_calibrator.Calibrator.calibrate_and_quantize = _ORIGINAL["calibrate_and_quantize"]
