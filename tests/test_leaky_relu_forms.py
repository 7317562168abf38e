"""Leaky ReLU written for int8 (toolchain/sources/leaky_relu.py): the float function is unchanged, bit for
bit, and the int8 forms are judged by the per-op gap between XNNPACK and the reference kernels."""

import numpy as np
import pytest
from builders import keras_to_tflite

from toolchain.sources import leaky_relu as lr
from toolchain.sources import tflite_graph


def _inputs():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 3, (2, 9, 9, 4)).astype(np.float32)
    x[0, 0, 0] = [0.0, -0.0, 1e-38, -1e-38]  # zeros and denormal-sized values
    x[0, 0, 1] = [np.float32(3.4e38), -3.4e38, 1e-30, -1e-30]
    return x


@pytest.mark.parametrize("form", [f for f in lr.FORMS if f != "op"])
def test_float_function_is_bit_identical(form):
    import tensorflow as tf

    x = tf.constant(_inputs())
    for alpha in (0.2, 0.1, 0.01, 0.3333):
        ref = lr.leaky_relu(tf, x, alpha, "op").numpy()
        got = lr.leaky_relu(tf, x, alpha, form).numpy()
        assert np.array_equal(ref.view(np.uint32) & 0x7FFFFFFF, got.view(np.uint32) & 0x7FFFFFFF)  # bits (+-0 alike)
        assert np.array_equal(ref, got)


def test_unknown_form_is_refused():
    import tensorflow as tf

    with pytest.raises(ValueError, match="unknown leaky ReLU form"):
        lr.leaky_relu(tf, tf.zeros((1, 2, 2, 1)), 0.2, "nope")


def test_importer_form_leaves_the_float_model_unchanged(tmp_path):
    """The same float .tflite (two LEAKY_RELU ops; the converter fuses max(0.2x, x) into one) emitted in each
    form gives the same outputs, bit for bit."""
    import keras
    import tensorflow as tf
    from keras import layers

    keras.utils.set_random_seed(0)
    x_in = keras.Input((8, 8, 3), batch_size=1)
    a = layers.Conv2D(4, 3, padding="same")(x_in)
    a = keras.ops.maximum(a * 0.2, a)
    a = layers.LeakyReLU(negative_slope=0.1)(layers.Conv2D(4, 3, padding="same")(a))
    path = keras_to_tflite(keras.Model(x_in, a), tmp_path / "leaky.tflite")
    graph = tflite_graph.read_tflite(path)
    assert graph.op_names().count("LEAKY_RELU") == 2
    x = tf.constant(np.random.default_rng(1).normal(0, 2, (1, 8, 8, 3)).astype(np.float32))
    ref = np.asarray(tflite_graph.emit(graph, x)[0])
    for form in lr.FORMS:
        assert np.array_equal(np.asarray(tflite_graph.emit(graph, x, leaky_relu_form=form)[0]), ref), form


def test_real_pydnet_float_function_unchanged(shared_dir):
    """PyDNet++ (leaky ReLU as MUL + MAXIMUM, 38 times): every form gives float's outputs bit for bit."""
    import tensorflow as tf

    graph = tflite_graph.read_tflite(shared_dir / "models" / "pydnet_pp_mobile.tflite")
    x = tf.constant(np.random.default_rng(0).uniform(0, 1, (1, 448, 640, 3)).astype(np.float32))
    ref = np.asarray(tflite_graph.emit(graph, x, output_indices=[graph.outputs[0]])[0])
    got = np.asarray(tflite_graph.emit(graph, x, output_indices=[graph.outputs[0]], leaky_relu_form="relu_min")[0])
    assert np.array_equal(got, ref)


def _int8_one_op(form: str, tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (1, 1, 16, 16)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 16], tf.float32)])
    def f(x):
        return lr.leaky_relu(tf, tf.nn.conv2d(x, w, 1, "SAME"), 0.2, form)

    rep = [rng.normal(0, 1, (1, 32, 32, 16)).astype(np.float32) for _ in range(16)]
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type, conv.inference_output_type = tf.uint8, tf.int8
    conv.representative_dataset = lambda: ([r] for r in rep)
    path = tmp_path / f"{form}.tflite"
    path.write_bytes(conv.convert())
    return path


def test_relu_min_form_rounds_alike_on_both_kernel_sets(tmp_path):
    """Per-op gap (quantize/kernel_gap.py) on one int8 activation after a convolution: LEAKY_RELU takes the
    XNNPACK-vs-reference SNR down by >15 dB from the convolution's; relu_min's four ops keep it within a
    few dB (they only carry the convolution's own one-step differences)."""
    from toolchain.quantize.kernel_gap import kernel_gap

    rng = np.random.default_rng(2)
    imgs = [("a", rng.integers(0, 256, (32, 32, 16), dtype=np.uint8))]
    drop = {}
    for form in ("op", "relu_min"):
        ops = kernel_gap(_int8_one_op(form, tmp_path), imgs)["ops"]
        conv = next(r for r in ops if r["op"] == "CONV_2D")
        drop[form] = conv["snr_db"] - ops[-1]["snr_db"]
    assert drop["op"] > 15.0
    assert drop["relu_min"] < 6.0
