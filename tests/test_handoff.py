"""Issue 11, the handoff: TFLite metadata from the handoff record, `portrait verify` (a contract check
that feeds files as the manifest says, in ai-edge-litert and MediaPipe Tasks), the model card and
`portrait pack`. Fast tests run on a tiny generated model exported end to end; the real-data test
loads the DeepLab and selfie files in the real mediapipe package (client environment)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from builders import tiny_segmenter_keras, tiny_segmenter_project

from toolchain.cli import main as cli
from toolchain.export import export_model
from toolchain.handoff import client, metadata
from toolchain.handoff import verify as verify_mod
from toolchain.handoff.pack import pack
from toolchain.recipes import merge_defaults
from toolchain.registry import sha256_of

needs_client = pytest.mark.skipif(
    client.client_python() is None, reason="MediaPipe client environment absent: run `make client-env`"
)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    """A tiny DeepLab-shaped model exported end to end (metadata, goldens, verify, card)."""
    if client.client_python() is None:
        pytest.skip("MediaPipe client environment absent: run `make client-env` (export writes metadata with it)")
    d = tmp_path_factory.mktemp("handoff_tiny")
    reg, images = tiny_segmenter_project(d)
    recipe = merge_defaults(
        {
            "label_variant": True,
            "onnx": False,
            "calibration": {"samples": 12, "sources": ["skimage"]},
            "import_check": {"max_abs_diff": 1e-3},
            "parity": {"pixel_agreement_min": 0.5, "classes": []},
        }
    )
    import os

    old = os.environ.get("PORTRAIT_MODELS_DIR")
    os.environ["PORTRAIT_MODELS_DIR"] = str(d / "models")
    try:
        result = export_model("tiny", out_root=d / "out", recipe=recipe, images_folder=images, registry=reg, quiet=True)
    finally:
        if old is None:
            os.environ.pop("PORTRAIT_MODELS_DIR", None)
        else:
            os.environ["PORTRAIT_MODELS_DIR"] = old
    return result.bundle


def _copy(bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / bundle.name
    shutil.copytree(bundle, dst)
    return dst


def _restamp(bundle: Path, *names: str) -> None:
    """Record the new SHA-256 of edited files, so that only the edit under test can fail."""
    m = json.loads((bundle / "manifest.json").read_text())
    for n in names:
        m["files"][n] = {"sha256": sha256_of(bundle / n), "bytes": (bundle / n).stat().st_size}
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2))


def _failed(report, file=None, field=None):
    return [
        c for c in report.failures if (file is None or c.file == file) and (field is None or c.field.startswith(field))
    ]


def test_export_writes_metadata_contract_clients_card_and_verifies(tiny_bundle):
    m = json.loads((tiny_bundle / "manifest.json").read_text())
    for name in ("tiny_int8.tflite", "tiny_float32.tflite"):
        assert m["models"][name]["contract"]["clients"] == [metadata.LITERT, metadata.MEDIAPIPE_SEGMENTER]
        measured = {e["runtime"]: e for e in m["models"][name]["clients"]}  # what verify measured at export
        assert measured["ai-edge-litert"]["status"] == "pass" and measured["ai-edge-litert"]["claimed"]
        assert measured["mediapipe (Python)"]["status"] == "pass" and measured["mediapipe (Python)"]["version"]
        assert measured["litert.js"]["status"] == "not-run"  # the browser step is off in tests (conftest)
    # the ArgMax variant: class indices, which ImageSegmenter cannot use: direct interpreter only
    assert m["models"]["tiny_int8_labels.tflite"]["contract"]["clients"] == [metadata.LITERT]
    assert "mediapipe (Python)" not in {e["runtime"] for e in m["models"]["tiny_int8_labels.tflite"]["clients"]}
    assert m["models"]["tiny_int8.tflite"]["contract"]["input"]["dtype"] == "uint8"
    assert m["models"]["tiny_float32.tflite"]["contract"]["input"]["dtype"] == "float32"
    read = metadata.read_metadata([tiny_bundle / "tiny_int8.tflite", tiny_bundle / "tiny_int8_labels.tflite"])
    md = read[str(tiny_bundle / "tiny_int8.tflite")]["metadata"]
    sg = md["subgraphMetadata"][0]
    norm = sg["inputTensorMetadata"][0]["processUnits"][0]
    assert norm["optionsType"] == "NormalizationOptions" and norm["options"] == {"mean": [0.0], "std": [1.0]}
    assert sg["inputTensorMetadata"][0]["content"]["contentProperties"]["colorSpace"] == "RGB"
    assert sg["customMetadata"][0]["data"] == {"activation": "SOFTMAX"}
    assert sg["outputTensorMetadata"][0]["associatedFiles"][0]["type"] == "TENSOR_AXIS_LABELS"
    assert md["license"] and md["author"] and md["version"] == metadata.bundle_version(m)
    labels_md = read[str(tiny_bundle / "tiny_int8_labels.tflite")]
    assert (
        labels_md["metadata"]["subgraphMetadata"][0]["outputTensorMetadata"][0]["associatedFiles"][0]["type"]
        == "TENSOR_VALUE_LABELS"
    )
    assert labels_md["associated_files"]["labels.txt"].splitlines()[15] == "person"
    card = (tiny_bundle / "README.md").read_text()
    for needle in (
        "ImageSegmenter.ImageSegmenterOptions",
        "Interpreter(FileUtil.loadMappedFile",
        "try interpreter.invoke()",
        "- in: RGB [",
        "mediapipe.agreement: pass",
        "tiny_int8_labels.tflite",
    ):
        assert needle in card, needle
    assert "README.md" in m["files"] and "goldens/goldens.json" in m["files"]
    report = verify_mod.verify(tiny_bundle)
    assert report.passed and not report.not_run, report.format()
    mp = [c for c in report.checks if c.field == "mediapipe.agreement"]
    assert {c.file for c in mp} == {
        "tiny_float32.tflite",
        "tiny_float16.tflite",
        "tiny_dynamic.tflite",
        "tiny_int8.tflite",
    }
    assert all(c.figures["worst_category_agreement"] >= 0.999 for c in mp)


def test_int8_input_while_manifest_says_uint8_fails_verify(tiny_bundle, tmp_path):
    """The issue's headline defect: a handoff that takes int8 (zero point -128) while the manifest
    says uint8 pixels. verify feeds the manifest's pixels and names the file and the field."""
    import tensorflow as tf

    from toolchain import calibration_set

    b = _copy(tiny_bundle, tmp_path)
    conv = tf.lite.TFLiteConverter.from_keras_model(tiny_segmenter_keras())
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rep = calibration_set.representative_set((33, 33), samples=8, seed=0, sources=["skimage"], min_samples=1)
    conv.representative_dataset = lambda: ([x[None].astype(np.float32)] for x in rep)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    (b / "tiny_int8.tflite").write_bytes(conv.convert())
    m = json.loads((b / "manifest.json").read_text())
    metadata.write_metadata({"tiny_int8.tflite": b / "tiny_int8.tflite"}, m, b / "labels.txt")
    _restamp(b, "tiny_int8.tflite")
    report = verify_mod.verify(b)
    bad = _failed(report, "tiny_int8.tflite", "tensor.input")
    assert bad and "int8" in bad[0].message and "zero point -128" in bad[0].message and "uint8" in bad[0].message
    assert cli(["verify", str(b)]) == 1


def test_swapped_file_is_a_sha256_mismatch(tiny_bundle, tmp_path):
    b = _copy(tiny_bundle, tmp_path)
    shutil.copyfile(b / "tiny_dynamic.tflite", b / "tiny_float16.tflite")
    report = verify_mod.verify(b, mediapipe=False)
    assert _failed(report, "tiny_float16.tflite", "files[]")  # the size differs, so .bytes names it first
    assert cli(["verify", str(b), "--no-mediapipe"]) == 1


def test_edited_manifest_is_named_by_file_and_field(tiny_bundle, tmp_path):
    b = _copy(tiny_bundle, tmp_path)
    m = json.loads((b / "manifest.json").read_text())
    m["description"] = "edited by hand"  # metadata description now disagrees
    m["models"]["tiny_int8.tflite"]["contract"]["input"]["norm_std"] = [127.5]  # wrong normalization
    m["outputs"][0]["meaning"] = "depth in metres"  # wrong output meaning
    m["models"]["tiny_float16.tflite"]["input"]["dtype"] = "uint8"  # wrong input type on record
    (b / "manifest.json").write_text(json.dumps(m, indent=2))
    report = verify_mod.verify(b, mediapipe=True)
    assert _failed(report, "tiny_int8.tflite", "models[].contract")
    assert "norm_std" in _failed(report, "tiny_int8.tflite", "models[].contract")[0].message
    # the stored contract (what the metadata was written from) no longer matches the edited fields
    tens = _failed(report, "tiny_float16.tflite", "models[].tensors")
    assert tens and "models[].input.dtype: manifest says 'uint8', the file has 'float32'" in tens[0].message
    f32 = _failed(report, "tiny_float32.tflite", "models[].contract")
    assert f32 and "description: stored" in f32[0].message and "outputs[0].description" in f32[0].message


def test_missing_label_and_metadata_disagreeing_with_the_manifest(tiny_bundle, tmp_path):
    b = _copy(tiny_bundle, tmp_path)
    m = json.loads((b / "manifest.json").read_text())
    # metadata written from another record (activation NONE, no labels) into one file
    other = json.loads(json.dumps(m))
    other["models"]["tiny_int8.tflite"]["contract"]["segmenter_activation"] = "NONE"
    other["models"]["tiny_int8.tflite"]["contract"]["outputs"][0]["labels_file"] = None
    client.call(
        "write-metadata",
        {
            "jobs": [
                {
                    "model": str(b / "tiny_int8.tflite"),
                    "out": str(b / "tiny_int8.tflite"),
                    "record": other["models"]["tiny_int8.tflite"]["contract"],
                    "associated": [],
                }
            ]
        },
    )
    (b / "labels.txt").write_text("\n".join(m["labels"][:-1]) + "\n")  # a label missing
    _restamp(b, "tiny_int8.tflite", "labels.txt")
    report = verify_mod.verify(b)
    md = _failed(report, "tiny_int8.tflite", "metadata")
    assert md and "SEGMENTER_METADATA.activation" in md[0].message and "labels" in md[0].message
    assert _failed(report, "labels.txt", "labels")
    assert _failed(report, "tiny_int8.tflite", "mediapipe.labels")


def test_client_env_absent_is_reported_not_run_never_passed(tiny_bundle, monkeypatch, capsys):
    monkeypatch.setenv("PORTRAIT_CLIENT_PYTHON", "/nonexistent/python")
    report = verify_mod.verify(tiny_bundle)
    assert report.passed and report.not_run and report.exit_code == 3
    text = report.format()
    assert "NOT RUN" in text and "RESULT: PASS" not in text and "MediaPipe" in text
    assert cli(["verify", str(tiny_bundle)]) == 3


def test_pack_is_reproducible_and_verify_accepts_the_zip(tiny_bundle, tmp_path):
    z1 = pack(tiny_bundle, tmp_path / "a", verify=False)
    z2 = pack(tiny_bundle, tmp_path / "b", verify=False)
    assert z1.name == z2.name and z1.name.startswith("tiny-") and z1.read_bytes() == z2.read_bytes()
    with zipfile.ZipFile(z1) as zf:
        names = zf.namelist()
        stem = z1.name.removesuffix(".zip")
        assert f"{stem}/SHA256SUMS" in names and f"{stem}/README.md" in names and f"{stem}/manifest.json" in names
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())
    assert verify_mod.verify(z1, mediapipe=False).passed
    # the CLI verifies first, then writes the same bytes
    assert cli(["pack", str(tiny_bundle), "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / z1.name).read_bytes() == z1.read_bytes()
    # a zip whose model was swapped fails both the manifest and SHA256SUMS
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(z1) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("tiny_float16.tflite"):
                data = src.read(f"{stem}/tiny_dynamic.tflite")
            dst.writestr(info.filename, data)
    report = verify_mod.verify(bad, mediapipe=False)
    assert _failed(report, "tiny_float16.tflite", "files[]") and _failed(report, "SHA256SUMS")


def test_bad_input_is_a_clear_error(tmp_path):
    assert cli(["verify", str(tmp_path)]) == 2  # no manifest: InputError, exit 2
    (tmp_path / "x.zip").write_bytes(b"not a zip")
    assert cli(["verify", str(tmp_path / "x.zip")]) == 2


# ---------------------------------------------------------------- real models, real mediapipe


@pytest.mark.slow
@needs_client
def test_mediapipe_loads_deeplab_handoff_and_float32_and_agrees(deeplab_bundle, shared_dir):
    """Category agreement of MediaPipe Tasks ImageSegmenter with the toolchain decode >= 0.999 at model
    resolution, on every photo in ../shared/photos plus the golden images."""
    report = verify_mod.verify(deeplab_bundle, images_folder=shared_dir / "photos")
    print(report.format(verbose=True))
    assert report.passed and not report.not_run, report.format()
    m = json.loads((deeplab_bundle / "manifest.json").read_text())
    mp = {c.file: c.figures for c in report.checks if c.field == "mediapipe.agreement"}
    for name in (m["handoff"], "deeplabv3_mnv2_pascal_257_float32.tflite"):
        assert mp[name]["worst_category_agreement"] >= 0.999, (name, mp[name])


@pytest.mark.slow
@needs_client
def test_mediapipe_loads_selfie_handoff_and_float32_and_agrees(selfie_bundle, tmp_path):
    """The selfie segmenter needs no ../shared (the embedded default, from the mediapipe wheel on PyPI):
    judged on ../shared/photos when present, else on the bundled scikit-image photos."""
    photos = _photos_folder(tmp_path)
    report = verify_mod.verify(selfie_bundle, images_folder=photos)
    print(report.format(verbose=True))
    assert report.passed and not report.not_run, report.format()
    m = json.loads((selfie_bundle / "manifest.json").read_text())
    met = [row["rung"] for row in m["ladder"] if row["met"]]
    assert met == [m["ladder"][-1]["rung"]] == [m["handoff_rung"]]  # the first rung that met is the handoff
    assert m["handoff"] == f"selfie_segmenter_{m['handoff_rung']}.tflite"
    from conftest import _shared_dir

    if _shared_dir() is not None:
        # on ../shared's photos the integer-only rung meets (after the shared-bias fix): no float op
        assert m["handoff_rung"] == "w8a16" and m["models"][m["handoff"]]["float_op_count"] == 0
    mp = {c.file: c.figures for c in report.checks if c.field == "mediapipe.agreement"}
    for name in (m["handoff"], "selfie_segmenter_float32.tflite"):
        assert mp[name]["worst_category_agreement"] >= 0.999, (name, mp[name])


@pytest.mark.slow
@needs_client
def test_headless_device_check_of_the_offline_selfie_handoffs(selfie_bundle, tmp_path):
    """Issue 24's targets on the offline selfie bundle, in this machine's Chromium: the handoff (an
    integer core with the uint8 output edge) and handoff_cpu load and pass on LiteRT.js wasm and
    MediaPipe web CPU; the GPU handoff is the fastest file passing on WebGPU where the software
    adapter starts. The same functions record them as the export does."""
    from toolchain.device.browser import find_chromium
    from toolchain.device.device_check import check_web_runtimes, run_device_check
    from toolchain.errors import InputError
    from toolchain.handoff import clients

    try:
        check_web_runtimes()
        find_chromium()
    except InputError as exc:
        pytest.skip(f"no browser runtimes here: {exc}")
    m = json.loads((selfie_bundle / "manifest.json").read_text())
    files = sorted({m["handoff"], m["handoff_cpu"], "selfie_segmenter_float16.tflite"})
    report = run_device_check(
        selfie_bundle, headless=True, runs=1, timeout_s=120, report_dir=tmp_path / "report", files=files, progress=None
    )
    web = clients.web_entries(report, m)
    choice = clients.choose_handoff_gpu(m, web)
    m["handoff_gpu"] = choice["file"]
    clients.record(m, web)
    assert clients.claim_failures(m) == [], [f"{r.label}: {r.status} {r.message}" for r in report.results]
    for name in (m["handoff"], m["handoff_cpu"]):
        by = {(e["runtime"], e["backend"]): e["status"] for e in m["models"][name]["clients"]}
        assert by["litert.js", "wasm"] == "pass" and by["mediapipe-tasks-vision", "cpu"] == "pass", (name, by)
    if report.webgpu_adapter:
        assert choice["file"] in files, choice
        gpu = {(e["runtime"], e["backend"]): e for e in m["models"][choice["file"]]["clients"]}
        assert gpu["litert.js", "webgpu"]["status"] == "pass" and gpu["litert.js", "webgpu"]["claimed"]


def _photos_folder(tmp_path):
    from conftest import _shared_dir

    shared = _shared_dir()
    if shared is not None and (shared / "photos").is_dir():
        return shared / "photos"
    import cv2

    from toolchain.images import bundled_photos

    for name, img in bundled_photos().items():
        cv2.imwrite(str(tmp_path / f"{name}.png"), img[..., ::-1])
    return tmp_path
