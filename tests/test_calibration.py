"""The shared calibration pass (toolchain/quantize/calibration.py) on a tiny generated model: every
recorded tensor gets its true range (TF's own calibrator records the sum's range on a tensor that
feeds an in-place ADD or MUL), the int8 and 16x8 files are quantized on those ranges, a later
conversion of the same graph and samples reuses the pass, and the labels graph reuses its logits pass."""

import numpy as np
import pytest
from builders import tiny_segmenter_project

from toolchain import quantize
from toolchain.errors import ExportError
from toolchain.quantize import calibration, conversions, flatbuffer


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_calibration")
    reg, _ = tiny_segmenter_project(d)
    return reg["tiny"], d / "models" / "tiny.tflite"


@pytest.fixture(scope="module")
def float_model(project, tmp_path_factory):
    from toolchain.sources import import_model

    return import_model(*project, tmp_path_factory.mktemp("tiny_calibration_float"))


@pytest.fixture(scope="module")
def labels_model(project, tmp_path_factory):
    from toolchain.sources import import_model

    return import_model(*project, tmp_path_factory.mktemp("tiny_calibration_labels"), with_labels=True)


def _rep(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 33, 33, 3)).astype(np.uint8)


def _minmax(blob):
    return [
        (None if q is None else (np.asarray(q.min).tolist(), np.asarray(q.max).tolist()))
        for q in calibration._ranges(blob)
    ]


def _float_graph(model, rep, monkeypatch):
    """The float flatbuffer the converter hands its calibrator."""
    got = []
    calibration._MEMO.clear()
    with monkeypatch.context() as m:
        m.setattr(calibration, "true_ranges", lambda mc, *a, **k: got.append(mc) or mc)
        quantize.calibrate_int8(model, rep)
    return got[0]


def _preserved_ranges(blob, rep):
    """Each tensor's min/max on the builtin kernels with every tensor preserved (no shared buffers)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(
        model_content=blob,
        num_threads=1,
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    it.allocate_tensors()
    idx = it.get_input_details()[0]["index"]
    lo, hi = {}, {}
    for s in rep:
        it.set_tensor(idx, s[None].astype(np.float32))
        it.invoke()
        for i in calibration.recorded_tensors(flatbuffer.read(blob)):
            v = it.get_tensor(i)
            lo[i], hi[i] = min(lo.get(i, np.inf), float(v.min())), max(hi.get(i, -np.inf), float(v.max()))
    return lo, hi


def test_every_recorded_tensor_gets_its_true_range(float_model, monkeypatch):
    rep = _rep(12)
    graph = _float_graph(float_model, rep, monkeypatch)
    ours, tfs = calibration.true_ranges(graph, rep), calibration._calibrate_here(graph, rep)
    mine, theirs = _minmax(ours), _minmax(tfs)
    assert [r is not None for r in mine] == [r is not None for r in theirs]  # the tensors TF records
    lo, hi = _preserved_ranges(graph, rep)
    assert sorted(lo) == [i for i, r in enumerate(mine) if r is not None] and len(lo) > 8
    for i in lo:
        assert mine[i][0][0] == pytest.approx(lo[i], rel=1e-5, abs=1e-6)
        assert mine[i][1][0] == pytest.approx(hi[i], rel=1e-5, abs=1e-6)
    # TF's calibrator records a tensor that feeds an in-place ADD/MUL with that op's output range
    m = flatbuffer.read(graph)
    sg = m.subgraphs[0]
    wrong = [i for i in lo if abs(theirs[i][1][0] - hi[i]) + abs(theirs[i][0][0] - lo[i]) > 1e-3 * (hi[i] - lo[i])]
    assert wrong, "TF's calibrator recorded every range right: the module docstring is out of date"
    fed = {
        j for op in sg.operators for j in op.inputs if m.operatorCodes[op.opcodeIndex].builtinCode in (0, 18)
    }  # ADD, MUL
    assert set(wrong) <= fed
    for i in wrong:  # always too wide
        assert theirs[i][0][0] <= lo[i] + 1e-6 and theirs[i][1][0] >= hi[i] - 1e-6


def _scale(path, name):
    from ai_edge_litert.interpreter import Interpreter

    for d in Interpreter(model_path=str(path)).get_tensor_details():
        if d["name"] == name:
            return float(d["quantization_parameters"]["scales"][0])
    raise AssertionError(f"no tensor {name} in {path}")


def test_int8_and_16x8_files_are_quantized_on_the_true_ranges(float_model, tmp_path, monkeypatch):
    rep = _rep(20, seed=1)
    graph = _float_graph(float_model, rep, monkeypatch)

    def by_name(blob):
        return {
            t.name.decode(): (float(t.quantization.min[0]), float(t.quantization.max[0]))
            for t in flatbuffer.read(blob).subgraphs[0].tensors
            if calibration._has_range(t.quantization)
        }

    true, tf = by_name(calibration.true_ranges(graph, rep)), by_name(calibration._calibrate_here(graph, rep))
    # the tensor whose range TF's calibrator gets most wrong
    name = max(true, key=lambda n: (tf[n][1] - tf[n][0]) / (true[n][1] - true[n][0]))
    lo, hi = true[name]
    assert (tf[name][1] - tf[name][0]) > 1.5 * (hi - lo)
    calibration._MEMO.clear()
    quantize.convert(float_model, "int8", tmp_path / "int8.tflite", representative=rep)
    before = dict(calibration.STATS)
    conversions.convert_16x8(float_model, tmp_path / "16x8.tflite", rep)
    assert calibration.STATS["reused"] == before["reused"] + 1  # the int8 pass, not a new one
    assert calibration.STATS["passes"] == before["passes"]
    assert _scale(tmp_path / "int8.tflite", name) == pytest.approx((max(hi, 0) - min(lo, 0)) / 255, rel=1e-4)
    assert _scale(tmp_path / "16x8.tflite", name) == pytest.approx(max(abs(lo), abs(hi)) / 32767, rel=1e-4)


def test_the_labels_graph_reuses_the_logits_pass_and_gives_the_same_file(
    float_model, labels_model, tmp_path, monkeypatch
):
    """ArgMax after the logits renames the last float tensor; its ranges still come from the earlier
    pass (matched by how each tensor is computed), and the labels file equals one from a pass of its own."""
    rep = _rep(20, seed=5)
    calibration._MEMO.clear()
    quantize.convert(float_model, "int8", tmp_path / "logits.tflite", representative=rep)
    before, said = dict(calibration.STATS), []
    quantize.convert(labels_model, "int8", tmp_path / "shared_labels.tflite", representative=rep, progress=said.append)
    assert calibration.STATS["passes"] == before["passes"] and calibration.STATS["reused"] == before["reused"] + 1
    assert any("non-float ops added" in m for m in said)
    calibration._MEMO.clear()  # a pass of its own
    quantize.convert(labels_model, "int8", tmp_path / "own_labels.tflite", representative=rep)
    assert calibration.STATS["passes"] == before["passes"] + 1
    assert (tmp_path / "shared_labels.tflite").read_bytes() == (tmp_path / "own_labels.tflite").read_bytes()


def test_a_graph_computed_differently_is_not_covered(float_model, labels_model, monkeypatch):
    rep = _rep(4, seed=6)
    got = []
    monkeypatch.setattr(calibration, "true_ranges", lambda mc, *a, **k: got.append(mc) or mc)
    for model in (float_model, labels_model):
        calibration._MEMO.clear()
        quantize.calibrate_int8(model, rep)
    logits, labels = got
    assert calibration.covers(logits, labels) and calibration.covers(labels, logits)  # the same float tensors
    m = flatbuffer.read(logits)
    sg = m.subgraphs[0]
    const = next(
        t
        for t in sg.tensors
        if t.buffer < len(m.buffers)
        and m.buffers[t.buffer].data is not None
        and t.type == flatbuffer.FLOAT32
        and len(m.buffers[t.buffer].data) > 8
    )
    data = np.array(m.buffers[const.buffer].data, dtype=np.uint8)
    data[0] ^= 1  # one weight changed
    m.buffers[const.buffer].data = data
    assert not calibration.covers(flatbuffer.write(m), labels)


def test_other_samples_make_a_new_pass(float_model, monkeypatch):
    calibration._MEMO.clear()
    quantize.calibrate_int8(float_model, _rep(6, seed=2))
    before = dict(calibration.STATS)
    quantize.calibrate_int8(float_model, _rep(6, seed=3))
    assert calibration.STATS["passes"] == before["passes"] + 1 and calibration.STATS["reused"] == before["reused"]


def test_a_graph_the_probe_cannot_run_falls_back_to_tfs_calibrator(float_model, monkeypatch):
    rep = _rep(4, seed=7)
    graph = _float_graph(float_model, rep, monkeypatch)
    calibration._MEMO.clear()
    monkeypatch.setattr(calibration, "probe_ready", lambda model: False)
    said = []
    got = calibration.calibrated(graph, rep, said.append)
    assert any("TF's calibrator" in m for m in said)
    assert _minmax(got) == _minmax(calibration._calibrate_here(graph, rep))


def test_thread_count_setting(monkeypatch):
    monkeypatch.setenv(calibration.ENV_THREADS, "3")
    assert calibration.threads() == 3
    monkeypatch.delenv(calibration.ENV_THREADS)
    assert 1 <= calibration.threads() <= calibration.MAX_THREADS
    monkeypatch.setenv(calibration.ENV_THREADS, "two")
    with pytest.raises(ExportError, match="whole number"):
        calibration.threads()
    monkeypatch.setenv(calibration.ENV_THREADS, "0")
    with pytest.raises(ExportError, match="at least 1"):
        calibration.threads()
