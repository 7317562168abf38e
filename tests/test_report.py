"""`portrait report` (docs/results.md) on an offline bundle: a tiny generated model exported end to end,
its bench JSON from `portrait bench` and an evaluation report from `portrait evaluate`, all made here."""

from __future__ import annotations

import json

import pytest
from builders import tiny_segmenter_project

from toolchain.cli import main as cli
from toolchain.export import export_model, split_run_record, write_run_record
from toolchain.handoff import client
from toolchain.recipes import merge_defaults
from toolchain.report import _num, read_record, render, verify_checks


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    """(out root, bench JSON, eval folder, manifest) from real runs of export, bench and evaluate."""
    if client.client_python() is None:
        pytest.skip("MediaPipe client environment absent: run `make client-env` (export writes metadata with it)")
    d = tmp_path_factory.mktemp("report")
    reg, images = tiny_segmenter_project(d)
    recipe = merge_defaults(
        {
            "onnx": False,
            "calibration": {"samples": 12, "sources": ["skimage"]},
            "import_check": {"max_abs_diff": 1e-3},
            "parity": {"pixel_agreement_min": 0.5, "classes": []},
        }
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("PORTRAIT_MODELS_DIR", str(d / "models"))
    try:
        bundle = export_model(
            "tiny", out_root=d / "out", recipe=recipe, images_folder=images, registry=reg, quiet=True
        ).bundle
    finally:
        mp.undo()
    bench = d / "bench" / "bench.json"
    assert cli(["bench", "--part", "models", "--out", str(d / "out"), "--runs", "3", "--json", str(bench)]) == 0
    assert cli(["dataset", "synth", "--n", "4", "--out", str(d / "voc"), "--size", "33x33", "--no-progress"]) == 0
    assert (
        cli(
            [
                "evaluate",
                str(bundle),
                "--dataset",
                str(d / "voc"),
                "--resamples",
                "20",
                "--no-progress",
                "--report-dir",
                str(d / "eval" / "tiny--voc"),
            ]
        )
        == 0
    )
    return d / "out", bench, d / "eval", json.loads((bundle / "manifest.json").read_text())


def test_report_names_the_handoff_and_the_manifests_figures(record, tmp_path):
    out, bench, eval_dir, m = record
    page = tmp_path / "results.md"
    assert (
        cli(["report", "--out", str(out), "--bench", str(bench), "--eval-dir", str(eval_dir), "--output", str(page)])
        == 0
    )
    text = page.read_text()
    assert f"`{m['handoff']}`" in text and f"`{m['handoff_cpu']}`" in text
    p = m["parity"]  # figures read from the manifest
    assert (
        f"| pixel_agreement | >= {_num(p['budgets']['pixel_agreement_min'])} | "
        f"{_num(p['per_kernels']['xnnpack']['pixel_agreement'])} | "
        f"{_num(p['per_kernels']['reference']['pixel_agreement'])} | {_num(p['pixel_agreement'])} |"
    ) in text
    b = json.loads(bench.read_text())
    assert b["written"]["command"].startswith("portrait bench") and b["written"]["command"] in text
    assert b["written"]["host_isa"] in text and b["written"]["at"] in text
    assert f"{b['models'][0]['ms']['int8']:.4g}" in text  # the bench's own latency
    rep = json.loads((eval_dir / "tiny--voc" / "report.json").read_text())
    assert _num(rep["figures"]["tiny_float32.tflite"]["miou"]) in text
    assert "portrait evaluate tiny --dataset" in text
    assert "No `" not in text and "No bundle" not in text  # every source was found
    checks = verify_checks(out / "tiny")
    assert checks and all(c["status"] in ("pass", "info") for c in checks)  # the card's verify list, parsed


def test_missing_sources_name_the_command_that_makes_them(tmp_path):
    text = render(read_record(tmp_path / "none", tmp_path / "bench.json", tmp_path / "eval"))
    assert "`make export-int8`" in text and "`make bench`" in text and "`portrait evaluate ID --dataset DIR`" in text


def test_unreadable_source_is_a_clear_error(tmp_path):
    (tmp_path / "out" / "x").mkdir(parents=True)
    (tmp_path / "out" / "x" / "manifest.json").write_text("{not json")
    assert cli(["report", "--out", str(tmp_path / "out"), "--output", str(tmp_path / "r.md")]) == 2
    assert not (tmp_path / "r.md").exists()


def test_browser_latencies_from_bench_json(tmp_path):
    """The shape `portrait bench --part browser` writes (device/browser_bench.py), rendered cell by cell."""
    bench = tmp_path / "bench.json"
    row = {
        "model_id": "m",
        "user_agent": "HeadlessChrome/1",
        "cores": 2,
        "webgpu_adapter": "swiftshader",
        "files": {
            "m_float32.tflite": {
                "native_ms": 10.0,
                "litert.js wasm": {"ms": 25.0, "status": "pass", "software_gpu": False, "over_native": 2.5},
                "litert.js webgpu": {"ms": None, "status": "pass", "software_gpu": True, "over_native": None},
            },
            "m_int8.tflite": {
                "native_ms": 5.0,
                "litert.js wasm": {"ms": None, "status": "no-load", "software_gpu": False, "over_native": None},
            },
        },
    }
    bench.write_text(
        json.dumps(
            {"written": {"at": "x", "command": "portrait bench --part browser", "host_isa": "h"}, "browser": [row]}
        )
    )
    text = render(read_record(tmp_path / "none", bench, tmp_path / "eval"))
    assert "| `m_float32.tflite` | 10 | 25 (2.5x), pass | sw GPU, pass |" in text
    assert "| `m_int8.tflite` | 5 | no-load | - |" in text


def test_run_record_measurements_go_back_beside_the_manifests_facts(tmp_path):
    """runs/<id>.json (export.split_run_record's dotted paths; file names hold dots) feeds the latency columns."""
    full = {
        "model_id": "m",
        "handoff_cpu": "m_int8.tflite",
        "export_seconds": 12.5,
        "handoff_cpu_choice": {
            "candidates": {
                "m_int8.tflite": {"meets": True, "latency_ms": 7.5},
                "m_float32.tflite": {"meets": True, "latency_ms": 9.25},
            }
        },
        "ladder": [{"rung": "w8a8", "met": True, "seconds": 3.0}],
    }
    manifest, run = split_run_record(full)
    assert "latency_ms" not in manifest["handoff_cpu_choice"]["candidates"]["m_int8.tflite"]
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    write_run_record(tmp_path, "m", run, 1.0)
    rec = read_record(tmp_path, tmp_path / "bench.json", tmp_path / "eval")
    assert rec.bundles[0].data == full and rec.bundles[0].also == [tmp_path / "runs" / "m.json"]
    text = render(rec)
    assert "| `m_float32.tflite` | yes | - | 9.25 |" in text and "runs/m.json" in text


def test_whole_export_run_shows_its_wall_time_and_cache_state(tmp_path, monkeypatch):
    """runs/_whole_run.json (a multi-model `portrait export`, e.g. make export-int8) becomes a source and
    one line under the handoff table: wall time, --jobs, cold or not, each model's status."""
    from toolchain.export import ExportResult, write_whole_run_record
    from toolchain.latency import stamp

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "manifest.json").write_text(json.dumps({"model_id": "m", "handoff": "m_int8.tflite"}))
    write_run_record(tmp_path, "m", {}, 40.0)
    monkeypatch.setenv("PORTRAIT_EXPORT_CACHE", "0")
    results = [ExportResult("m", "exported"), ExportResult("n", "skipped")]
    write_whole_run_record(tmp_path, results, 233.14, 2, stamp("portrait export --all --jobs 2", "x86_64: AVX2"))
    rec = read_record(tmp_path, tmp_path / "bench.json", tmp_path / "eval")
    assert rec.whole_run is not None and rec.whole_run.data["models"]["m"] == {"status": "exported", "seconds": 40.0}
    text = render(rec)
    assert "`portrait export --all --jobs 2` took 233.1 s wall, conversion cache off (a cold run)" in text
    assert "`m` exported 40.0, `n` skipped" in text
    assert "runs/_whole_run.json" in text.split("## Handoff per model")[0]  # listed among the sources
    assert [b.data["model_id"] for b in rec.bundles] == ["m"]  # never read as a bundle's run record
