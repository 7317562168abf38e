"""One calibration pass per float graph and calibration set, split across processes, shared by rungs.

TFLite's post-training quantizers (the MLIR int8 quantizer, and the old quantizer that 16x8 needs)
both start by running the float model over the calibration set and recording each tensor's min and
max. The TF converter does that inside every `convert()`, on one core, once per conversion:
PyDNet++ at 448x640 spent ~130 s on it for its w8a8 rung and again for its w8a16 rung, the selfie
once for w8a8 and once more for the mixed-float search.

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
- otherwise splits the samples into contiguous chunks and calibrates each in its own process (TF's
  calibrator is single-threaded), then merges: the min of the mins and the max of the maxes. Min and
  max do not depend on order or grouping, so the merged ranges equal one pass's exactly
  (tests/test_calibration.py checks this and the converter's own output bit for bit).

PORTRAIT_CALIBRATION_WORKERS sets the number of processes (1: one pass in this process). Sets under
MIN_PARALLEL_SAMPLES samples are calibrated here, where starting a process would cost more.

Not for: choosing ranges (ranges.py searches them after this), quantizing (__init__.py, conversions.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ExportError

ENV_WORKERS = "PORTRAIT_CALIBRATION_WORKERS"
MIN_PARALLEL_SAMPLES = 16
MAX_WORKERS = 4
_MEMO: dict[tuple[str, str], bytes] = {}   # (graph digest, samples digest) -> calibrated flatbuffer (most recent few)
_MEMO_SIZE = 4
STATS = {"passes": 0, "reused": 0}   # counters for tests and progress
FLOAT32 = 0   # TensorType.FLOAT32 in the TFLite schema


def workers(n_samples: int) -> int:
    """How many processes calibrate a set of n_samples."""
    raw = os.environ.get(ENV_WORKERS, "").strip()
    if raw:
        try:
            n = int(raw)
        except ValueError:
            raise ExportError(f"{ENV_WORKERS}={raw!r} is not a whole number",
                              fix=f"set {ENV_WORKERS} to 1 (one pass here) or the number of processes") from None
        if n < 1:
            raise ExportError(f"{ENV_WORKERS}={raw!r} must be at least 1")
    else:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
        n = min(cores, MAX_WORKERS)
    if n_samples < MIN_PARALLEL_SAMPLES:
        return 1
    return max(1, min(n, n_samples))


def _schema():
    from tensorflow.lite.python import schema_py_generated as schema
    return schema


def _model(blob: bytes):
    schema = _schema()
    return schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytes(blob), 0))


def _to_bytes(model) -> bytes:
    from tensorflow.lite.tools import flatbuffer_utils
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def graph_digest(model_content: bytes) -> str:
    """SHA-256 of the float graph: tensors (name, type, shape, data) and operators, without the
    flatbuffer's metadata (which records the converter options, e.g. int8 vs 16x8)."""
    m = _model(model_content)
    h = hashlib.sha256()
    for sg in m.subgraphs:
        for t in sg.tensors:
            data = m.buffers[t.buffer].data if t.buffer < len(m.buffers) else None
            h.update(repr((t.name, t.type, None if t.shape is None else list(t.shape))).encode())
            h.update(b"" if data is None else np.asarray(data).tobytes())
        for op in sg.operators:
            code = m.operatorCodes[op.opcodeIndex]
            h.update(repr((max(code.builtinCode, code.deprecatedBuiltinCode), code.customCode,
                           list(op.inputs), list(op.outputs), op.builtinOptionsType)).encode())
    return h.hexdigest()


def _has_range(q) -> bool:
    return q is not None and q.min is not None and len(q.min) > 0


def _ranges(blob: bytes) -> list:
    """Per tensor of subgraph 0: its quantization object when it carries calibration min/max, else None."""
    return [t.quantization if _has_range(t.quantization) else None for t in _model(blob).subgraphs[0].tensors]


def merge(blobs: list[bytes]) -> bytes:
    """Calibrated flatbuffers of one graph over disjoint chunks -> the whole set's: min of mins, max of maxes."""
    base = _model(blobs[0])
    tensors = base.subgraphs[0].tensors
    for other in blobs[1:]:
        m = _model(other)
        ot = m.subgraphs[0].tensors
        if len(ot) != len(tensors) or any(a.name != b.name for a, b in zip(tensors, ot)):
            raise ExportError("calibration chunks came back from different graphs",
                              fix=f"set {ENV_WORKERS}=1 and report this")
        for a, b in zip(tensors, ot):
            qa, qb = a.quantization, b.quantization
            if not _has_range(qb):
                continue
            if not _has_range(qa):
                a.quantization = qb
                continue
            qa.min = np.minimum(np.asarray(qa.min), np.asarray(qb.min))
            qa.max = np.maximum(np.asarray(qa.max), np.asarray(qb.max))
    return _to_bytes(base)


def with_ranges(model_content: bytes, calibrated_blob: bytes, *, by_structure: bool = False) -> bytes:
    """`model_content` with the calibration min/max of `calibrated_blob` on its tensors: the same
    graph tensor by tensor, or (by_structure) a graph that `covers()` says computes them the same way."""
    if calibrated_blob == model_content:
        return calibrated_blob
    m = _model(model_content)
    tensors = m.subgraphs[0].tensors
    ranged = _model(calibrated_blob).subgraphs[0].tensors
    if by_structure:
        earlier = dict(zip(structural_ids(_model(calibrated_blob)), ranged))
        pairs = [(t, earlier[i]) for i, t in zip(structural_ids(m), tensors) if i in earlier]
    else:
        if len(ranged) != len(tensors) or any(t.name != r.name for t, r in zip(tensors, ranged)):
            raise ExportError("reused calibration ranges do not fit this graph",
                              fix=f"set {ENV_WORKERS}=1 and report this")
        pairs = list(zip(tensors, ranged))
    for t, r in pairs:
        if _has_range(r.quantization):
            t.quantization = r.quantization
    return _to_bytes(m)


def _gen(samples: np.ndarray, say=None, of: int = 0):
    def gen():
        n = len(samples)
        for i, s in enumerate(samples):
            if say and (i % max(1, n // 5) == 0 or i == n - 1):
                say(f"calibration {i + 1}/{n}" + (f" (this process's share of {of})" if of > n else ""))
            yield {"image": s[None].astype(np.float32)}
    return gen


def _calibrate_here(model_content: bytes, samples: np.ndarray, say=None, of: int = 0) -> bytes:
    tf_calibrator = _originals()   # the converter's own method, also while shared_calibration is active
    return _ORIGINAL["calibrate"](tf_calibrator.Calibrator(model_content), _gen(samples, say, of))


def _calibrate_chunk(model_content: bytes, samples_path: str) -> bytes:
    """Child process: one chunk of the calibration set."""
    return _calibrate_here(model_content, np.load(samples_path))


def _samples_digest(samples: np.ndarray) -> str:
    h = hashlib.sha256(repr((samples.shape, str(samples.dtype))).encode())
    h.update(np.ascontiguousarray(samples).tobytes())
    return h.hexdigest()


def _options(op) -> str:
    opts = op.builtinOptions
    if opts is None:
        return "None"
    return repr(sorted((k, np.asarray(v).tolist() if isinstance(v, (list, np.ndarray)) else v)
                       for k, v in vars(opts).items()))


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
        if ids[i] is not None:
            return ids[i]
        t = sg.tensors[i]
        head = repr((t.type, None if t.shape is None else [int(d) for d in t.shape]))
        if i in producer:
            op, k = producer[i]
            code = model.operatorCodes[op.opcodeIndex]
            body = repr((max(code.builtinCode, code.deprecatedBuiltinCode), code.customCode, _options(op), k,
                         [ident(j) if j >= 0 else None for j in op.inputs]))
        else:
            data = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
            body = repr(t.name) if data is None else hashlib.sha256(np.asarray(data).tobytes()).hexdigest()
        ids[i] = hashlib.sha256((head + body).encode()).hexdigest()
        return ids[i]

    import sys
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * len(sg.tensors) + 100))
    try:
        return [ident(i) for i in range(len(sg.tensors))]
    finally:
        sys.setrecursionlimit(limit)


def covers(earlier: bytes, model_content: bytes) -> bool:
    """Whether every float tensor of `model_content` is computed in `earlier` the same way (equal
    `structural_ids`): the graph is `earlier` with non-float ops added (or some outputs dropped)."""
    new = _model(model_content)
    old_ids = set(structural_ids(_model(earlier)))
    floats = [i for i, t in zip(structural_ids(new), new.subgraphs[0].tensors) if t.type == FLOAT32]
    return bool(floats) and all(i in old_ids for i in floats)


def calibrated(model_content: bytes, samples: np.ndarray, progress: Callable[[str], None] | None = None) -> bytes:
    """`model_content` (a float flatbuffer) with each tensor's min/max over `samples` (uint8 pixels,
    NHWC), as TF's `Calibrator.calibrate` returns it: reused, or from one pass split across processes."""
    say = progress or (lambda _m: None)
    samples = np.asarray(samples)
    sdigest = _samples_digest(samples)
    key = (graph_digest(model_content), sdigest)
    if key in _MEMO:
        STATS["reused"] += 1
        say(f"calibration: reused the ranges of this run's earlier pass (same float graph, {len(samples)} samples)")
        return with_ranges(model_content, _MEMO[key])
    for (_graph, sd), blob in reversed(list(_MEMO.items())):
        if sd == sdigest and covers(blob, model_content):
            STATS["reused"] += 1
            say(f"calibration: reused the ranges of this run's earlier pass (this graph is that one with "
                f"non-float ops added, {len(samples)} samples)")
            return with_ranges(model_content, blob, by_structure=True)
    n = workers(len(samples))
    t0 = time.monotonic()
    chunks = [c for c in np.array_split(samples, n) if len(c)]
    say(f"calibration: {len(samples)} samples" + (f" in {len(chunks)} processes" if len(chunks) > 1 else ""))
    blobs = _parallel(model_content, chunks, say) if len(chunks) > 1 else [_calibrate_here(model_content, chunks[0], say)]
    blob = blobs[0] if len(blobs) == 1 else merge(blobs)
    STATS["passes"] += 1
    _MEMO[key] = blob
    while len(_MEMO) > _MEMO_SIZE:
        _MEMO.pop(next(iter(_MEMO)))
    say(f"calibration: {time.monotonic() - t0:.1f} s")
    return blob


def _parallel(model_content: bytes, chunks: list[np.ndarray], say) -> list[bytes]:
    import concurrent.futures as cf
    import multiprocessing as mp
    blobs: list = [None] * len(chunks)
    with tempfile.TemporaryDirectory(prefix="portrait-calib-") as tmp:
        paths = []
        for i, c in enumerate(chunks[1:], start=1):
            p = Path(tmp) / f"chunk{i}.npy"
            np.save(p, c)
            paths.append((i, str(p)))
        try:
            pool = cf.ProcessPoolExecutor(max_workers=len(paths), mp_context=mp.get_context("spawn"))
        except (OSError, ValueError) as exc:
            say(f"calibration: no worker processes ({exc}); one pass here instead")
            pool = None
        futures = {}
        if pool is not None:
            futures = {pool.submit(_calibrate_chunk, model_content, p): i for i, p in paths}
        try:
            blobs[0] = _calibrate_here(model_content, chunks[0], say, sum(len(c) for c in chunks))
            for fut, i in futures.items():
                try:
                    blobs[i] = fut.result()
                except Exception as exc:   # a dead worker (memory, signal): calibrate its chunk here
                    say(f"calibration: worker for chunk {i + 1} failed ({type(exc).__name__}: {exc}); "
                        "calibrating that chunk here")
                    blobs[i] = _calibrate_here(model_content, chunks[i])
            for i, _p in paths:
                if blobs[i] is None:
                    blobs[i] = _calibrate_here(model_content, chunks[i])
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    return blobs


_ORIGINAL: dict = {}


def _originals():
    from tensorflow.lite.python.optimize import calibrator as tf_calibrator
    if not _ORIGINAL:
        _ORIGINAL["calibrate"] = tf_calibrator.Calibrator.calibrate
        _ORIGINAL["calibrate_and_quantize"] = tf_calibrator.Calibrator.calibrate_and_quantize
    return tf_calibrator


@contextlib.contextmanager
def shared_calibration(samples: np.ndarray, progress: Callable[[str], None] | None = None):
    """Within this block, TF converter calibrations use `calibrated()` over `samples` (which must be
    what the converter's representative_dataset yields) instead of feeding the set themselves."""
    tf_calibrator = _originals()

    def calibrate(self, dataset_gen):
        return calibrated(self._model_content, samples, progress)

    def calibrate_and_quantize(self, dataset_gen, input_type, output_type, allow_float,
                               activations_type=None, bias_type=None, resize_input=True,
                               disable_per_channel=False, disable_per_channel_quantization_for_dense_layers=False):
        from tensorflow.python.framework import dtypes
        activations_type = dtypes.int8 if activations_type is None else activations_type
        bias_type = dtypes.int32 if bias_type is None else bias_type
        # the old quantizer reads the ranges from the flatbuffer when nothing was fed to this wrapper
        ranged = tf_calibrator.Calibrator(calibrated(self._model_content, samples, progress))
        return ranged._calibrator.QuantizeModel(
            np.dtype(input_type.as_numpy_dtype()).num, np.dtype(output_type.as_numpy_dtype()).num, allow_float,
            np.dtype(activations_type.as_numpy_dtype()).num, np.dtype(bias_type.as_numpy_dtype()).num,
            disable_per_channel, disable_per_channel_quantization_for_dense_layers)

    tf_calibrator.Calibrator.calibrate = calibrate
    tf_calibrator.Calibrator.calibrate_and_quantize = calibrate_and_quantize
    try:
        yield
    finally:
        tf_calibrator.Calibrator.calibrate = _ORIGINAL["calibrate"]
        tf_calibrator.Calibrator.calibrate_and_quantize = _ORIGINAL["calibrate_and_quantize"]
