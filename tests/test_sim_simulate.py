"""The simulator's frame loop (toolchain/sim/simulate.py) on the sample sequences with a tiny bundle,
and its handling of bad input: dropped, late and mismatched frames, wrong sizes, missing bundles."""

import json
import shutil

import cv2
import pytest
from sim_fixtures import tiny_bundle

from toolchain.depth.sequence import load_sequence
from toolchain.errors import InputError
from toolchain.sim import simulate

SEQ = simulate.SEQUENCES_DIR / "cat_turn"


def _copy_seq(tmp_path, n=4):
    """The first n frames of cat_turn in a folder we may break."""
    dst = tmp_path / "seq"
    dst.mkdir()
    meta = json.loads((SEQ / "meta.json").read_text())
    meta["frames"] = meta["frames"][:n]
    for fm in meta["frames"]:
        for k in ("rgb", "depth16", "alpha", "depth_gt"):
            shutil.copy(SEQ / fm[k], dst / fm[k])
    (dst / "meta.json").write_text(json.dumps(meta))
    return dst, meta


def test_simulation_end_to_end_writes_frames_gif_and_summary(tmp_path):
    s = simulate.simulate_sequence(
        SEQ, tiny_bundle(), profiles=["flagship", "midrange"], out_dir=tmp_path / "o", max_frames=4
    )
    assert s["frames_simulated"] == 4 and len(s["frames"]) == 4
    assert sorted((tmp_path / "o" / "frames").glob("*.png"))[3].name == "frame_0003.png"
    assert (tmp_path / "o" / "cat_turn.gif").stat().st_size > 0
    saved = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert saved["profiles"].keys() == {"flagship", "midrange"}
    for st in simulate.STAGES:
        assert s["host_ms_mean"][st] > 0
    for p in s["profiles"].values():
        assert p["frame"]["fps"] > 0 and p["memory_bytes"] > s["memory"]["tensor_arena_estimate"]["total"]
        assert isinstance(p["frame"]["misses_budget"], bool)
    assert all(isinstance(f["host_misses_budget"], bool) for f in s["frames"])
    assert set(s["quality"]) >= {"raw", "smoothed"}
    assert "frames over 33 ms" in simulate.format_summary(s)


def test_reference_kernels_are_selectable(tmp_path):
    s = simulate.simulate_sequence(
        SEQ, tiny_bundle(), profiles=["flagship"], kernels="reference", max_frames=1, compare_smoothing=False
    )
    assert s["kernels"] == "reference"


def test_pairing_handles_dropped_and_late_depth():
    seq = load_sequence(SEQ)
    pairs, st = simulate.pair_frames(seq)
    assert st["depth_fresh"] == len(seq) and all(p.tof_index == p.rgb_index for p in pairs)
    pairs, st = simulate.pair_frames(seq, drop_tof={3, 4, 5, 6, 7}, late_tof={10: 50.0})
    kinds = [p.depth for p in pairs]
    assert kinds[3:8] == ["held", "held", "held", "none", "none"]  # held up to 3 frames, then mask-only
    assert kinds[10] == "held" and kinds[11] == "fresh"  # arrived too late for frame 10
    assert st["depth_none"] == 2


def test_mismatched_and_non_increasing_timestamps_are_clear_errors(tmp_path):
    d, meta = _copy_seq(tmp_path)
    for fm in meta["frames"]:
        fm["tof_timestamp_ns"] += 5_000_000_000  # ToF on another clock
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="no ToF frame is within") as e:
        simulate.pair_frames(load_sequence(d))
    assert "one clock" in e.value.fix
    meta["frames"][2]["rgb_timestamp_ns"] = meta["frames"][1]["rgb_timestamp_ns"]
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="RGB timestamps do not increase at frame 2"):
        simulate.pair_frames(load_sequence(d))


def test_dropped_rgb_frames_are_counted(tmp_path):
    d, meta = _copy_seq(tmp_path)
    for fm in meta["frames"][2:]:
        fm["rgb_timestamp_ns"] += 66_666_666
        fm["tof_timestamp_ns"] += 66_666_666
    (d / "meta.json").write_text(json.dumps(meta))
    _, st = simulate.pair_frames(load_sequence(d))
    assert st["dropped_rgb_frames"] == 2


def test_wrong_frame_size_and_missing_frame_are_clear_errors(tmp_path):
    d, meta = _copy_seq(tmp_path, n=2)
    img = cv2.imread(str(d / meta["frames"][1]["rgb"]))
    cv2.imwrite(str(d / meta["frames"][1]["rgb"]), cv2.resize(img, (320, 240)))
    with pytest.raises(InputError, match="frame 1: RGB is 320x240"):
        simulate.simulate_sequence(d, tiny_bundle(), profiles=["flagship"], compare_smoothing=False)
    (d / meta["frames"][1]["depth16"]).unlink()
    with pytest.raises(InputError, match="frame 1: file .* is missing"):
        simulate.simulate_sequence(d, tiny_bundle(), profiles=["flagship"])


def test_no_bundle_says_to_export_first(tmp_path):
    with pytest.raises(InputError) as e:
        simulate.find_bundle(tmp_path)
    assert "make export-int8" in e.value.fix


def test_module_cli_runs(tmp_path, capsys):
    from device_sim.__main__ import main

    d, _ = _copy_seq(tmp_path, n=2)
    assert main(["sim", "--sequence", str(d), "--bundle", str(tiny_bundle()), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "flagship" in out and "midrange" in out and "fps" in out
