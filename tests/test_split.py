"""Weight splitting (toolchain/quantize/split.py) on a small generated model: the float function is
unchanged, the converter keeps both halves as int8 weights, and 16x8 error drops."""

import numpy as np
from builders import keras_to_tflite
from test_ptq import _int8_of_tflite, _model, _run

from toolchain.quantize import graphedit, split
from toolchain.sources import tflite_graph


def _w8a16_of_tflite(src, path, calib):
    """The float .tflite re-emitted by the importer and converted to 16x8 (as the w8a16 rung does)."""
    import tensorflow as tf

    return _int8_of_tflite(src, path, calib, tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8)


def _ops(path):
    return graphedit.Editable(path).op_names


def test_split_keeps_the_float_function_and_lowers_16x8_error(tmp_path):
    from keras import layers

    def build(x):
        x = layers.Conv2D(8, 3, padding="same", activation="relu", name="a")(x)
        x = layers.DepthwiseConv2D(3, padding="same", name="b")(x)
        return layers.Conv2D(4, 1, name="c")(x)

    model = _model(build, (12, 12, 5), seed=3)
    src = keras_to_tflite(model, tmp_path / "f.tflite")
    rng = np.random.default_rng(1)
    calib = rng.normal(size=(16, 12, 12, 5)).astype(np.float32)
    rec = split.split_weights(src, tmp_path / "split.tflite")
    assert len(rec["split"]) == 3 and not rec["skipped"]
    before, after = _ops(src), _ops(tmp_path / "split.tflite")
    assert after.count("CONV_2D") == 2 * before.count("CONV_2D")
    assert after.count("DEPTHWISE_CONV_2D") == 2 * before.count("DEPTHWISE_CONV_2D")
    assert after.count("ADD") == before.count("ADD") + 3
    ref = _run(src, calib)
    out = _run(tmp_path / "split.tflite", calib)
    assert np.max(np.abs(out - ref)) <= 1e-5 * np.max(np.abs(ref))  # same function, float summation order aside

    plain = _run(_w8a16_of_tflite(src, tmp_path / "plain16.tflite", calib), calib)
    halves = _run(_w8a16_of_tflite(tmp_path / "split.tflite", tmp_path / "split16.tflite", calib), calib)
    err_plain, err_split = np.mean((plain - ref) ** 2), np.mean((halves - ref) ** 2)
    assert err_split < 0.2 * err_plain, (err_split, err_plain)
    # both halves stay int8 weights: the converter reproduces W_hi exactly (same per-channel scale)
    q = tflite_graph.read_tflite(tmp_path / "split16.tflite")
    wq = [t for t in q.tensors if t.data is not None and t.dtype is np.int8 and t.data.ndim == 4]
    assert len(wq) == 6
    ed = graphedit.Editable(src)
    first = ed.convs()[0]
    m = graphedit.weight_matrix(ed.get(first.w), first.kind)
    k = np.round(m / graphedit.channel_scales(m)[:, None]).astype(np.int64)
    assert any(np.array_equal(t.data.reshape(len(k), -1).astype(np.int64), k) for t in wq if t.data.shape[0] == len(k))


def test_split_skips_what_it_cannot_split(tmp_path):
    from keras import layers

    model = _model(lambda x: layers.Conv2D(4, 1, name="a")(x), (6, 6, 3), seed=0)
    src = keras_to_tflite(model, tmp_path / "f.tflite")
    ed = graphedit.Editable(src)
    c = ed.convs()[0]
    w = ed.get(c.w)
    ed.set(c.w, graphedit.from_matrix(graphedit.round_nearest(graphedit.weight_matrix(w, c.kind)), c.kind, w.shape))
    ed.write(tmp_path / "on_grid.tflite")
    rec = split.split_weights(tmp_path / "on_grid.tflite", tmp_path / "s.tflite", layers=[c.op_index, 999])
    assert rec["split"] == []
    assert rec["skipped"] == {
        str(c.op_index): "weights already on the int8 grid",
        "999": "not a float-weight convolution",
    }
