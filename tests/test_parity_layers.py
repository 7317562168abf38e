"""Per-layer comparison: known answers for the error attribution, the culprit finder on a layer
damaged on purpose, and matching when tensor names differ."""

import math

import pytest
from parity_fixtures import build_tiny_pair, damage_scale, rename_tensors

from toolchain.parity import layers
from toolchain.quantize import tensor_types


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return build_tiny_pair(tmp_path_factory.mktemp("parity_layers"))


def test_attribution_known_answers():
    rows = [
        {"name": "a", "nsr": 0.01, "inputs": []},
        {"name": "b", "nsr": 0.03, "inputs": ["a"]},
        {"name": "c", "nsr": 0.02, "inputs": ["b"]},  # clips noise away: adds nothing
        {"name": "d", "nsr": 0.05, "inputs": ["a", "c"]},
    ]  # inherits the larger input's 0.02
    layers.attribute_output_error(rows)
    added = [r["added_nsr"] for r in rows]
    assert added == pytest.approx([0.01, 0.02, -0.01, 0.03])
    assert [r["output_error_share"] for r in rows] == pytest.approx([1 / 6, 2 / 6, 0.0, 3 / 6])


def test_every_layer_has_the_metrics(pair):
    res = layers.compare_layers(pair.float_path, pair.int8_path, pair.images)
    n_ops = len(tensor_types(pair.float_path))
    assert res["matched"] == {"name": n_ops, "order": 0, "unmatched_float_ops": 0}
    for r in res["layers"]:
        assert {"rmse", "rmse_over_scale", "snr_db", "cosine", "max_abs_error", "output_error_share"} <= set(r)
        assert r["quantized"] and r["scale"] > 0 and 0 <= r["output_error_share"] <= 1
        assert r["snr_db"] > 10 and r["cosine"] > 0.9  # healthy int8
    assert math.isclose(sum(r["output_error_share"] for r in res["layers"]), 1.0)
    table = layers.format_table(res)
    assert all(r["name"][:60] in table for r in res["layers"])


def _target(pair):
    return next(o["outputs"][0] for o in tensor_types(pair.float_path) if o["op"] == "DEPTHWISE_CONV_2D")


def test_culprit_finder_names_the_damaged_layer(pair, tmp_path):
    target = _target(pair)
    healthy = layers.compare_layers(pair.float_path, pair.int8_path, pair.images)
    assert healthy["culprits"][0] != target  # otherwise the test would prove nothing
    bad = damage_scale(pair.int8_path, tmp_path / "damaged.tflite", target)
    res = layers.compare_layers(pair.float_path, bad, pair.images)
    assert res["culprits"][0] == target
    row = next(r for r in res["layers"] if r["name"] == target)
    before = next(r for r in healthy["layers"] if r["name"] == target)
    assert row["snr_db"] < before["snr_db"] - 15 and row["output_error_share"] > 0.5


def test_matching_by_order_when_names_differ(pair, tmp_path):
    target = _target(pair)
    renamed = rename_tensors(damage_scale(pair.int8_path, tmp_path / "d.tflite", target), tmp_path / "r.tflite")
    res = layers.compare_layers(pair.float_path, renamed, pair.images)
    assert res["matched"]["name"] == 0 and res["matched"]["unmatched_float_ops"] == 0
    assert res["culprits"][0] == target  # named after the float file
