"""The bench runs and reports every figure (speed targets are checked by `make bench`, not here)."""

from toolchain.render.stage_timing import format_bench, run_bench


def test_bench_small():
    r = run_bench(sizes={"tiny": (120, 160)}, repeats=1)
    t = r["tiny"]
    for k in (
        "copy_ms",
        "baseline_ms",
        "golden_ms",
        "golden_depth_ms",
        "device_ms",
        "device_depth_ms",
        "golden_ratio",
        "device_ratio",
        "golden_guided_ms",
        "device_vs_golden",
    ):
        assert t[k] >= 0
    text = format_bench(r)
    assert "tiny" in text and "device / golden" in text and r["host"] in text
