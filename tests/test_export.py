"""The export pipeline end to end on a tiny generated model (fast, offline), and on the real
DeepLab 257 when ../shared is configured."""

import json

import numpy as np
import pytest
from builders import tiny_segmenter_keras, tiny_segmenter_project, write_registry

from toolchain import bundle, calibration_set, quantize
from toolchain.errors import ExportError, InputError, ModelNotFound, ParityError
from toolchain.export import export_all, export_model
from toolchain.recipes import merge_defaults
from toolchain.registry import load_registry


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    reg, images = tiny_segmenter_project(d)
    return d, reg, images


def _recipe(**parity):
    return merge_defaults(
        {
            "label_variant": True,
            "calibration": {"samples": 12, "sources": ["skimage"]},
            "import_check": {"max_abs_diff": 1e-3},
            "parity": {"pixel_agreement_min": 0.5, "classes": [], **parity},
        }
    )


def _export(tiny, out, recipe, monkeypatch):
    d, reg, images = tiny
    monkeypatch.setenv("PORTRAIT_MODELS_DIR", str(d / "models"))
    return export_model("tiny", out_root=out, recipe=recipe, images_folder=images, registry=reg, quiet=True)


def test_export_writes_every_precision_and_a_true_manifest(tiny, tmp_path, monkeypatch):
    result = _export(tiny, tmp_path / "out", _recipe(), monkeypatch)
    b = result.bundle
    names = {p.name for p in b.iterdir()}
    assert {
        "tiny_float32.tflite",
        "tiny_float16.tflite",
        "tiny_dynamic.tflite",
        "tiny_int8.tflite",
        "tiny_int8_labels.tflite",
        "tiny_float32.onnx",
        "labels.txt",
        "manifest.json",
    } <= names
    m = json.loads((b / "manifest.json").read_text())
    for name, rec in m["files"].items():
        assert rec["sha256"] == bundle.sha256_of(b / name) and rec["bytes"] == (b / name).stat().st_size
    int8 = m["models"]["tiny_int8.tflite"]
    assert int8["input"]["dtype"] == "uint8" and int8["float_ops"] == []
    assert not {"FLOAT32", "FLOAT16"} & set(int8["tensor_dtypes"])
    assert m["models"]["tiny_int8_labels.tflite"]["outputs"]["labels"]["dtype"] == "uint8"
    assert m["parity"]["kernels"] == "both" and "pixel_agreement" in m["parity"]["kernel_agreement"]
    assert m["handoff"] == "tiny_int8.tflite" and m["models"]["tiny_int8.tflite"]["rung"] == "w8a8"
    assert m["ladder"][0]["rung"] == "w8a8" and m["ladder"][0]["met"] and m["handoff_cpu"]
    assert m["measured_with"]["interpreter"].startswith("ai-edge-litert")
    assert m["import_check"]["max_abs_diff"] <= 1e-3 and m["onnx_check"]["max_abs_diff"] <= 1e-3
    assert (b / "labels.txt").read_text().splitlines()[15] == "person"
    assert "goldens/goldens.json" in m["files"]  # golden vectors are part of the bundle, with SHA-256
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_each_precision_runs_and_int8_stays_close(tiny, tmp_path, monkeypatch):
    from toolchain.runtime import TfliteRunner

    b = _export(tiny, tmp_path / "out", _recipe(), monkeypatch).bundle
    x = np.random.default_rng(0).integers(0, 256, (33, 33, 3))
    ref = TfliteRunner(b / "tiny_float32.tflite").run(x)["logits"]
    for p in ("float16", "dynamic", "int8"):
        got = TfliteRunner(b / f"tiny_{p}.tflite").run(x)["logits"]
        assert got.shape == ref.shape and np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.95


def test_gate_fails_out_of_reach_budget_and_keeps_previous_bundle(tiny, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = _export(tiny, out, _recipe(), monkeypatch).bundle
    before = (first / "manifest.json").read_bytes()
    strict = _recipe(pixel_agreement_min=1.01)
    strict["ladder"] = {"rungs": ["w8a8"]}
    with pytest.raises(ParityError) as err:
        _export(tiny, out, strict, monkeypatch)
    assert "pixel_agreement" in str(err.value)
    assert (first / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["runs", "tiny"]  # runs/: the first export's timings


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "out"
    ok = tmp_path / "a.bin"
    ok.write_bytes(b"a")
    bundle.write_bundle(out, "m", {"a.bin": ok}, {"v": 1})
    with pytest.raises(FileNotFoundError):
        bundle.write_bundle(out, "m", {"a.bin": ok, "b.bin": tmp_path / "missing.bin"}, {"v": 2})
    assert json.loads((out / "m" / "manifest.json").read_text())["v"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["m"]


def test_missing_model_is_skipped_with_instructions(tiny, tmp_path, monkeypatch):
    d, reg, images = tiny
    monkeypatch.setenv("PORTRAIT_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("PORTRAIT_CACHE_DIR", str(tmp_path / "cache"))
    results = export_all(["tiny"], out_root=tmp_path / "out", registry=reg, recipes={"tiny": _recipe()})
    assert results[0].status == "skipped" and "file:///nonexistent" in results[0].message
    with pytest.raises(ModelNotFound):
        export_model("tiny", out_root=tmp_path / "out", recipe=_recipe(), registry=reg)


def test_export_all_with_jobs_gives_the_same_bundles_in_registry_order(tiny, tmp_path, monkeypatch, capfd):
    """--jobs 2: models in their own processes at once; a missing one is skipped without a process; a
    model whose process ends without a result (here: its recipe cannot be sent to a process) is exported
    again in this process. Each bundle equals the one-at-a-time export's, in the registry's order."""
    import dataclasses

    d, reg, images = tiny
    monkeypatch.setenv("PORTRAIT_MODELS_DIR", str(d / "models"))
    monkeypatch.setenv("PORTRAIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PORTRAIT_EXPORT_CACHE", "0")
    reg2 = {
        "tiny": reg["tiny"],
        "gone": dataclasses.replace(reg["tiny"], id="gone", file="gone.tflite"),
        "tiny2": dataclasses.replace(reg["tiny"], id="tiny2"),
    }
    recipes = {m: _recipe() for m in reg2}
    one = export_all(list(reg2), out_root=tmp_path / "one", images_folder=images, registry=reg2, recipes=recipes)
    capfd.readouterr()
    recipes["tiny2"] = {**recipes["tiny2"], "_not_sendable": lambda: None}
    two = export_all(
        list(reg2), out_root=tmp_path / "two", images_folder=images, registry=reg2, recipes=recipes, jobs=2
    )
    err = capfd.readouterr().err
    assert "2 at a time" in err and "[tiny2] its export process ended without a result" in err
    assert "exporting it again in this process" in err
    assert [r.model_id for r in two] == ["tiny", "gone", "tiny2"]
    assert [r.status for r in two] == [r.status for r in one] == ["exported", "skipped", "exported"]
    for m in ("tiny", "tiny2"):
        a, b = (json.loads((tmp_path / o / m / "manifest.json").read_text()) for o in ("one", "two"))
        assert a["handoff"] == b["handoff"] and a["parity"]["per_kernels"] == b["parity"]["per_kernels"]
        assert (tmp_path / "one" / m / f"{m}_int8.tflite").read_bytes() == (
            tmp_path / "two" / m / f"{m}_int8.tflite"
        ).read_bytes()


def test_keras_source_exports(tmp_path, monkeypatch):
    from builders import VOC  # noqa: F401

    d = tmp_path
    (d / "models").mkdir()
    tiny_segmenter_keras().save(d / "models" / "k.keras")
    reg = load_registry(write_registry(d, "k", "keras", "k.keras", 33, 33, "logits"))
    monkeypatch.setenv("PORTRAIT_MODELS_DIR", str(d / "models"))
    recipe = merge_defaults(
        {
            "precisions": ["float32", "int8"],
            "onnx": False,
            "calibration": {"samples": 10, "sources": ["skimage"]},
            "parity": {"pixel_agreement_min": 0.5, "classes": []},
        }
    )
    r = export_model("k", out_root=d / "out", recipe=recipe, registry=reg, quiet=True)
    quantize.check_all_int8(r.bundle / "k_int8.tflite")


def test_float_op_left_in_an_int8_model_is_caught(tiny, tmp_path, monkeypatch):
    b = _export(tiny, tmp_path / "out", _recipe(), monkeypatch).bundle
    with pytest.raises(ExportError, match="not all-int8"):
        quantize.check_all_int8(b / "tiny_dynamic.tflite")
    assert (
        quantize.float_ops(
            b / "tiny_dynamic.tflite",
            allow=[
                "MUL",
                "CONV_2D",
                "DEPTHWISE_CONV_2D",
                "ADD",
                "CONCATENATION",
                "RESIZE_BILINEAR",
                "AVERAGE_POOL_2D",
                "MEAN",
            ],
        )
        == []
    )


def test_wrong_input_shape_is_a_clear_error(tiny, tmp_path, monkeypatch):
    from toolchain.runtime import TfliteRunner

    d, _, _ = tiny
    with pytest.raises(InputError, match="does not match"):
        TfliteRunner(d / "models" / "tiny.tflite").run(np.zeros((1, 40, 33, 3), np.float32))


def test_degenerate_calibration_sets_are_rejected():
    rng = np.random.default_rng(0)
    good = rng.integers(0, 256, (10, 8, 8, 3)).astype(np.uint8)
    calibration_set.check_representative(good)
    with pytest.raises(InputError, match="fewer than"):
        calibration_set.check_representative(good[:3])
    nan = good.astype(np.float32)
    nan[2, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        calibration_set.check_representative(nan)
    const = good.copy()
    const[4] = 7
    with pytest.raises(InputError, match="constant"):
        calibration_set.check_representative(const)


def test_calibration_set_is_deterministic_and_big_enough():
    a = calibration_set.representative_set((33, 33), samples=100, sources=["skimage"])
    b = calibration_set.representative_set((33, 33), samples=100, sources=["skimage"])
    assert a.shape == (100, 33, 33, 3) and a.dtype == np.uint8 and np.array_equal(a, b)


@pytest.mark.slow
def test_real_deeplab_257_export_meets_its_gate(deeplab_bundle):
    m = json.loads((deeplab_bundle / "manifest.json").read_text())
    assert m["parity"]["passed"] and m["parity"]["pixel_agreement"] >= 0.99
    assert m["parity"]["worst_class_iou"] >= 0.97
    assert m["import_check"]["max_abs_diff"] <= 1e-3 and m["import_check"]["argmax_agreement"] >= 0.9999
    assert m["models"]["deeplabv3_mnv2_pascal_257_int8.tflite"]["float_ops"] == []
    assert m["calibration"]["actual_samples"] >= 100
    # the handoff is the first ladder rung that met on both kernel sets, integer only
    assert m["handoff"] == next(r["file"] for r in m["ladder"] if r["met"]) and "goldens/goldens.json" in m["files"]
    assert m["models"][m["handoff"]]["float_op_count"] == 0 and m["models"][m["handoff"]]["input"]["dtype"] == "uint8"
    # the same int8 model fails a budget set out of its reach
    from toolchain.parity.gate import compare_pair, parity_images
    from toolchain.recipes import load_recipe
    from toolchain.registry import get_entry

    entry = get_entry("deeplabv3_mnv2_pascal_257")
    strict = load_recipe("deeplabv3_mnv2_pascal_257")
    strict["parity"]["pixel_agreement_min"] = 0.9999
    p = compare_pair(
        entry,
        strict,
        deeplab_bundle / "deeplabv3_mnv2_pascal_257_float32.tflite",
        deeplab_bundle / "deeplabv3_mnv2_pascal_257_int8.tflite",
        parity_images(entry),
    )
    assert not p["passed"] and "pixel_agreement" in p["failures"][0]


def test_missed_budget_climbs_the_ladder_to_mixed_float(tiny, tmp_path, monkeypatch):
    recipe = _recipe(pixel_agreement_min=1.01)
    recipe["mixed_precision"] = {"enabled": True, "max_conversions": 3}
    recipe["ladder"] = {"rungs": ["w8a8", "mixed_float"]}
    monkeypatch.setenv("PORTRAIT_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ParityError) as err:
        _export(tiny, tmp_path / "out", recipe, monkeypatch)
    record = err.value.figures["ladder"][-1]
    assert record["rung"] == "mixed_float" and record["met"] is False and "mixed_float:" in str(err.value)
    assert record["label"].startswith("mixed float, ") and "int8" not in record["label"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert "from_cache" not in record["record"] and record["record"]["file"] == "tiny_mixed_float.tflite"
    # a second run takes the search (file and record) from the cache, with the same choice
    with pytest.raises(ParityError) as again:
        _export(tiny, tmp_path / "out", recipe, monkeypatch)
    second = again.value.figures["ladder"][-1]
    assert "from_cache" in second["record"]
    assert second["record"]["float_layers"] == record["record"]["float_layers"]
    assert second["figures"] == record["figures"]


def test_calibration_sources_named_photos_and_synthetic_scenes():
    a = calibration_set.representative_set((33, 33), samples=10, sources=["skimage:astronaut,chelsea", "scenes:2"])
    assert a.shape == (10, 33, 33, 3)
    with pytest.raises(InputError, match="unknown calibration source"):
        calibration_set.representative_set((33, 33), samples=10, sources=["webcam"])
