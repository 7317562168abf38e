"""Post-training techniques on small generated models where the answer is known:
cross-layer equalization, bias correction, AdaRound and activation range search."""

import numpy as np
import pytest
from builders import keras_to_tflite

from toolchain.quantize import adaround, equalize, graphedit, ranges
from toolchain.sources import tflite_graph


def _run(path, x):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    outs = []
    for xi in x:
        it.set_tensor(it.get_input_details()[0]["index"], xi[None].astype(np.float32))
        it.invoke()
        outs.append(it.get_tensor(it.get_output_details()[0]["index"])[0].copy())
    return np.stack(outs)


def _int8_of_tflite(src, path, calib, opset=None):
    """The float .tflite re-emitted by the importer and converted to full int8 (as the export does),
    or with `opset` (e.g. the 16x8 one, as the w8a16 rung does)."""
    import tensorflow as tf

    graph = tflite_graph.read_tflite(src)
    shape = graph.tensor(graph.inputs[0]).shape
    f = tf.function(lambda x: tflite_graph.emit(graph, x)[0], input_signature=[tf.TensorSpec(shape, tf.float32)])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_ops = [opset or tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.representative_dataset = lambda: ([c[None].astype(np.float32)] for c in calib)
    path.write_bytes(conv.convert())  # float input/output, int8 (or 16x8) inside
    return path


def _model(build, shape, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    x_in = keras.Input(shape, batch_size=1)
    return keras.Model(x_in, build(x_in))


def test_cle_leaves_float_outputs_unchanged_and_evens_channel_ranges(tmp_path):
    from keras import layers

    rng = np.random.default_rng(0)

    def build(x):
        x = layers.Conv2D(8, 3, padding="same", activation="relu", name="a")(x)
        x = layers.Conv2D(8, 1, name="b")(x)  # linear -> next
        x = layers.DepthwiseConv2D(3, padding="same", activation="relu", name="c")(x)
        return layers.Conv2D(4, 1, name="d")(x)

    model = _model(build, (12, 12, 3))
    wa, ba = model.get_layer("a").get_weights()
    spread = np.array([50, 0.02, 1, 1, 8, 0.1, 1, 3], np.float32)  # planted: very uneven channel ranges
    model.get_layer("a").set_weights([wa * spread, ba * spread])
    wb, bb = model.get_layer("b").get_weights()
    model.get_layer("b").set_weights([wb / spread[None, None, :, None], bb])
    src = keras_to_tflite(model, tmp_path / "f.tflite")
    x = rng.uniform(-1, 1, (6, 12, 12, 3)).astype(np.float32)
    rec = equalize.equalize(src, tmp_path / "cle.tflite", x)
    assert rec["pairs"] == 3  # a->b (relu), b->c (linear), c->d (relu)
    assert rec["median_channel_range_spread_after"] < rec["median_channel_range_spread_before"]
    ref, got = _run(src, x), _run(tmp_path / "cle.tflite", x)
    assert np.max(np.abs(got - ref)) <= 1e-5 * max(1.0, float(np.max(np.abs(ref))))
    ed = graphedit.Editable(tmp_path / "cle.tflite")
    r = np.max(np.abs(graphedit.weight_matrix(ed.get(ed.convs()[0].w), "conv")), axis=1)
    assert r.max() / r.min() < 50  # was 2500


def test_cle_across_relu6_only_where_the_calibration_data_stays_below_6(tmp_path):
    from keras import layers

    def build(x):
        x = layers.Conv2D(8, 3, padding="same", activation="relu6", name="a")(x)
        return layers.Conv2D(4, 1, name="b")(x)

    model = _model(build, (10, 10, 3), seed=1)
    wa, ba = model.get_layer("a").get_weights()
    model.get_layer("a").set_weights([wa * np.array([20, 1, 1, 0.05, 1, 1, 1, 1], np.float32), ba])
    src = keras_to_tflite(model, tmp_path / "f.tflite")
    x = np.random.default_rng(1).uniform(-1, 1, (6, 10, 10, 3)).astype(np.float32)
    equalize.equalize(src, tmp_path / "cle.tflite", x)
    ref, got = _run(src, x), _run(tmp_path / "cle.tflite", x)
    assert np.max(np.abs(got - ref)) <= 1e-5 * max(1.0, float(np.max(np.abs(ref))))


def test_bias_correction_removes_a_planted_mean_shift(tmp_path):
    """Weights sit 0.45 of a step above a grid point, so nearest rounding lowers every output by
    the same amount on positive inputs: the int8 model's mean shifts; corrected, it does not."""
    from keras import layers

    model = _model(lambda x: layers.Conv2D(4, 3, padding="valid", name="a")(x), (10, 10, 8))
    w = np.zeros((3, 3, 8, 4), np.float32)
    w[...] = (np.arange(72).reshape(3, 3, 8, 1) % 40 + 0.45) / 127.0
    w[0, 0, 0, :] = 1.0  # each channel's max: scale 1/127
    model.get_layer("a").set_weights([w, np.zeros(4, np.float32)])
    src = keras_to_tflite(model, tmp_path / "f.tflite")
    rng = np.random.default_rng(0)
    calib = rng.uniform(0.5, 1.5, (16, 10, 10, 8)).astype(np.float32)
    test = rng.uniform(0.5, 1.5, (8, 10, 10, 8)).astype(np.float32)
    rec = equalize.bias_correction(src, tmp_path / "bc.tflite", calib)
    assert rec["layers"] == 1
    ref = _run(src, test)
    plain = _run(_int8_of_tflite(src, tmp_path / "plain_int8.tflite", calib), test)
    fixed = _run(_int8_of_tflite(tmp_path / "bc.tflite", tmp_path / "bc_int8.tflite", calib), test)
    shift_plain = np.abs((plain - ref).mean(axis=(0, 1, 2)))
    shift_fixed = np.abs((fixed - ref).mean(axis=(0, 1, 2)))
    assert shift_plain.min() > 0.2  # planted: 71 weights x 0.45/127 x mean input 1 = 0.25
    assert shift_fixed.max() < 0.15 * shift_plain.min()


def test_adaround_beats_nearest_rounding_and_the_converter_keeps_its_rounding(tmp_path):
    from keras import layers

    rng = np.random.default_rng(0)
    model = _model(lambda x: layers.Conv2D(6, 3, padding="same", name="a")(x), (12, 12, 6), seed=2)
    src = keras_to_tflite(model, tmp_path / "f.tflite")
    base = rng.normal(size=(24, 12, 12, 1)).astype(np.float32)
    calib = (base + 0.3 * rng.normal(size=(24, 12, 12, 6))).astype(np.float32)  # strongly correlated channels
    rec, rounded = adaround.adaround(src, tmp_path / "ada.tflite", calib[:16], images=16, iterations=300)
    assert rec["improved"] == 1
    # output error on held-out images: AdaRound's weights vs nearest rounding, both in float
    ed = graphedit.Editable(src)
    conv = ed.convs()[0]
    w = ed.get(conv.w)
    near = graphedit.from_matrix(graphedit.round_nearest(graphedit.weight_matrix(w, "conv")), "conv", w.shape)
    ed.set(conv.w, near)
    ed.write(tmp_path / "near.tflite")
    held = calib[16:]
    ref = _run(src, held)
    err_near = np.mean((_run(tmp_path / "near.tflite", held) - ref) ** 2)
    err_ada = np.mean((_run(tmp_path / "ada.tflite", held) - ref) ** 2)
    assert err_ada < 0.9 * err_near
    # the converter derives the same per-channel scale and rounds onto exactly AdaRound's grid points
    q = tflite_graph.read_tflite(_int8_of_tflite(tmp_path / "ada.tflite", tmp_path / "ada_int8.tflite", calib))
    wq = [t for t in q.tensors if t.data is not None and t.dtype is np.int8 and t.data.ndim == 4]
    assert len(wq) == 1
    m = graphedit.weight_matrix(rounded[conv.w], "conv")
    k = np.round(m / graphedit.channel_scales(m)[:, None]).astype(np.int64)
    assert np.array_equal(wq[0].data.reshape(len(k), -1).astype(np.int64), k)
    nearest_k = np.round(
        graphedit.weight_matrix(w, "conv") / graphedit.channel_scales(graphedit.weight_matrix(w, "conv"))[:, None]
    )
    assert np.any(k != nearest_k)  # AdaRound did change some roundings, and they survived conversion


def test_range_search_beats_minmax_on_a_tensor_with_outliers():
    """A million ordinary values and two far out: min/max spends its levels on the two."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=1_000_000), [50.0, -40.0]]).astype(np.float32)
    lo, hi = float(x.min()), float(x.max())
    err = lambda r: float(np.mean((ranges.fake_quant(x, *r) - x) ** 2))  # noqa: E731
    mse = ranges.mse_range(x, lo, hi)
    pct = ranges.percentile_range(x, lo, hi)
    assert err(mse) < 0.5 * err((lo, hi))
    assert err(pct) < err((lo, hi))
    assert lo <= mse[0] <= 0 <= mse[1] <= hi  # only ever shrinks, zero inside


def test_search_ranges_edits_a_calibrated_flatbuffer_that_still_quantizes(tmp_path):
    import tensorflow as tf

    from toolchain.quantize import quantize_calibrated

    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 3, 3, 8)).astype(np.float32)
    f = tf.function(
        lambda x: tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME")), input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32)]
    )
    calib = rng.normal(size=(12, 16, 16, 3)).astype(np.float32)
    calib[0, 3, 3, :] = 40.0  # one outlier pixel stretches the min/max ranges
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([c[None]] for c in calib)
    conv.experimental_mlir_quantizer = True
    conv._experimental_calibrate_only = True
    calibrated = conv.convert()
    new, rec = ranges.search_ranges(calibrated, calib, method="percentile", images=12)
    assert rec["changed"] >= 1 and rec["median_width_ratio"] < 1
    before, after = ranges.recorded_ranges(calibrated), ranges.recorded_ranges(new)
    assert all(after[t][1] <= before[t][1] and after[t][0] >= before[t][0] for t in before)
    out = quantize_calibrated(new, tmp_path / "q.tflite")
    assert out.stat().st_size > 0
    with pytest.raises(Exception, match="unknown range method"):
        ranges.search_ranges(calibrated, calib, method="nope")
