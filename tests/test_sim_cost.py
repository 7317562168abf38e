"""Device profiles and the per-op cost model (toolchain/sim/cost.py)."""

import numpy as np
import pytest
from sim_fixtures import tiny_bundle

from toolchain.errors import InputError
from toolchain.sim import cost


@pytest.fixture(scope="module")
def int8_model():
    return tiny_bundle() / "tiny_int8.tflite"


def test_profiles_load_and_every_figure_has_a_source():
    names = cost.profile_names()
    assert {"flagship", "midrange"} <= set(names)
    for n in names:
        p = cost.load_profile(n)
        d = p.data
        assert d["cpu"]["cores"] >= 4 and d["cpu"]["int8_gmacs"] > 0 and d["cpu"]["fp16_gmacs"] > 0
        assert d["memory"]["bandwidth_gbs"] > 0 and d["memory"]["budget_mb"] > 0
        assert isinstance(d["npu"]["present"], bool)
        for key in (
            "cpu.clusters",
            "cpu.int8_gmacs",
            "cpu.fp16_gmacs",
            "memory.bandwidth_gbs",
            "memory.budget_mb",
            "npu.ops",
        ):
            assert d["sources"].get(key), f"{n}: {key} has no source"
        # derived peak figures agree with the cluster table they are derived from
        cl = sorted(d["cpu"]["clusters"], key=lambda c: -c["ghz"] * c["int8_macs_per_cycle"])
        threads, peak = d["cpu"]["threads"], 0.0
        for c in cl:
            k = min(c["count"], threads)
            peak += k * c["ghz"] * c["int8_macs_per_cycle"]
            threads -= k
        assert peak == pytest.approx(d["cpu"]["int8_gmacs"], rel=0.02)


def test_unknown_or_unsourced_profile_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        cost.load_profile("no_such_phone")
    src = (cost.PROFILES_DIR / "flagship.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(src.replace('"memory.bandwidth_gbs" =', '"memory.bandwidth_gbs_x" ='))
    with pytest.raises(InputError, match="no source"):
        cost.load_profile(bad)


def test_macs_and_bytes_from_the_flatbuffer(int8_model):
    from toolchain.sources.tflite_graph import read_tflite

    costs = cost.op_costs(int8_model)
    g = read_tflite(int8_model)
    assert len(costs) == len(g.ops)
    conv = next(c for c in costs if c.op == "CONV_2D")
    op = g.ops[conv.index]
    w, o = g.tensors[op.inputs[1]], g.tensors[op.outputs[0]]
    assert conv.macs == int(np.prod(o.shape)) * w.shape[1] * w.shape[2] * w.shape[3]
    assert conv.bytes >= w.data.nbytes + int(np.prod(o.shape))  # weights read, int8 output written
    assert all(c.int8 for c in costs if c.op in ("CONV_2D", "DEPTHWISE_CONV_2D"))
    arena = cost.arena_bytes(int8_model)
    assert 0 < arena["activations_peak"] < sum(c.bytes for c in costs)
    assert arena["weights"] > 0


def test_roofline_orders_profiles_and_charges_npu_fallback(int8_model):
    costs = cost.op_costs(int8_model)
    flag, mid = cost.load_profile("flagship"), cost.load_profile("midrange")
    ef, em = cost.estimate_model(costs, flag), cost.estimate_model(costs, mid)
    assert 0 < ef["ms"] < em["ms"]
    cpu_only = cost.estimate_model(costs, mid, use_npu=False)
    assert cpu_only["npu_ms"] == 0 and cpu_only["handoffs"] == 0
    # the mid-range NPU does not run RESIZE_BILINEAR or AVERAGE_POOL_2D: they fall back with hand-offs
    assert set(em["cpu_fallback_ops"]) & {"RESIZE_BILINEAR", "AVERAGE_POOL_2D"}
    assert em["handoffs"] >= 2 and em["handoff_ms"] > 0
    fr = cost.estimate_frame(ef, 480 * 360, flag)
    assert set(fr["stages_ms"]) == {"preprocess", "model", "registration", "smoothing", "fused"}
    assert fr["fps"] == pytest.approx(1000 / fr["latency_ms"], rel=0.01)
    assert fr["fps_pipelined"] >= fr["fps"]
