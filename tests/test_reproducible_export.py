"""Two cold exports of the same sources write byte-identical bundles, the .onnx file included (issue 27).

The offline selfie (the embedded default: no ../shared needed) is exported twice with the export cache off;
every file of the two bundle folders must have the same SHA-256. This run's timings are not in the bundle
(runs/<model_id>.json beside it), and tf2onnx's run-to-run differences are removed by
quantize/onnx_canonical.py.
"""

import hashlib
from pathlib import Path

import pytest

from toolchain.export import export_model, read_run_record


def _hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_two_cold_selfie_exports_are_byte_identical(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTRAIT_EXPORT_CACHE", "0")
    bundles = [export_model("selfie_segmenter", out_root=tmp_path / f"run{i}", quiet=True).bundle for i in (1, 2)]
    first, second = (_hashes(b) for b in bundles)
    assert any(n.endswith(".onnx") for n in first) and "manifest.json" in first
    differ = sorted(n for n in set(first) | set(second) if first.get(n) != second.get(n))
    assert not differ, f"files that differ between two cold exports: {differ}"
    run = read_run_record(tmp_path / "run1", "selfie_segmenter")
    assert run["export_seconds"] > 0 and run["cache"]["enabled"] is False
