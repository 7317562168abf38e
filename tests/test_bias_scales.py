"""Integer biases shared between convolutions (quantize/conversions.py: rescale_shared_biases,
bias_scale_mismatches), on a tiny generated model whose two heads add the same bias constant.

TF's old quantizer (the 16x8 path) quantizes a shared bias once, on its first user's scale; the
second head then reads it on the wrong scale. The selfie segmenter's transposed-conv phases are
such a pair: its w8a16 worst-photo IoU was 0.948 with the misread bias and is 0.997 without."""

import numpy as np
import pytest
from builders import keras_to_tflite, write_registry

from toolchain.quantize import conversions, ladder
from toolchain.runtime import TfliteRunner


def two_heads_keras(h=17, w=17, classes=21):
    """conv -> two 1x1 heads with the same bias (0.5) but weights 4x apart -> their sum."""
    import keras
    from keras import initializers, layers

    keras.utils.set_random_seed(3)
    x_in = keras.Input((h, w, 3), batch_size=1)
    # fixed layer names: keras numbers unnamed layers per process, and the names set the converter's op
    # order, so which head quantizes the shared bias first (and the sign of the misread) would depend
    # on what ran before this test
    x = layers.Conv2D(8, 3, padding="same", activation="relu6", name="trunk")(x_in)
    a = layers.Conv2D(classes, 1, bias_initializer=initializers.Constant(0.5), name="head_a")(x)
    b = layers.Conv2D(
        classes,
        1,
        bias_initializer=initializers.Constant(0.5),
        kernel_initializer=initializers.RandomNormal(stddev=0.02),
        name="head_b",
    )(x)
    return keras.Model(x_in, layers.Add(name="sum")([a, b]))


@pytest.fixture(scope="module")
def float_model(tmp_path_factory):
    from toolchain.registry import load_registry, sha256_of
    from toolchain.sources import import_model

    d = tmp_path_factory.mktemp("two_heads")
    path = keras_to_tflite(two_heads_keras(), d / "heads.tflite")
    reg = load_registry(write_registry(d, "heads", "tflite", "heads.tflite", 17, 17, "logits", sha=sha256_of(path)))
    return import_model(reg["heads"], path, d / "float")


def _rep(n=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 17, 17, 3)).astype(np.uint8)


def _error(float_model, path):
    x = _rep(4, seed=9)
    ref = np.stack([float_model.run(xi[None])["logits"][0] for xi in x])
    out = np.stack([TfliteRunner(path, kernels="reference").run(xi)["logits"][0] for xi in x])
    return float(np.mean(out - ref)), float(np.max(np.abs(out - ref)))


def test_16x8_gives_each_convolution_a_bias_on_its_own_scale(float_model, tmp_path, monkeypatch):
    fixed = conversions.convert_16x8(float_model, tmp_path / "fixed.tflite", _rep())
    assert conversions.bias_scale_mismatches(fixed.read_bytes()) == []
    assert ladder.op_counts(fixed)["float_ops"] == 0
    bias_fixed, err_fixed = _error(float_model, fixed)

    # the converter alone: the second head reads the first head's bias on its own (4x smaller) scale
    monkeypatch.setattr(conversions, "rescale_shared_biases", lambda blob: (blob, []))
    raw = conversions.convert_16x8(float_model, tmp_path / "raw.tflite", _rep())
    misread = conversions.bias_scale_mismatches(raw.read_bytes())
    assert misread, "the converter no longer shares the bias: rescale_shared_biases may be obsolete"
    bias_raw, err_raw = _error(float_model, raw)
    assert bias_raw < -0.2  # 0.5 read on a scale about 4x too small: about -0.4 on every output
    assert abs(bias_fixed) < 0.01 and err_fixed < 0.05 < err_raw


def test_rescaling_keeps_what_the_first_user_reads_and_leaves_a_sound_file_alone(float_model, tmp_path, monkeypatch):
    monkeypatch.setattr(conversions, "rescale_shared_biases", lambda blob: (blob, []))
    raw = conversions.convert_16x8(float_model, tmp_path / "raw.tflite", _rep()).read_bytes()
    monkeypatch.undo()
    blob, changed = conversions.rescale_shared_biases(raw)
    assert len(changed) == len(conversions.bias_scale_mismatches(raw)) >= 1
    again, changed_again = conversions.rescale_shared_biases(blob)
    assert changed_again == [] and again == blob
