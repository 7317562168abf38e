"""Automatic mixed precision on a tiny model: shortfall arithmetic, name mapping, a budget the
search can meet with a few float layers, and one nothing can meet (explained)."""

import pytest
from parity_fixtures import tiny_search, tiny_search_setup

from toolchain import quantize
from toolchain.parity import mixed


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return tiny_search_setup(tmp_path_factory.mktemp("parity_mixed"))


def test_shortfall_known_answers():
    budgets = {"pixel_agreement_min": 0.99, "mean_abs_diff_max": 0.02}
    assert mixed.shortfall({"pixel_agreement": 0.995, "mean_abs_diff": 0.01}, budgets) == 0
    assert mixed.shortfall({"pixel_agreement": 0.9801, "mean_abs_diff": 0.03}, budgets) == pytest.approx(0.01 + 0.5)
    assert mixed.shortfall({"pixel_agreement": float("nan")}, budgets) == 0  # no figure, no judgement


def test_map_names_exact_and_fused():
    names = ["mul", "Relu_2;BiasAdd_53", "Conv2D_361"]
    assert mixed.map_names(["mul", "Relu_2;BiasAdd_53;Conv2D_36;BiasAdd_53/bias1", "concat"], names) == [
        "mul",
        "Relu_2;BiasAdd_53",
    ]


def test_selective_quantization_keeps_named_layers_float(setup, tmp_path):
    pair, calibrated, ranking, _ = setup
    out = quantize.quantize_calibrated(calibrated, tmp_path / "m.tflite", float_layers=[ranking[0]])
    floats = [o for o in quantize.float_ops(out) if o["op"] not in ("QUANTIZE", "DEQUANTIZE")]
    assert [o["outputs"][0] for o in floats] == [ranking[0]]
    assert not quantize.float_ops(quantize.quantize_calibrated(calibrated, tmp_path / "p.tflite"))


def _search(setup, tmp_path, budget, cap=16):
    return tiny_search(*setup, tmp_path, budget, cap=cap)


def test_search_meets_a_budget_between_int8_and_float(setup, tmp_path):
    probe = _search(setup, tmp_path, 2.0, cap=3)  # out of reach: reports plain int8 and the ceiling
    base = probe["before"]["figures"]["pixel_agreement"]
    ceiling = probe["ceiling"]["figures"]["pixel_agreement"]
    assert ceiling > base, "the tiny model must lose pixels to int8 for this test to mean anything"
    rec = _search(setup, tmp_path, (base + ceiling) / 2)
    assert rec["met"] and 0 < len(rec["float_layers"]) < rec["layers_in_model"]
    after, before = rec["after"]["figures"], rec["before"]["figures"]
    assert after["pixel_agreement"] >= (base + ceiling) / 2 > before["pixel_agreement"]
    assert rec["conversions"] <= 16 and (tmp_path / "mixed.tflite").is_file()
    assert set(rec["float_ops"]) and "budget met" in rec["message"]


def test_search_explains_an_unreachable_budget(setup, tmp_path):
    rec = _search(setup, tmp_path, 1.01)
    assert not rec["met"] and rec["conversions"] == 2
    assert "no layer set can meet the budget" in rec["message"] and "pixel_agreement" in rec["message"]
    assert rec["after"]["figures"]["pixel_agreement"] == rec["ceiling"]["figures"]["pixel_agreement"]


def test_ceiling_is_all_float_on_the_tiny_model(setup, tmp_path):
    rec = _search(setup, tmp_path, 1.01)
    assert rec["ceiling"]["kept_int8_by_converter"] == []
