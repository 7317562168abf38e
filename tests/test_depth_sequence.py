"""The committed sample sequences and their reader."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from toolchain.depth.sequence import load_sequence
from toolchain.errors import InputError
from toolchain.paths import REPO_ROOT

SEQ = REPO_ROOT / "device_sim" / "sequences"


@pytest.mark.parametrize("name,label", [("person_walk", "person"), ("cat_turn", "cat")])
def test_committed_sequences(name, label):
    s = load_sequence(SEQ / name)
    assert 25 <= len(s) <= 40
    f = s[len(s) // 2]
    rgb, a, d = f.rgb(), f.alpha(), f.depth_m()
    assert rgb.shape[:2] == a.shape == d.shape == (s.rgb_intrinsics.height, s.rgb_intrinsics.width)
    assert f.label == label and 0 <= a.min() and a.max() <= 1
    rng, conf = f.tof()
    assert rng.shape == (s.tof_intrinsics.height, s.tof_intrinsics.width)
    assert (rng > 0).mean() > 0.3 and conf.max() <= 1
    ts = [fr.rgb_timestamp_ns for fr in s.frames]
    assert np.all(np.diff(ts) > 0)
    assert s.frames[0].tof_timestamp_ns != s.frames[0].rgb_timestamp_ns
    assert 0.008 < np.linalg.norm(s.extrinsics.t) < 0.015


def test_total_size_is_small():
    size = sum(p.stat().st_size for p in SEQ.rglob("*") if p.is_file())
    assert size < 12e6


def test_missing_pieces_are_named(tmp_path):
    d = tmp_path / "cat_turn"
    shutil.copytree(SEQ / "cat_turn", d)
    (d / "tof_0003.depth16").unlink()
    with pytest.raises(InputError, match="frame 3: file tof_0003.depth16 is missing"):
        load_sequence(d)
    meta = json.loads((d / "meta.json").read_text())
    del meta["frames"][2]
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="frame 2 is missing"):
        load_sequence(d)
    (d / "meta.json").unlink()
    with pytest.raises(InputError, match="no meta.json"):
        load_sequence(d)


def test_truncated_depth16_in_sequence(tmp_path):
    d = tmp_path / "cat_turn"
    shutil.copytree(SEQ / "cat_turn", d)
    p = d / "tof_0000.depth16"
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(InputError, match="truncated"):
        load_sequence(d)[0].depth16()
