"""DEPTH16 codec: exact round trip, Android's confidence definition, stride, truncated files."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from toolchain.depth.depth16 import (
    CONF_TABLE,
    MAX_RANGE_MM,
    decode_depth16,
    encode_depth16,
    read_depth16,
    write_depth16,
)
from toolchain.errors import InputError

REPRESENTABLE = [1.0, 0.0] + [(c - 1) / 7 for c in range(2, 8)]


def test_confidence_definition():
    # code 0 -> 100 %, 1 -> 0 %, k > 1 -> (k - 1) / 7
    words = (np.arange(8, dtype=np.uint16) << 13) | 1234
    rng, conf = decode_depth16(words)
    assert (rng == 1234).all()
    assert conf.tolist() == pytest.approx([1.0, 0.0, 1 / 7, 2 / 7, 3 / 7, 4 / 7, 5 / 7, 6 / 7])
    assert CONF_TABLE[0] == 1.0 and CONF_TABLE[1] == 0.0


def test_every_word_round_trips():
    words = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    r, c = decode_depth16(words)
    assert np.array_equal(encode_depth16(r, c), words)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.uint16, hnp.array_shapes(min_dims=2, max_dims=2, max_side=12), elements=st.integers(0, MAX_RANGE_MM)),
    st.data(),
)
def test_round_trip_exact(range_mm, data):
    conf = data.draw(hnp.arrays(np.float64, range_mm.shape, elements=st.sampled_from(REPRESENTABLE)))
    r, c = decode_depth16(encode_depth16(range_mm, conf))
    assert np.array_equal(r, range_mm)
    assert np.allclose(c, conf, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(st.floats(0.0, 1.0))
def test_confidence_rounds_to_nearest_seventh(c):
    _, got = decode_depth16(encode_depth16(np.array([100], np.uint16), np.array([c])))
    assert abs(got[0] - c) <= 1 / 14 + 1e-6


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.uint16, hnp.array_shapes(min_dims=2, max_dims=2, max_side=9)), st.integers(0, 6))
def test_file_round_trip_with_stride(tmp_path_factory, frame, pad_words):
    h, w = frame.shape
    p = tmp_path_factory.mktemp("d16") / "f.depth16"
    stride = 2 * (w + pad_words)
    n = write_depth16(p, frame, stride_bytes=stride)
    assert n == stride * h == p.stat().st_size
    assert np.array_equal(read_depth16(p, w, h, stride_bytes=stride), frame)


def test_last_row_without_padding_is_accepted(tmp_path):
    frame = np.arange(12, dtype=np.uint16).reshape(3, 4)
    p = tmp_path / "f.depth16"
    write_depth16(p, frame, stride_bytes=16)
    p.write_bytes(p.read_bytes()[:-8])
    assert np.array_equal(read_depth16(p, 4, 3, stride_bytes=16), frame)


def test_truncated_file_names_sizes(tmp_path):
    p = tmp_path / "f.depth16"
    write_depth16(p, np.zeros((10, 20), np.uint16))
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(InputError, match=r"expected 400 bytes.*got 100"):
        read_depth16(p, 20, 10)


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="8191"):
        encode_depth16(np.array([9000]), 1.0)
    with pytest.raises(InputError, match="confidence"):
        encode_depth16(np.array([10]), np.array([1.5]))
    with pytest.raises(InputError, match="stride"):
        write_depth16(tmp_path / "x", np.zeros((2, 4), np.uint16), stride_bytes=6)
    with pytest.raises(InputError, match="not found"):
        read_depth16(tmp_path / "missing.depth16", 4, 2)
    with pytest.raises(InputError, match="uint16"):
        decode_depth16(np.zeros(3, np.int32))
