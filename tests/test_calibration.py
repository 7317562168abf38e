"""Shared, parallel calibration (toolchain/quantize/calibration.py) on a tiny generated model: the
merged ranges equal one pass's exactly, the converter's own int8 and 16x8 files come out bit for bit,
a later conversion of the same graph and samples reuses the pass, and a dead worker costs time only."""

import contextlib

import numpy as np
import pytest

from toolchain import quantize
from toolchain.errors import ExportError
from toolchain.quantize import calibration, conversions

from builders import tiny_segmenter_project


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
    return [(None if q is None else (np.asarray(q.min).tolist(), np.asarray(q.max).tolist()))
            for q in calibration._ranges(blob)]


def test_ranges_merged_from_two_processes_equal_one_pass(float_model, monkeypatch):
    rep = _rep(20)
    calibration._MEMO.clear()
    monkeypatch.setenv(calibration.ENV_WORKERS, "1")
    one = quantize.calibrate_int8(float_model, rep)
    calibration._MEMO.clear()
    monkeypatch.setenv(calibration.ENV_WORKERS, "2")
    said = []
    two = quantize.calibrate_int8(float_model, rep, progress=said.append)
    assert any("in 2 processes" in m for m in said)
    assert sum(r is not None for r in _minmax(one)) > 5
    assert _minmax(two) == _minmax(one)   # exactly: min of mins, max of maxes


def test_int8_and_16x8_files_are_the_converters_own_bit_for_bit(float_model, tmp_path, monkeypatch):
    rep = _rep(20, seed=1)
    calibration._MEMO.clear()
    monkeypatch.setenv(calibration.ENV_WORKERS, "2")
    quantize.convert(float_model, "int8", tmp_path / "shared_int8.tflite", representative=rep)
    before = dict(calibration.STATS)
    conversions.convert_16x8(float_model, tmp_path / "shared_16x8.tflite", rep)
    assert calibration.STATS["reused"] == before["reused"] + 1     # the int8 pass, not a new one
    assert calibration.STATS["passes"] == before["passes"]
    with monkeypatch.context() as m:
        m.setattr(calibration, "shared_calibration", lambda *a, **k: contextlib.nullcontext())
        quantize.convert(float_model, "int8", tmp_path / "own_int8.tflite", representative=rep)
        conversions.convert_16x8(float_model, tmp_path / "own_16x8.tflite", rep)
    for name in ("int8", "16x8"):
        assert (tmp_path / f"shared_{name}.tflite").read_bytes() == (tmp_path / f"own_{name}.tflite").read_bytes()


def test_the_labels_graph_reuses_the_logits_pass_and_gives_the_converters_own_file(float_model, labels_model,
                                                                                  tmp_path, monkeypatch):
    """ArgMax after the logits renames the last float tensor; its ranges still come from the earlier
    pass (matched by how each tensor is computed), and the labels file is the converter's own."""
    rep = _rep(20, seed=5)
    calibration._MEMO.clear()
    monkeypatch.setenv(calibration.ENV_WORKERS, "1")
    quantize.convert(float_model, "int8", tmp_path / "logits.tflite", representative=rep)
    before, said = dict(calibration.STATS), []
    quantize.convert(labels_model, "int8", tmp_path / "shared_labels.tflite", representative=rep, progress=said.append)
    assert calibration.STATS["passes"] == before["passes"] and calibration.STATS["reused"] == before["reused"] + 1
    assert any("non-float ops added" in m for m in said)
    with monkeypatch.context() as m:
        m.setattr(calibration, "shared_calibration", lambda *a, **k: contextlib.nullcontext())
        quantize.convert(labels_model, "int8", tmp_path / "own_labels.tflite", representative=rep)
    assert (tmp_path / "shared_labels.tflite").read_bytes() == (tmp_path / "own_labels.tflite").read_bytes()


def test_a_graph_computed_differently_is_not_covered(float_model, labels_model, monkeypatch):
    rep = _rep(4, seed=6)
    got = []
    monkeypatch.setattr(calibration, "_calibrate_here", lambda mc, *a, **k: got.append(mc) or mc)
    for model in (float_model, labels_model):
        calibration._MEMO.clear()
        quantize.calibrate_int8(model, rep)
    logits, labels = got
    assert calibration.covers(logits, labels) and calibration.covers(labels, logits)  # the same float tensors
    m = calibration._model(logits)
    sg = m.subgraphs[0]
    const = next(t for t in sg.tensors if t.buffer < len(m.buffers) and m.buffers[t.buffer].data is not None
                 and t.type == calibration.FLOAT32 and len(m.buffers[t.buffer].data) > 8)
    data = np.array(m.buffers[const.buffer].data, dtype=np.uint8)
    data[0] ^= 1                                                    # one weight changed
    m.buffers[const.buffer].data = data
    assert not calibration.covers(calibration._to_bytes(m), labels)


def test_other_samples_make_a_new_pass(float_model, monkeypatch):
    monkeypatch.setenv(calibration.ENV_WORKERS, "1")
    calibration._MEMO.clear()
    quantize.calibrate_int8(float_model, _rep(6, seed=2))
    before = dict(calibration.STATS)
    quantize.calibrate_int8(float_model, _rep(6, seed=3))
    assert calibration.STATS["passes"] == before["passes"] + 1 and calibration.STATS["reused"] == before["reused"]


def test_a_failed_worker_costs_time_not_ranges(float_model, monkeypatch):
    rep = _rep(20, seed=4)
    calibration._MEMO.clear()
    monkeypatch.setenv(calibration.ENV_WORKERS, "1")
    one = quantize.calibrate_int8(float_model, rep)
    calibration._MEMO.clear()
    monkeypatch.setenv(calibration.ENV_WORKERS, "2")
    monkeypatch.setattr(calibration, "_calibrate_chunk", lambda *a: None)   # cannot be sent to a process
    said = []
    again = quantize.calibrate_int8(float_model, rep, progress=said.append)
    assert any("failed" in m and "calibrating that chunk here" in m for m in said)
    assert _minmax(again) == _minmax(one)


def test_worker_count_setting(monkeypatch):
    monkeypatch.setenv(calibration.ENV_WORKERS, "3")
    assert calibration.workers(100) == 3
    assert calibration.workers(calibration.MIN_PARALLEL_SAMPLES - 1) == 1   # a small set stays here
    monkeypatch.setenv(calibration.ENV_WORKERS, "two")
    with pytest.raises(ExportError, match="whole number"):
        calibration.workers(100)
    monkeypatch.setenv(calibration.ENV_WORKERS, "0")
    with pytest.raises(ExportError, match="at least 1"):
        calibration.workers(100)
