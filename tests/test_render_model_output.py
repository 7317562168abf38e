"""Model output -> subject probability: golden (float32) and device (float16 -> Q8) decoders."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolchain.errors import InputError
from toolchain.render.model_output import (
    decode_probability,
    decode_probability_q8,
    normalize_spec,
    simulate_model_output,
)


def test_multiclass_logits_softmax_sums_foreground():
    x = np.zeros((1, 4, 4, 21), np.float32)
    x[..., 15] = 2.0
    x[..., 8] = 1.0
    p = decode_probability(x, {"kind": "logits", "foreground_classes": [15, 8]})
    e = np.exp([2.0, 1.0, 0.0])
    assert np.allclose(p, (e[0] + e[1]) / (e[0] + e[1] + 19 * e[2]), atol=1e-6)


def test_int8_logits_dequantized_like_float():
    alpha = np.zeros((64, 64), np.float32)
    alpha[16:48, 16:48] = 1
    f, spec_f = simulate_model_output(alpha, size=(32, 32), seed=1)
    q, spec_q = simulate_model_output(alpha, size=(32, 32), seed=1, dtype="int8")
    assert q.dtype == np.int8 and spec_q["dtype"] == "int8"
    assert np.abs(decode_probability(f, spec_f) - decode_probability(q, spec_q)).max() < 0.05


def test_single_channel_sigmoid_probabilities_labels_and_nchw():
    lg = np.array([[-2.0, 0.0], [2.0, 40.0]], np.float32)
    assert np.allclose(decode_probability(lg, {"kind": "logits"}), 1 / (1 + np.exp(-np.clip(lg, -30, 30))))
    pr = np.array([[0.2, 0.7]], np.float32)
    assert np.allclose(decode_probability(pr, {"kind": "probabilities"}), pr)
    lab = np.array([[0, 15, 8, 3]])
    assert decode_probability(lab, {"kind": "labels"}).tolist() == [[0, 1, 1, 0]]
    x = np.random.default_rng(0).normal(size=(1, 21, 5, 6)).astype(np.float32)
    a = decode_probability(x, {"kind": "logits", "layout": "NCHW"})
    b = decode_probability(np.moveaxis(x, 1, -1), {"kind": "logits"})
    assert np.allclose(a, b)


def test_bad_spec_is_input_error():
    with pytest.raises(InputError):
        normalize_spec({"kind": "heatmap"})
    with pytest.raises(InputError):
        decode_probability(np.zeros((4, 4, 3)), {"kind": "logits", "foreground_classes": [15]})
    with pytest.raises(InputError):
        decode_probability(np.zeros((2, 4, 4, 3)), {"kind": "logits"})


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["float32", "int8"]), st.floats(0.2, 3.0))
def test_device_decode_within_one_level(seed, dtype, noise):
    rng = np.random.default_rng(seed)
    alpha = (rng.random((40, 40)) > 0.5).astype(np.float32)
    out, spec = simulate_model_output(alpha, size=(20, 20), seed=seed, dtype=dtype, noise=noise)
    g = decode_probability(out, spec) * 255
    d = decode_probability_q8(out, spec).astype(np.float32)
    assert np.abs(g - d).max() <= 1.5
