"""The op-by-op float-TFLite importer, checked op by op against the original file."""

import numpy as np
import pytest
from builders import keras_to_tflite, tiny_segmenter_keras

from toolchain.errors import ModelFormatError, UnsupportedOp
from toolchain.sources import tflite_graph


def _run_original(path, x):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


def _check(path, shape, tol=1e-4):
    import tensorflow as tf

    graph = tflite_graph.read_tflite(path)
    x = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)
    ref = _run_original(path, x)
    got = tflite_graph.emit(graph, tf.constant(x))
    for r, g in zip(ref, got):
        g = np.asarray(g)
        assert g.shape == r.shape
        assert np.max(np.abs(g - r)) <= tol * max(1.0, float(np.ptp(r)))
    return graph


def _keras_op_model(build, shape):
    import keras

    keras.utils.set_random_seed(0)
    x_in = keras.Input(shape[1:], batch_size=1)
    return keras.Model(x_in, build(x_in))


def test_tiny_segmenter_matches_original(tmp_path):
    path = keras_to_tflite(tiny_segmenter_keras(), tmp_path / "seg.tflite")
    graph = _check(path, (1, 33, 33, 3))
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "CONCATENATION", "RESIZE_BILINEAR"} <= set(graph.op_names())


@pytest.mark.parametrize(
    "name,build",
    [
        ("transpose_conv", lambda x: __import__("keras").layers.Conv2DTranspose(4, 3, strides=2, padding="same")(x)),
        ("mul_max_slice", lambda x: __import__("keras").ops.maximum(x * 0.2, x)[:, 1:7, :, :2]),
        (
            "avg_pool_concat",
            lambda x: __import__("keras").layers.Concatenate()(
                [__import__("keras").layers.AveragePooling2D(2)(x), __import__("keras").layers.MaxPooling2D(2)(x)]
            ),
        ),
        (
            "dilated_conv",
            lambda x: __import__("keras").layers.Conv2D(4, 3, dilation_rate=2, padding="same", activation="relu")(x),
        ),
        ("sigmoid_tanh", lambda x: __import__("keras").ops.sigmoid(x) + __import__("keras").ops.tanh(x)),
        # the inverse-depth output transform: rsqrt(max(x, floor))^2 (quantize/conversions.py)
        (
            "rsqrt_inverse",
            lambda x: (lambda r: r * r)(__import__("keras").ops.rsqrt(__import__("keras").ops.maximum(x, 0.1))),
        ),
    ],
)
def test_single_ops_match_original(tmp_path, name, build):
    path = keras_to_tflite(_keras_op_model(build, (1, 8, 8, 3)), tmp_path / f"{name}.tflite")
    _check(path, (1, 8, 8, 3))


@pytest.mark.parametrize("align_corners,half_pixel", [(True, False), (False, True), (False, False)])
def test_resize_bilinear_flags(tmp_path, align_corners, half_pixel):
    import tensorflow as tf

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 5, 7, 2], tf.float32)])
        def f(self, x):
            return tf.compat.v1.image.resize_bilinear(
                x, [13, 9], align_corners=align_corners, half_pixel_centers=half_pixel
            )

    m = M()
    tf.saved_model.save(m, str(tmp_path / "sm"), signatures={"serving_default": m.f})
    blob = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm")).convert()
    (tmp_path / "r.tflite").write_bytes(blob)
    graph = _check(tmp_path / "r.tflite", (1, 5, 7, 2), tol=1e-5)
    assert "RESIZE_BILINEAR" in graph.op_names()


def test_float16_weights_behind_dequantize(tmp_path):
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(tiny_segmenter_keras())
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    (tmp_path / "f16.tflite").write_bytes(conv.convert())
    graph = _check(tmp_path / "f16.tflite", (1, 33, 33, 3))
    assert "DEQUANTIZE" in graph.op_names()


def test_unsupported_op_names_the_op_and_where(tmp_path):
    path = keras_to_tflite(
        _keras_op_model(lambda x: __import__("keras").ops.sin(x), (1, 4, 4, 3)), tmp_path / "sin.tflite"
    )
    graph = tflite_graph.read_tflite(path)
    with pytest.raises(UnsupportedOp) as err:
        tflite_graph.check_supported(graph)
    assert "SIN" in str(err.value) and "op #0" in str(err.value)


def test_corrupt_and_truncated_tflite_are_clear_errors(tmp_path):
    good = keras_to_tflite(tiny_segmenter_keras(), tmp_path / "seg.tflite")
    (tmp_path / "junk.tflite").write_bytes(b"this is not a model at all")
    with pytest.raises(ModelFormatError, match="not a TFLite flatbuffer"):
        tflite_graph.read_tflite(tmp_path / "junk.tflite")
    (tmp_path / "trunc.tflite").write_bytes(good.read_bytes()[:2000])
    with pytest.raises(ModelFormatError):
        tflite_graph.read_tflite(tmp_path / "trunc.tflite")
    with pytest.raises(ModelFormatError, match="not found"):
        tflite_graph.read_tflite(tmp_path / "missing.tflite")


def test_real_deeplab_257_rebuild_matches_original(shared_dir, shared_photos):
    """Acceptance: max abs logit difference <= 1e-3, identical argmax on >= 99.99% of pixels."""
    import tensorflow as tf

    from toolchain.images import load_rgb, to_model_input

    path = shared_dir / "models" / "deeplabv3_257_mv_gpu.tflite"
    graph = tflite_graph.read_tflite(path)
    worst, agree = 0.0, []
    for photo in shared_photos:
        x = to_model_input(load_rgb(photo), (257, 257))[None].astype(np.float32) / 127.5 - 1.0
        ref = _run_original(path, x)[0]
        got = np.asarray(tflite_graph.emit(graph, tf.constant(x))[0])
        worst = max(worst, float(np.abs(ref - got).max()))
        agree.append(np.mean(ref.argmax(-1) == got.argmax(-1)))
    assert worst <= 1e-3
    assert np.mean(agree) >= 0.9999


def test_leaky_relu_and_concat_conv_rewrites_keep_the_math(tmp_path):
    """max(x, 0.2x) becomes one leaky ReLU and concat->conv a sum of convs; outputs unchanged."""
    import keras
    from keras import layers

    def build(x):
        a = layers.Conv2D(4, 3, padding="same")(x)
        a = keras.ops.maximum(a * 0.2, a)
        b = layers.Conv2D(3, 1)(x) * 50.0
        return layers.Conv2D(5, 3, padding="same")(layers.Concatenate()([a, b]))

    path = keras_to_tflite(_keras_op_model(build, (1, 8, 8, 3)), tmp_path / "pat.tflite")
    graph = _check(path, (1, 8, 8, 3))
    assert len(tflite_graph.concat_conv_pattern(graph)) == 1


def test_real_pydnet_leaky_pattern_and_import(shared_dir):
    """PyDNet++ spells leaky ReLU as MUL + MAXIMUM (38 times) and stores int8 hybrid weights."""
    import tensorflow as tf

    path = shared_dir / "models" / "pydnet_pp_mobile.tflite"
    graph = tflite_graph.read_tflite(path)
    assert len(tflite_graph.leaky_relu_pattern(graph)) == 38
    assert len(tflite_graph.concat_conv_pattern(graph)) == 5
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=tflite_graph.float_reference_bytes(path))
    it.allocate_tensors()
    x = np.random.default_rng(0).uniform(0, 1, (1, 448, 640, 3)).astype(np.float32)
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    ref = it.get_tensor(it.get_output_details()[0]["index"])
    got = np.asarray(tflite_graph.emit(graph, tf.constant(x), output_indices=[graph.outputs[0]])[0])
    assert np.max(np.abs(got - ref)) <= 1e-4 * float(np.ptp(ref))


def test_hybrid_int8_weight_source_is_checked_against_its_float_weights(tmp_path):
    """A dynamic-range file (int8 weights) imports with dequantized weights; its float-weight copy
    is the reference, the file as-is differs by its own activation quantization."""
    import keras
    import tensorflow as tf

    def build(x):  # weights of >= 1024 values, which dynamic-range quantization stores as int8
        x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
        return keras.layers.Conv2D(21, 3, padding="same")(x)

    conv = tf.lite.TFLiteConverter.from_keras_model(_keras_op_model(build, (1, 33, 33, 3)))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    (tmp_path / "dyn.tflite").write_bytes(conv.convert())
    graph = tflite_graph.read_tflite(tmp_path / "dyn.tflite")
    assert tflite_graph.has_quantized_weights(graph)
    (tmp_path / "ref.tflite").write_bytes(tflite_graph.float_reference_bytes(tmp_path / "dyn.tflite"))
    assert not tflite_graph.has_quantized_weights(tflite_graph.read_tflite(tmp_path / "ref.tflite"))
    x = np.random.default_rng(2).uniform(-1, 1, (1, 33, 33, 3)).astype(np.float32)
    ref = _run_original(tmp_path / "ref.tflite", x)[0]
    got = np.asarray(tflite_graph.emit(graph, tf.constant(x))[0])
    assert np.max(np.abs(got - ref)) <= 1e-4 * max(1.0, float(np.ptp(ref)))


@pytest.mark.parametrize(
    "ih,iw,k,s,pad,cin,cout",
    [
        (7, 5, 3, 2, "SAME", 4, 3),
        (7, 5, 4, 2, "SAME", 2, 5),
        (6, 6, 3, 2, "VALID", 3, 2),
        (5, 5, 5, 3, "SAME", 2, 2),
        (4, 4, 2, 2, "VALID", 2, 2),
    ],
)
def test_transposed_conv_as_subpixel_convs_is_exact(ih, iw, k, s, pad, cin, cout):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, ih, iw, cin)).astype(np.float32)
    w = rng.normal(size=(cout, k, k, cin)).astype(np.float32)  # OHWI, as TFLite stores it
    oh, ow = (ih * s, iw * s) if pad == "SAME" else ((ih - 1) * s + k, (iw - 1) * s + k)
    ref = tf.nn.conv2d_transpose(x, np.transpose(w, (1, 2, 0, 3)), [1, oh, ow, cout], [1, s, s, 1], pad).numpy()
    got = tflite_graph._transpose_conv_core(tf, tf.constant(x), w, None, (1, oh, ow, cout), (s, s), pad).numpy()
    assert got.shape == ref.shape and np.max(np.abs(got - ref)) < 1e-4
