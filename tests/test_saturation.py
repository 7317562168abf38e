"""Ranges cut where a sigmoid saturates (quantize/ranges.py: saturation_limits, clamp_saturated;
applied by every calibration pass in calibration.py), on tiny generated models.

The selfie segmenter's logits span -1146..376 on its calibration set; with min/max ranges their
int8 step was 6 logits, so every pixel within 3 logits of the 0.5 threshold came out as 0.0025,
0.5 or 0.997: no soft edge at all. A sigmoid cannot tell inputs beyond +-8 apart at int8 output
precision, so the range can stop there."""

import numpy as np
import pytest
from builders import keras_to_tflite

from toolchain.quantize import calibration, flatbuffer, quantize_calibrated, ranges


def _net(kind: str):
    import keras
    from keras import initializers, layers

    keras.utils.set_random_seed(1)
    x_in = keras.Input((8, 8, 3), batch_size=1)
    z = layers.Conv2D(4, 1, kernel_initializer=initializers.RandomNormal(stddev=0.5))(x_in)  # logits ~ +-300
    s = layers.Activation("sigmoid")(z)
    if kind == "gate":  # z also feeds a MUL (swish): its full range matters there
        s = layers.Multiply()([z, s])
    elif kind == "shifted":  # every logit far above +8: always saturated
        z = layers.Conv2D(
            4,
            1,
            kernel_initializer=initializers.RandomNormal(stddev=0.01),
            bias_initializer=initializers.Constant(50.0),
        )(x_in)
        s = layers.Activation("sigmoid")(z)
    elif kind == "moved":  # value-moving ops between the logits and the sigmoid
        z = layers.Reshape((16, 4, 4))(z)
        s = layers.Activation("sigmoid")(layers.Concatenate(axis=1)([z, z]))
    return keras.Model(x_in, s)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    d = tmp_path_factory.mktemp("sat")
    return {k: keras_to_tflite(_net(k), d / f"{k}.tflite").read_bytes() for k in ("plain", "gate", "moved", "shifted")}


def _samples(n=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 3)).astype(np.uint8)


def _logit_ranges(blob):
    model = flatbuffer.read(blob)
    sg = model.subgraphs[0]
    out = {}
    for op in sg.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) == 3:  # CONV_2D
            q = sg.tensors[op.outputs[0]].quantization
            out["conv"] = (q.min[0], q.max[0])
    return out


def test_only_tensors_whose_every_use_saturates_are_cut(nets):
    for kind, cut in (("plain", True), ("moved", True), ("gate", False)):
        blob = calibration.calibrated(nets[kind], _samples())
        lo, hi = _logit_ranges(blob)["conv"]
        raw = calibration.true_ranges(nets[kind], _samples())
        raw_lo, raw_hi = _logit_ranges(raw)["conv"]
        assert raw_hi - raw_lo > 100  # the model's own logits are wide
        if cut:
            assert (lo, hi) == (max(raw_lo, -8.0), min(raw_hi, 8.0)), kind
        else:
            assert (lo, hi) == (raw_lo, raw_hi), kind  # the MUL needs the whole range
    lo, hi = _logit_ranges(calibration.calibrated(nets["shifted"], _samples()))["conv"]
    assert (lo, hi) == (8.0, 8.0)  # never an inverted range
    limits = ranges.saturation_limits(flatbuffer.read(nets["moved"]))
    assert sorted(set(limits.values())) == [8.0] and len(limits) == 3  # the conv output, the reshape, the concat


def test_int8_sigmoid_output_keeps_soft_values_near_the_threshold(nets, tmp_path, monkeypatch):
    import tensorflow as tf

    from toolchain.runtime import TfliteRunner

    x = _samples(64, seed=3)

    def soft_outputs(path):
        """(distinct output values, mean abs error) where the float output is within 0.05..0.95"""
        f = tf.lite.Interpreter(model_content=nets["plain"])
        f.allocate_tensors()
        r = TfliteRunner(path, kernels="reference")
        outs, refs = [], []
        for xi in x:
            f.set_tensor(f.get_input_details()[0]["index"], xi[None].astype(np.float32))
            f.invoke()
            refs.append(f.get_tensor(f.get_output_details()[0]["index"]).ravel())
            outs.append(next(iter(r.run(xi.astype(np.float32)).values())).ravel())
        out, ref = np.concatenate(outs), np.concatenate(refs)
        soft = np.abs(ref - 0.5) < 0.45
        assert soft.sum() >= 20  # enough pixels off saturation to judge
        return len(np.unique(out[soft])), float(np.abs(out - ref)[soft].mean())

    cut = quantize_calibrated(
        calibration.calibrated(nets["plain"], _samples()), tmp_path / "cut.tflite", output_type="float32"
    )
    calibration._MEMO.clear()
    monkeypatch.setattr(ranges, "clamp_saturated", lambda blob: (blob, []))
    wide = quantize_calibrated(
        calibration.calibrated(nets["plain"], _samples()), tmp_path / "wide.tflite", output_type="float32"
    )
    calibration._MEMO.clear()
    (levels_cut, err_cut), (levels_wide, err_wide) = soft_outputs(cut), soft_outputs(wide)
    assert levels_wide <= 6 < 20 <= levels_cut  # min/max: the logit step is several logits wide
    assert err_cut < 0.8 * err_wide  # measured 0.071 vs 0.107; the rest is the weights' int8 rounding
