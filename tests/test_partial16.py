"""int16 activations on the last layers (experiments/partial16.py, an experiment) on a tiny generated model:
the spliced file keeps the int8 ops before the cut, requantizes the cut tensor to int16 and runs the
16x8 file's ops after it; it has no float op, loads on both kernel sets, and its output is the 16x8
tail's output on the int8 head's values. A cut that does not separate the graph is refused."""

import numpy as np
import pytest
from builders import tiny_segmenter_project

from experiments import partial16
from toolchain import quantize
from toolchain.errors import ExportError
from toolchain.quantize import conversions
from toolchain.quantize.flatbuffer import read as read_model
from toolchain.runtime import TfliteRunner


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from toolchain.sources import import_model

    d = tmp_path_factory.mktemp("tiny_partial16")
    reg, _ = tiny_segmenter_project(d)
    fm = import_model(reg["tiny"], d / "models" / "tiny.tflite", d / "float")
    rep = np.random.default_rng(0).integers(0, 256, (12, 33, 33, 3)).astype(np.uint8)
    i8 = quantize.convert(fm, "int8", d / "int8.tflite", representative=rep)
    w16 = conversions.convert_16x8(fm, d / "w16.tflite", rep)
    return d, i8.read_bytes(), w16.read_bytes()


def _types(blob):
    m = read_model(blob)
    sg = m.subgraphs[0]
    return [
        (
            max(m.operatorCodes[op.opcodeIndex].builtinCode, m.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode),
            sg.tensors[op.outputs[0]].type,
            sg.tensors[op.outputs[0]].name.decode(),
        )
        for op in sg.operators
    ]


def test_the_tail_runs_in_int16_after_the_cut(files):
    d, i8, w16 = files
    cuts = partial16.tail_cuts(w16)
    assert len(cuts) >= 2
    cut = cuts[0]  # the shortest tail: the last op alone
    spliced = partial16.splice_tail(i8, w16, cut)
    ops = _types(spliced)
    assert all(
        t in (partial16.INT8, partial16.INT16, 2) for _c, t, _n in ops
    )  # int8, int16 (and int32 argmax): no float
    q = [k for k, (c, t, _n) in enumerate(ops) if c == partial16.QUANTIZE and t == partial16.INT16]
    assert len(q) == 1
    assert all(t == partial16.INT16 for _c, t, _n in ops[q[0] :])
    assert any(t == partial16.INT8 for _c, t, _n in ops[: q[0]])
    path = d / "spliced.tflite"
    path.write_bytes(spliced)
    x = np.random.default_rng(3).integers(0, 256, (33, 33, 3)).astype(np.uint8)
    ref = TfliteRunner(path, kernels="reference").run(x)
    xnn = TfliteRunner(path, kernels="xnnpack").run(x)
    (name,) = ref
    assert np.allclose(ref[name], xnn[name], atol=0.05)
    # against the int8 and the 16x8 files: the spliced output lies closer to int8's head values run
    # through an int16 last op than to nonsense (same sign pattern as both, small error)
    w16_out = TfliteRunner(d / "w16.tflite", kernels="reference").run(x)
    i8_out = TfliteRunner(d / "int8.tflite", kernels="reference").run(x)
    (n16,), (n8,) = list(w16_out), list(i8_out)
    span = float(np.ptp(w16_out[n16]))
    assert np.abs(ref[name] - w16_out[n16]).max() < 0.1 * span
    assert np.abs(ref[name] - i8_out[n8]).max() < 0.1 * span


def test_a_cut_that_does_not_separate_the_tail_is_refused(files):
    _d, i8, w16 = files
    m = read_model(w16)
    sg = m.subgraphs[0]
    add = next(op for op in sg.operators if m.operatorCodes[op.opcodeIndex].builtinCode == 0)  # the residual ADD
    one_branch = sg.tensors[add.inputs[1]].name.decode()  # the other branch also reaches the output
    with pytest.raises(ExportError, match="does not separate"):
        partial16.splice_tail(i8, w16, [one_branch])
    with pytest.raises(ExportError, match="not in both"):
        partial16.splice_tail(i8, w16, ["no_such_tensor"])


def test_a_head_splice_runs_int16_up_to_the_cut_and_int8_after(files):
    d, i8, w16 = files
    m = read_model(i8)
    sg = m.subgraphs[0]
    first_conv = next(op for op in sg.operators if m.operatorCodes[op.opcodeIndex].builtinCode == 3)  # CONV_2D
    cut = [sg.tensors[first_conv.outputs[0]].name.decode()]  # a chain point: one tensor carries on
    spliced = partial16.splice_head(w16, i8, cut)
    ops = _types(spliced)
    q = [k for k, (c, t, _n) in enumerate(ops) if c == partial16.QUANTIZE and t == partial16.INT8]
    assert len(q) == 1
    assert any(t == partial16.INT16 for _c, t, _n in ops[: q[0]])
    assert all(t in (partial16.INT8, 2) for _c, t, _n in ops[q[0] :])
    path = d / "head.tflite"
    path.write_bytes(spliced)
    x = np.random.default_rng(4).integers(0, 256, (33, 33, 3)).astype(np.uint8)
    out = TfliteRunner(path, kernels="reference").run(x)
    ref = TfliteRunner(d / "int8.tflite", kernels="reference").run(x)
    (a,), (b,) = list(out.values()), list(ref.values())
    assert np.abs(a - b).max() < 0.1 * float(np.ptp(b))
