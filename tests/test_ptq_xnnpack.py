"""XNNPACK delegation analysis and the importer rewrites that keep int8 graphs in one partition."""

import numpy as np
import pytest
from builders import keras_to_tflite

from toolchain.quantize.xnnpack import delegation, summary
from toolchain.sources import tflite_graph


def _keras(build, shape):
    import keras

    keras.utils.set_random_seed(0)
    x_in = keras.Input(shape[1:], batch_size=1)
    return keras.Model(x_in, build(x_in))


def _int8(fn, shape, path):
    """Full-int8 file of a TF function (random calibration), like the export's int8 conversion."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    f = tf.function(fn, input_signature=[tf.TensorSpec(shape, tf.float32)])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type, conv.inference_output_type = tf.int8, tf.int8
    conv.representative_dataset = lambda: ([rng.uniform(-1, 1, shape).astype(np.float32)] for _ in range(8))
    path.write_bytes(conv.convert())
    return path


def _max_diff_vs_original(path, graph, shape):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    x = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    ref = it.get_tensor(it.get_output_details()[0]["index"])
    got = np.asarray(tflite_graph.emit(graph, tf.constant(x))[0])
    return float(np.max(np.abs(got - ref)))


def _se_hswish_model():
    """conv -> hard-swish -> squeeze-and-excitation (global average pool), as in the selfie model."""
    import keras
    from keras import layers

    def build(x):
        x = layers.Conv2D(8, 3, padding="same")(x)
        x = keras.ops.multiply(x, keras.ops.relu6(x + 3.0)) / 6.0  # the converter fuses this to HARD_SWISH
        s = layers.AveragePooling2D(pool_size=(x.shape[1], x.shape[2]))(x)
        s = layers.Conv2D(8, 1, activation="sigmoid")(s)
        return layers.Conv2D(4, 1)(x * s)

    return build


def test_global_pool_and_hard_swish_rewrites_keep_the_math_and_delegate_in_one_partition(tmp_path):
    shape = (1, 16, 16, 3)
    src = keras_to_tflite(_keras(_se_hswish_model(), shape), tmp_path / "se.tflite")
    graph = tflite_graph.read_tflite(src)
    assert {"HARD_SWISH", "AVERAGE_POOL_2D"} <= set(graph.op_names())
    assert sum(tflite_graph.is_global_average_pool(op, graph) for op in graph.ops) == 1
    assert _max_diff_vs_original(src, graph, shape) < 1e-4

    # before: the same ops as the source file, quantized -> split into several partitions
    import tensorflow as tf

    naive = _int8(lambda x: _source_ops(tf, graph, x), shape, tmp_path / "naive_int8.tflite")
    before = delegation(naive)
    assert before["partitions"] > 1, summary(before)
    assert {"HARD_SWISH", "AVERAGE_POOL_2D"} & set(before["undelegated_op_counts"]), summary(before)

    # after: the importer's rewrites -> one partition, nothing outside
    rewritten = _int8(lambda x: tflite_graph.emit(graph, x)[0], shape, tmp_path / "int8.tflite")
    after = delegation(rewritten)
    ops = tflite_graph.read_tflite(rewritten).op_names()
    assert "HARD_SWISH" not in ops and "AVERAGE_POOL_2D" not in ops and "MEAN" in ops
    assert after["partitions"] == 1 and after["undelegated_ops"] == [], summary(after)


def _source_ops(tf, graph, x):
    """The source graph with HARD_SWISH and the global pool emitted as the plain TF ops the
    converter turns back into HARD_SWISH / AVERAGE_POOL_2D (what the importer did before)."""
    saved = dict(tflite_graph._OPS)
    try:
        tflite_graph._OPS["HARD_SWISH"] = lambda tf, op, a, g: a[0] * tf.nn.relu6(a[0] + 3.0) / 6.0
        tflite_graph._OPS["AVERAGE_POOL_2D"] = lambda tf, op, a, g: tf.nn.avg_pool2d(
            a[0], [op.options.filterHeight, op.options.filterWidth], [op.options.strideH, op.options.strideW], "VALID"
        )
        return tflite_graph.emit(graph, x)[0]
    finally:
        tflite_graph._OPS.clear()
        tflite_graph._OPS.update(saved)


@pytest.mark.parametrize("s,pad", [(2, "SAME"), (3, "VALID")])
def test_transposed_conv_bias_inside_the_phase_convs_is_exact(s, pad):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 5, 6, 3)).astype(np.float32)
    w = rng.normal(size=(2, 3, 3, 3)).astype(np.float32)  # OHWI
    b = rng.normal(size=(2,)).astype(np.float32) * 0.01  # a small bias: the case XNNPACK refused as an ADD
    oh, ow = (5 * s, 6 * s) if pad == "SAME" else (4 * s + 3, 5 * s + 3)
    ref = tf.nn.conv2d_transpose(x, np.transpose(w, (1, 2, 0, 3)), [1, oh, ow, 2], [1, s, s, 1], pad).numpy() + b
    got = tflite_graph._transpose_conv_core(tf, tf.constant(x), w, b, (1, oh, ow, 2), (s, s), pad).numpy()
    assert got.shape == ref.shape and np.max(np.abs(got - ref)) < 1e-4

    def fn(t):
        return tflite_graph._transpose_conv_core(tf, t, w, b, (1, oh, ow, 2), (s, s), pad)

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        info = delegation(_int8(fn, (1, 5, 6, 3), Path(d) / "tc.tflite"))
    assert "ADD" not in info["undelegated_op_counts"], summary(info)


def test_delegation_of_a_float_model_and_a_bad_file(tmp_path):
    import keras

    from toolchain.errors import ModelFormatError

    src = keras_to_tflite(
        _keras(lambda x: keras.layers.Conv2D(4, 3, activation="relu")(x), (1, 8, 8, 3)), tmp_path / "c.tflite"
    )
    info = delegation(src)
    assert info["partitions"] == 1 and info["delegated_nodes"] == info["total_nodes"] >= 1
    assert "1 XNNPACK partition(s)" in summary(info)
    (tmp_path / "bad.tflite").write_bytes(b"\0\0\0\0TFL3garbage")
    with pytest.raises(ModelFormatError):
        delegation(tmp_path / "bad.tflite")
