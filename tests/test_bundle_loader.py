"""Issue 28: the bundle loader (schema, references, SHA-256 before any runtime), `portrait verify` on a
broken contract, every consumer's error on a damaged bundle, and stale staging folders of killed exports.
Runs on the tiny exported bundle (tests/sim_fixtures.py); no ../shared needed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from sim_fixtures import copy_bundle

from toolchain import bundle
from toolchain.bundle_loader import inspect, list_bundles, open_bundle
from toolchain.cli import main as cli
from toolchain.errors import BundleError, InputError
from toolchain.evaluate.accuracy import evaluate
from toolchain.handoff import verify as verify_mod
from toolchain.sim.simulate import sample_sequences, simulate_sequence

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def b(tmp_path):
    return copy_bundle(tmp_path)


@pytest.fixture
def photo(tmp_path):
    import cv2

    p = tmp_path / "p.png"
    cv2.imwrite(str(p), np.full((48, 64, 3), 128, np.uint8))
    return p


def _edit_manifest(b: Path, fn) -> None:
    m = json.loads((b / "manifest.json").read_text())
    fn(m)
    (b / "manifest.json").write_text(json.dumps(m, indent=2))


def _three_damages(b: Path, kind: str) -> tuple[str, str]:
    """The issue's three damaged copies -> (file, text the error must carry)."""
    if kind == "dangling_handoff":
        _edit_manifest(b, lambda m: m.update(handoff="nonexistent.tflite"))
        return "manifest.json", "nonexistent.tflite"
    if kind == "truncated":
        name = json.loads((b / "manifest.json").read_text())["handoff_cpu"]
        p = b / name
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])  # the tiny files are < 100 kB: half of one
        return name, "truncated"
    (b / "manifest.json").write_text((b / "manifest.json").read_text()[:500])
    return "manifest.json", "not valid JSON"


def test_a_clean_bundle_opens(b):
    opened = open_bundle(b)
    assert opened.model_id == "tiny" and opened.goldens["vectors"] and opened.handoff in opened.manifest["models"]
    assert not inspect(b).damages
    assert opened.path("labels.txt").is_file()
    with pytest.raises(InputError):
        opened.path("not-listed.bin")


@pytest.mark.parametrize("kind", ["dangling_handoff", "truncated", "not_json"])
def test_the_three_damaged_copies_fail_verify_and_every_consumer(kind, b, photo, tmp_path, capsys):
    file, text = _three_damages(b, kind)
    with pytest.raises(BundleError) as e:
        open_bundle(b)
    assert e.value.file == file and text in str(e.value) and e.value.fix
    assert cli(["verify", str(b), "--no-mediapipe"]) == 1
    out = capsys.readouterr()
    assert "RESULT: FAIL" in out.out and f"FAIL    {file}" in out.out and text in out.out
    assert "Traceback" not in out.err + out.out
    dev = tmp_path / "dev"
    dev.mkdir()
    for args in (
        ["render", "--model", str(b), "--image", str(photo), "--out", str(tmp_path / "o.png")],
        ["check", "--bundle", str(b), "--device-outputs", str(dev)],
        ["pack", str(b), "--out", str(tmp_path / "zips")],
    ):
        assert cli(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith(f"error: {file}") and text in err and "what to do:" in err, (args, err)
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "zips").exists()


def test_sim_and_evaluate_name_the_damage(b, tmp_path):
    _three_damages(b, "truncated")
    with pytest.raises(BundleError, match="truncated"):
        simulate_sequence(sample_sequences()[0], b, out_dir=tmp_path / "sim", max_frames=1)
    with pytest.raises(BundleError, match="truncated"):
        evaluate(b, tmp_path / "no-dataset-needed")


def test_unlisted_file_and_changed_checksum_fail_verify(b):
    (b / "notes.txt").write_text("hello")
    report = verify_mod.verify(b, mediapipe=False)
    assert not report.passed and [(c.file, c.field) for c in report.failures] == [("notes.txt", "files")]
    (b / "notes.txt").unlink()
    p = b / "labels.txt"
    p.write_bytes(p.read_bytes().replace(b"a", b"e", 1))  # same size, other content
    report = verify_mod.verify(b, mediapipe=False)
    assert [(c.file, c.field) for c in report.failures] == [("labels.txt", "files[].sha256")]


def test_no_runtime_opens_a_file_before_integrity_passes(b, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a runtime opened a file of a damaged bundle")

    monkeypatch.setattr(verify_mod, "_interpreter", boom)
    monkeypatch.setattr(verify_mod, "read_metadata", boom)
    monkeypatch.setattr(verify_mod.client, "call", boom)
    name = json.loads((b / "manifest.json").read_text())["handoff"]
    with open(b / name, "r+b") as f:  # one bit, same size: only the SHA-256 sees it
        f.seek(100)
        c = f.read(1)
        f.seek(100)
        f.write(bytes([c[0] ^ 1]))
    report = verify_mod.verify(b)
    assert not report.passed and report.failures[0].file == name and report.failures[0].field == "files[].sha256"


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda m: m.pop("task"), "task"),
        (lambda m: m["input"].update(size="33x33"), "input.size"),
        (lambda m: m.update(models={k + "x": v for k, v in m["models"].items()}), "handoff"),  # the first damage
        (lambda m: m["files"][min(m["files"])].update(bytes="12"), "bytes"),
        (lambda m: m.update(model_id="other"), "models"),
        (lambda m: m["files"].update({"../escape.bin": {"sha256": "0" * 64, "bytes": 1}}), "files"),
    ],
)
def test_manifest_schema_and_references_name_the_field(b, edit, field):
    _edit_manifest(b, edit)
    with pytest.raises(BundleError) as e:
        open_bundle(b)
    assert e.value.file == "manifest.json" and field in e.value.field, str(e.value)


def test_goldens_index_is_checked_even_when_re_recorded(b):
    g = json.loads((b / "goldens" / "goldens.json").read_text())
    g["vectors"][0]["expected"] = {k: {**r, "file": "ghost.npy"} for k, r in g["vectors"][0]["expected"].items()}
    (b / "goldens" / "goldens.json").write_text(json.dumps(g))
    _edit_manifest(
        b, lambda m: m["files"].update({"goldens/goldens.json": bundle.file_record(b / "goldens/goldens.json")})
    )
    with pytest.raises(BundleError) as e:
        open_bundle(b)
    assert (
        e.value.file == "goldens/goldens.json"
        and "vectors[0].expected" in e.value.field
        and "ghost.npy" in str(e.value)
    )


def test_a_zip_opens_and_a_damaged_zip_is_named(b, tmp_path):
    from toolchain.handoff.pack import pack

    z = pack(b, tmp_path / "zips", verify=False)
    with open_bundle(z) as opened:
        assert opened.from_zip and opened.model_id == "tiny" and opened.root.is_dir()
        root = opened.root
    assert not root.exists()  # the unpacked copy goes with the handle
    import zipfile

    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(z) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info, data + b"x" if info.filename.endswith("labels.txt") else data)
    with pytest.raises(BundleError, match="labels.txt"):
        open_bundle(bad)


# ---------------------------------------------------------------- staging folders of killed exports

_WRITER = textwrap.dedent("""
    import os, signal, sys, time
    from pathlib import Path
    from toolchain.bundle import write_bundle
    out, mid, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    src = out.parent / "src.bin"
    src.write_bytes(b"model")
    def finalize(staged):
        (staged / "goldens").mkdir()
        (staged / "goldens" / "g.json").write_text("{}")
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "wait":
            (out.parent / "ready").write_text(str(staged))
            while not (out.parent / "go").exists():
                time.sleep(0.05)
    write_bundle(out, mid, {mid + "_int8.tflite": src}, {"model_id": mid}, finalize=finalize)
""")


def _writer(tmp_path: Path, mid: str, mode: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path / "out"), mid, mode], env=env)


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith("."))


def test_a_killed_export_leaves_a_staging_folder_nobody_takes_for_a_bundle_and_the_next_export_removes_it(tmp_path):
    proc = _writer(tmp_path, "m", "kill")
    assert proc.wait(60) == -signal.SIGKILL
    out = tmp_path / "out"
    left = _leftovers(out)
    staging = next(out / n for n in left if not n.endswith(".lock"))
    assert staging.name.startswith(".m.staging-") and (staging / "manifest.json").is_file()
    assert list_bundles(out) == []
    with pytest.raises(InputError, match="staging folder"):
        open_bundle(staging)
    with pytest.raises(InputError, match="staging folder"):
        verify_mod.verify(staging)
    assert cli(["verify", str(staging), "--no-mediapipe"]) == 2
    src = tmp_path / "x.bin"
    src.write_bytes(b"x")
    bundle.write_bundle(out, "other", {"other_int8.tflite": src}, {"model_id": "other"})  # the next export
    assert _leftovers(out) == [] and [p.name for p in list_bundles(out)] == ["other"]


def test_a_live_export_s_staging_folder_is_left_alone(tmp_path):
    proc = _writer(tmp_path, "m", "wait")
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "ready").exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        staging = Path((tmp_path / "ready").read_text())
        out = tmp_path / "out"
        assert bundle.remove_stale_staging(out) == [] and staging.is_dir()  # its lock is held
        src = tmp_path / "x.bin"
        src.write_bytes(b"x")
        bundle.write_bundle(out, "other", {"other_int8.tflite": src}, {"model_id": "other"})  # a concurrent export
        assert staging.is_dir()
        (tmp_path / "go").write_text("")
        assert proc.wait(60) == 0
    finally:
        proc.kill()
    assert _leftovers(tmp_path / "out") == []
    assert [p.name for p in list_bundles(tmp_path / "out")] == ["m", "other"]


def test_a_previous_bundle_whose_replacement_never_came_is_restored(tmp_path):
    out = tmp_path / "out"
    old = out / ".m.old-abc123"  # killed between the two renames of the swap: no lock, no m/
    old.mkdir(parents=True)
    (old / "manifest.json").write_text("{}")
    (out / ".m.staging-abc123").mkdir()
    assert list_bundles(out) == []
    done = bundle.remove_stale_staging(out)
    assert (out / "m" / "manifest.json").is_file() and _leftovers(out) == [], done
