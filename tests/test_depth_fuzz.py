"""Property-based fuzzing of the photo readers and DEPTH16 (hypothesis, derandomized).

Every mutated input (bit flips, truncation, insertions/deletions, corrupted XMP and headers) must end in
a valid result or the project's error (toolchain.errors), never an uncaught exception, and no reader
call may take longer than 2 s. The main test runs >= 1,000 inputs from small generated fixtures in
the iPhone (MPF + Apple XMP) and GDepth layouts and raw DEPTH16 frames; a second one mutates the real
photos in ../shared (fewer inputs: each read decodes a 3-12 MP JPEG). experiments/fuzz_depth_readers.py
runs the long campaign on the real files and reports counts.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from toolchain.depth import photo_fixtures as pf
from toolchain.depth.depth16 import encode_depth16
from toolchain.depth.mutate import Tally, interesting_offsets, judge, mutate, photo_readers
from toolchain.depth.readers import read_depth16_photo, read_depth_photo

LIMIT_S = 2.0
POS = st.integers(0, 2**31 - 1)
BLOB = st.binary(min_size=1, max_size=12)
OP = st.one_of(
    st.tuples(st.just("flip"), POS, st.integers(0, 7)),
    st.tuples(st.just("truncate"), POS),
    st.tuples(st.just("overwrite"), POS, BLOB),
    st.tuples(st.just("insert"), POS, BLOB),
    st.tuples(st.just("delete"), POS, st.integers(1, 64)),
    st.tuples(st.just("target"), POS, st.integers(0, 95), BLOB),
)
OPS = st.lists(OP, min_size=1, max_size=3)
FUZZ = dict(
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=4 * LIMIT_S),
    phases=[Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


def _fixture_seeds() -> list[tuple[str, bytes]]:
    return [
        ("iphone", pf.apple_portrait(48, 64, aux_scale=2).data),
        ("iphone-rot6", pf.apple_portrait(48, 64, orientation=6, planes=("disparity", "matte")).data),
        ("gdepth-inverse", pf.gdepth(48, 64, chunk=1200).data),
        ("gdepth-linear", pf.gdepth(48, 64, fmt="RangeLinear", confidence=False, orientation=8, chunk=900).data),
    ]


def _depth16_seed() -> tuple[bytes, int, int, int]:
    w, h, stride = 8, 6, 24
    rng = np.random.default_rng(0)
    frame = encode_depth16(rng.integers(0, 8192, (h, w)), rng.random((h, w)))
    buf = np.zeros((h, stride), np.uint8)
    buf[:, : 2 * w] = frame.astype("<u2").view(np.uint8).reshape(h, 2 * w)
    return buf.tobytes(), w, h, stride


def _report(tally: Tally, what: str) -> str:
    return (
        f"{what}: {tally.inputs} mutated inputs, {tally.calls} reader calls, outcomes {tally.outcomes}, "
        f"max {tally.max_seconds:.3f} s per call, {tally.over_limit} over {LIMIT_S} s"
    )


def test_fuzz_fixtures_and_depth16(tmp_path):
    seeds = _fixture_seeds()
    offsets = {name: interesting_offsets(data) for name, data in seeds}
    d16, w16, h16, s16 = _depth16_seed()
    tally = Tally()
    work = tmp_path / "m.jpg"

    @settings(max_examples=1100, **FUZZ)
    @given(
        k=st.integers(0, len(seeds)),
        ops=OPS,
        dims=st.tuples(st.integers(-1, 12), st.integers(-1, 10), st.sampled_from([None, 15, 16, 24, 40])),
    )
    def run(k, ops, dims):
        if k == len(seeds):  # DEPTH16: mutated bytes, and sometimes the wrong frame size / stride
            p = tmp_path / "m.depth16"
            p.write_bytes(mutate(d16, ops))
            tally.inputs += 1
            w, h, s = (w16, h16, s16) if ops[0][0] != "overwrite" else dims
            tally.add(judge(read_depth16_photo, p, w, h, s), LIMIT_S, f"depth16 {ops!r} {(w, h, s)}")
            return
        name, data = seeds[k]
        work.write_bytes(mutate(data, ops, offsets[name]))
        tally.inputs += 1
        for rname, fn in photo_readers():
            tally.add(judge(fn, work), LIMIT_S, f"{name} {rname} {ops!r}")

    run()
    print("\n" + _report(tally, "fixtures + DEPTH16"))
    assert tally.inputs >= 1000, _report(tally, "too few inputs")
    assert tally.outcomes.get("uncaught", 0) == 0 and tally.outcomes.get("invalid", 0) == 0, "\n".join(
        tally.uncaught_examples
    )
    assert tally.over_limit == 0, _report(tally, "slow")
    assert tally.outcomes.get("error", 0) > 100 and tally.outcomes.get("valid", 0) > 100  # both paths exercised


@pytest.mark.shared
def test_fuzz_real_photos(shared_depth_photos, tmp_path):
    seeds = [(p.name, p.read_bytes()) for p in shared_depth_photos]
    offsets = {name: interesting_offsets(data) for name, data in seeds}
    tally = Tally()
    work = tmp_path / "m.jpg"

    @settings(max_examples=36, **FUZZ)
    @given(k=st.integers(0, len(seeds) - 1), ops=OPS)
    def run(k, ops):
        name, data = seeds[k]
        work.write_bytes(mutate(data, ops, offsets[name]))
        tally.inputs += 1
        tally.add(judge(read_depth_photo, work, require_depth=False), LIMIT_S, f"{name} {ops!r}")

    run()
    print("\n" + _report(tally, "real photos"))
    assert tally.outcomes.get("uncaught", 0) == 0 and tally.outcomes.get("invalid", 0) == 0, "\n".join(
        tally.uncaught_examples
    )
    assert tally.over_limit == 0, _report(tally, "slow")


def test_mutations_are_deterministic():
    data = bytes(range(256)) * 4
    ops = [("flip", 5, 3), ("target", 0, 3, b"xyz"), ("delete", 1000, 5), ("insert", 7, b"ab"), ("truncate", 900)]
    assert mutate(data, ops) == mutate(data, ops) and len(mutate(data, ops)) == 900
    assert mutate(data, [("flip", 1, 0)])[1] == 0
