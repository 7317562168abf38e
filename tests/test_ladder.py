"""The precision ladder (toolchain/quantize/ladder.py), 16x8 conversion and the uint8 input contract
(quantize/conversions.py), the output transform, and the export around them, on tiny generated
models (fast, offline)."""

import json

import numpy as np
import pytest
from builders import tiny_segmenter_project

from toolchain import quantize
from toolchain.errors import ParityError, RecipeError
from toolchain.export import export_model, read_run_record
from toolchain.parity.gate import judge_budgets
from toolchain.quantize import conversions, ladder
from toolchain.recipes import merge_defaults
from toolchain.runtime import TfliteRunner


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_ladder")
    reg, images = tiny_segmenter_project(d)
    return d, reg, images


@pytest.fixture(scope="module")
def float_model(tiny, tmp_path_factory):
    from toolchain.sources import import_model

    d, reg, _ = tiny
    work = tmp_path_factory.mktemp("tiny_float")
    return import_model(reg["tiny"], d / "models" / "tiny.tflite", work)


def _rep(n=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 33, 33, 3)).astype(np.uint8)


def test_16x8_model_takes_uint8_pixels_and_runs_on_the_reference_kernels(float_model, tmp_path):
    path = conversions.convert_16x8(float_model, tmp_path / "m_w8a16.tflite", _rep())
    counts = ladder.op_counts(path)
    assert counts["float_ops"] == 0 and counts["int16_ops"] > 0  # integer only, int16 activations
    x = _rep(1, seed=5)[0]
    ref = float_model.run(x[None])["logits"][0]
    for kernels in ("reference", "xnnpack"):
        r = TfliteRunner(path, kernels=kernels)
        assert r.input["dtype"] == np.uint8 and tuple(r.input["quantization"]) == (1.0, 0)
        out = r.run(x)["logits"][0]
        assert out.shape == ref.shape
        assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.999  # 16-bit activations: close to float
    r = TfliteRunner(path, kernels="reference")
    assert r.output_details()["logits"]["dtype"] == np.int16
    path8 = tmp_path / "m_w8a16_int8_out.tflite"
    path8.write_bytes(conversions.int8_output_bytes(path.read_bytes()))
    r8 = TfliteRunner(path8, kernels="reference")
    assert r8.output_details()["logits"]["dtype"] == np.int8 and ladder.op_counts(path8)["float_ops"] == 0
    out8, out16 = r8.run(x)["logits"][0], r.run(x)["logits"][0]
    step = r8.output_details()["logits"]["quantization"][0]
    assert np.max(np.abs(out8 - out16)) <= step  # one int8 step at most


def test_16x8_calibrates_once_and_keeps_the_io_names(float_model, tmp_path):
    """TF's new quantizer calibrates twice for int16 activations and throws the first pass away;
    convert_16x8 runs one pass (half the time on PyDNet++) and restores the io tensors' names, which
    the manifest's contract records."""
    import tensorflow as tf

    from toolchain.quantize import calibration

    calibration._MEMO.clear()  # no ranges from an earlier test: this conversion makes its own pass
    said = []
    path = conversions.convert_16x8(float_model, tmp_path / "once.tflite", _rep(4), progress=said.append)
    assert sum(m.startswith("calibration 1/") for m in said) == 1
    conv = tf.lite.TFLiteConverter.from_saved_model(str(float_model.saved_model_dir))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ({"image": s[None].astype(np.float32)} for s in _rep(4))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int16
    twice = tmp_path / "twice.tflite"
    with calibration.shared_calibration(_rep(4)):  # the converter's default flow, on the same true ranges
        twice.write_bytes(conversions.uint8_input_bytes(conv.convert()))
    a, b = TfliteRunner(path, kernels="reference"), TfliteRunner(twice, kernels="reference")
    assert [d["name"] for d in a.interp.get_output_details()] == [d["name"] for d in b.interp.get_output_details()]
    assert [d["name"] for d in a.interp.get_input_details()] == [d["name"] for d in b.interp.get_input_details()]
    x = _rep(1, seed=7)[0]
    assert np.array_equal(a.run(x)["logits"], b.run(x)["logits"])  # same quantization, bit for bit


def test_uint8_input_surgery_is_exact_for_an_int8_input(float_model, tmp_path):
    """An int8 input (zero point -128, as selective quantization writes it) becomes uint8 pixels with a
    QUANTIZE in front; outputs are bit-identical to feeding the int8 file the shifted pixels."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(float_model.saved_model_dir))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ({"image": s[None].astype(np.float32)} for s in _rep())
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type, conv.inference_output_type = tf.int8, tf.int8
    raw = tmp_path / "raw.tflite"
    raw.write_bytes(conv.convert())
    fixed = tmp_path / "fixed.tflite"
    fixed.write_bytes(conversions.uint8_input_bytes(raw.read_bytes()))
    a, b = TfliteRunner(raw, kernels="reference"), TfliteRunner(fixed, kernels="reference")
    scale, zp = a.input["quantization"]
    assert a.input["dtype"] == np.int8 and b.input["dtype"] == np.uint8
    x = _rep(1, seed=3)[0]
    ya = a.run(x, dequantize=False)["logits"]  # runner quantizes pixels with the file's scale / zero point
    yb = b.run(x, dequantize=False)["logits"]
    if scale == 1.0:
        assert np.array_equal(ya, yb)
    else:  # a requantization in front may round differently by one step at most
        assert np.max(np.abs(ya.astype(int) - yb.astype(int))) <= 2
    assert conversions.uint8_input_bytes(fixed.read_bytes()) == fixed.read_bytes()  # idempotent


def _ctx(recipe, tmp_path, judged: dict):
    from toolchain.registry import ModelEntry  # noqa: F401

    entry = type("E", (), {"id": "tiny"})()
    return ladder.Context(
        entry,
        recipe,
        None,
        tmp_path / "f.tflite",
        _rep(),
        [],
        tmp_path,
        lambda m: None,
        convert=None,
        judge=lambda p, kernels=None: judged[p.name],
    )


def _figs(passed):
    return {
        "passed": passed,
        "failures": [] if passed else ["xnnpack: iou = 0.5 < 0.98"],
        "per_kernels": {"xnnpack": {}, "reference": {}},
    }


def test_ladder_stops_at_the_first_rung_that_meets(float_model, tmp_path, monkeypatch):
    int8 = tmp_path / "tiny_int8.tflite"
    from toolchain import quantize

    quantize.convert(float_model, "int8", int8, representative=_rep())
    w16 = conversions.convert_16x8(float_model, tmp_path / "tiny_w8a16.tflite", _rep())
    calls = []
    monkeypatch.setitem(ladder.RUNGS, "w8a8", lambda ctx: calls.append("w8a8") or ladder.Built(int8, {}, "w8a8"))
    monkeypatch.setitem(ladder.RUNGS, "w8a16", lambda ctx: calls.append("w8a16") or ladder.Built(w16, {}, "w8a16"))
    monkeypatch.setitem(ladder.RUNGS, "mixed_float", lambda ctx: pytest.fail("the ladder went past a rung that met"))
    recipe = merge_defaults({"ladder": {"rungs": ["w8a8", "w8a16", "mixed_float"]}})
    out = ladder.run_ladder(_ctx(recipe, tmp_path, {int8.name: _figs(False), w16.name: _figs(True)}))
    assert calls == ["w8a8", "w8a16"] and out["handoff"] == w16
    assert [(r["rung"], r["met"]) for r in out["ladder"]] == [("w8a8", False), ("w8a16", True)]
    assert out["ladder"][1]["int16_ops"] > 0 and out["ladder"][1]["float_ops"] == 0


def test_a_rung_with_float_ops_does_not_meet_even_when_parity_passes(float_model, tmp_path, monkeypatch):
    from toolchain import quantize

    f32 = quantize.convert(float_model, "float32", tmp_path / "tiny_float32.tflite")
    monkeypatch.setitem(ladder.RUNGS, "w8a8", lambda ctx: ladder.Built(f32, {}, "w8a8"))
    recipe = merge_defaults({"ladder": {"rungs": ["w8a8"]}})
    out = ladder.run_ladder(_ctx(recipe, tmp_path, {f32.name: _figs(True)}))
    assert out["handoff"] is None and not out["ladder"][0]["met"]
    assert "float op(s) left" in out["ladder"][0]["failures"][-1]


def test_recipe_rungs_are_validated():
    with pytest.raises(RecipeError, match="unknown ladder rung"):
        merge_defaults({"ladder": {"rungs": ["w4a4"]}})
    with pytest.raises(RecipeError, match="order"):
        merge_defaults({"ladder": {"rungs": ["w8a16", "w8a8"]}})
    with pytest.raises(RecipeError, match="not implemented"):
        merge_defaults({"ladder": {"rungs": ["w8a8", "w8a16_partial"]}})
    assert merge_defaults({})["parity"]["kernels"] == "both"
    with pytest.raises(RecipeError, match="split_weights"):
        merge_defaults({"ladder": {"rungs": ["w8a16"], "w8a16": {"split_weights": "some"}}})


def test_web_outputs_compute_the_same_values_in_types_litertjs_reads(float_model, tmp_path):
    """LiteRT.js refuses int8/int16 signature tensors: int8 outputs become uint8 (QUANTIZE, exact,
    still integer-only), int16 outputs float32 (DEQUANTIZE at the edge, not a float op of the core)."""
    path16 = conversions.convert_16x8(float_model, tmp_path / "m_w8a16.tflite", _rep())
    path8 = tmp_path / "m_int8_out.tflite"
    path8.write_bytes(conversions.int8_output_bytes(path16.read_bytes()))
    x = _rep(1, seed=5)[0]

    def real(runner):  # TfliteRunner.run dequantizes with the output's scale and zero point
        return runner.run(x)["logits"].astype(np.float64)

    for src, want, edge in ((path16, np.float32, ["DEQUANTIZE"]), (path8, np.uint8, [])):
        web = tmp_path / (src.stem + "_web.tflite")
        web.write_bytes(conversions.web_output_bytes(src.read_bytes()))
        before, after = TfliteRunner(src, kernels="reference"), TfliteRunner(web, kernels="reference")
        assert after.output_details()["logits"]["dtype"] == want
        assert after.input["dtype"] == np.uint8
        np.testing.assert_allclose(real(after), real(before), rtol=1e-6, atol=1e-9)
        counts = ladder.op_counts(web)
        assert counts["float_ops"] == 0 and counts["edge_ops"] == edge
    float_file = tmp_path / "m_float.tflite"
    quantize.convert(float_model, "float32", float_file)
    assert conversions.web_output_bytes(float_file.read_bytes()) == float_file.read_bytes()
    with pytest.raises(RecipeError, match="web_outputs"):
        ladder.settings(merge_defaults({"ladder": {"web_outputs": "yes"}}))


def test_inverse_output_transform_is_computed_inside_the_graph(float_model, tmp_path):
    settings = conversions.transform_settings({"output_transform": {"kind": "inverse", "floor": 0.5}})
    inv = conversions.apply_output_transform(float_model, settings, tmp_path)
    x = _rep(1, seed=2)
    a, b = float_model.run(x)["logits"], inv.run(x)["logits"]
    np.testing.assert_allclose(b, 1.0 / np.maximum(a, 0.5), rtol=1e-5)
    with pytest.raises(RecipeError):
        conversions.transform_settings({"output_transform": {"kind": "log"}})


def _recipe(rungs, **parity):
    return merge_defaults(
        {
            "label_variant": False,
            "onnx": False,
            "goldens": False,
            "precisions": ["float32", "float16", "int8"],
            "calibration": {"samples": 12, "sources": ["skimage"]},
            "import_check": {"max_abs_diff": 1e-3},
            "ladder": {"rungs": rungs, "w8a16_output": "int8"},  # as the segmenter recipes
            "parity": {"pixel_agreement_min": 0.5, "classes": [], **parity},
        }
    )


def _export(tiny, out, recipe, monkeypatch, tmp_path):
    d, reg, images = tiny
    monkeypatch.setenv("PORTRAIT_MODELS_DIR", str(d / "models"))
    monkeypatch.setenv("PORTRAIT_CACHE_DIR", str(tmp_path / "cache"))
    return export_model("tiny", out_root=out, recipe=recipe, images_folder=images, registry=reg, quiet=True)


def test_export_hands_off_uint8_input_as_the_manifest_says(tiny, tmp_path, monkeypatch):
    b = _export(tiny, tmp_path / "out", _recipe(["w8a16"]), monkeypatch, tmp_path).bundle
    m = json.loads((b / "manifest.json").read_text())
    assert m["handoff"] == "tiny_w8a16.tflite" and m["handoff_rung"] == "w8a16"
    rec = m["models"][m["handoff"]]
    assert rec["rung"] == "w8a16" and rec["input"]["dtype"] == "uint8" and rec["float_op_count"] == 0
    assert not any(r.startswith("LiteRT XNNPACK") for r in rec["runtimes"])  # 16x8 does not run on XNNPACK
    assert (
        rec["outputs"]["logits"]["dtype"] == "uint8"
    )  # requantized to int8 (MediaPipe refuses int16), then uint8 (LiteRT.js refuses int8)
    assert "uint8" in m["input"]["pixels"]
    r = TfliteRunner(b / m["handoff"], kernels="reference")
    assert r.input["dtype"] == np.uint8 and tuple(r.input["quantization"]) == (1.0, 0)
    assert [row["rung"] for row in m["ladder"]] == ["w8a16"] and m["ladder"][0]["met"]
    assert set(m["ladder"][0]["figures"]) == {"xnnpack", "reference"}
    # handoff_cpu: the fastest file that meets on XNNPACK, timed in this run
    assert m["handoff_cpu"] in m["handoff_cpu_choice"]["candidates"]
    run = read_run_record(tmp_path / "out", "tiny")  # the latencies: this run's, beside the bundle
    assert all(
        f"handoff_cpu_choice.candidates.{n}.latency_ms" in run
        for n, v in m["handoff_cpu_choice"]["candidates"].items()
        if v["meets"]
    )
    assert "export_seconds" in run and not {"export_seconds", "cache"} & set(m)
    # a second run reuses the cached import, calibration, conversions and parity figures
    _export(tiny, tmp_path / "out", _recipe(["w8a16"]), monkeypatch, tmp_path)
    hits = read_run_record(tmp_path / "out", "tiny")["cache"]["hits"]
    assert {"float", "array.npy", "tiny_w8a16.tflite", "parity tiny_w8a16.tflite (xnnpack/reference)"} <= set(hits)


def test_budget_out_of_reach_fails_every_rung_and_keeps_the_previous_bundle(tiny, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = _export(tiny, out, _recipe(["w8a8"]), monkeypatch, tmp_path).bundle
    before = (first / "manifest.json").read_bytes()
    with pytest.raises(ParityError) as err:
        _export(tiny, out, _recipe(["w8a8", "w8a16"], pixel_agreement_min=1.01), monkeypatch, tmp_path)
    msg = str(err.value)
    assert "w8a8: xnnpack: pixel_agreement" in msg and "w8a16:" in msg and "reference: pixel_agreement" in msg
    assert [r["rung"] for r in err.value.figures["ladder"]] == ["w8a8", "w8a16"]
    assert (first / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["runs", "tiny"]  # runs/: the first export's timings
    assert [p.name for p in (out / "runs").iterdir()] == ["tiny.json"]


def test_a_rung_whose_integer_bias_a_kernel_would_misread_is_not_met(tiny, tmp_path, monkeypatch):
    # conversions.rescale_shared_biases repairs what the converter gets wrong (tests/test_bias_scales.py);
    # should a file still carry a misread bias, the ladder refuses it whatever its figures
    monkeypatch.setattr(
        conversions, "bias_scale_mismatches", lambda blob: ["op 7 (arith.constant): bias scale off by up to 128%"]
    )
    with pytest.raises(ParityError) as err:
        _export(tiny, tmp_path / "out", _recipe(["w8a16"]), monkeypatch, tmp_path)
    assert "whose integer bias is not on input scale x weight scale (first: op 7" in str(err.value)
    row = err.value.figures["ladder"][0]
    assert row["passed_parity"] and not row["met"]


def test_host_isa_names_int8_dot_product_features():
    from toolchain.latency import host_isa

    x86 = host_isa("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n", "x86_64")
    assert x86["features"]["AVX512-VNNI"] and not x86["features"]["AVX-VNNI"] and x86["int8_dot_product"]
    old = host_isa("flags\t\t: fpu sse avx2\n", "x86_64")
    assert not old["int8_dot_product"] and "no int8 dot-product" in old["summary"]
    arm = host_isa("Features\t: fp asimd asimddp i8mm\n", "aarch64")
    assert arm["features"]["i8mm"] and arm["features"]["dot product (asimddp)"]


def test_kernel_gap_covers_every_op_of_an_int8_model(float_model, tmp_path):
    from toolchain import quantize
    from toolchain.quantize.kernel_gap import format_gap, kernel_gap

    int8 = quantize.convert(float_model, "int8", tmp_path / "tiny_int8.tflite", representative=_rep())
    gap = kernel_gap(int8, [("a", _rep(1, seed=9)[0])])
    ops = [o["op"] for o in quantize.tensor_types(int8)]
    assert [r["op"] for r in gap["ops"]] == ops
    assert all(r["snr_db"] > 20 for r in gap["ops"])  # a tiny conv net: the kernel sets nearly agree
    assert "XNNPACK vs reference" in format_gap(gap)


def test_w8a16_with_split_weights_stays_integer_only(tiny, tmp_path, monkeypatch):
    recipe = _recipe(["w8a16"])
    recipe["ladder"]["w8a16"] = {"split_weights": "all"}
    b = _export(tiny, tmp_path / "out", recipe, monkeypatch, tmp_path).bundle
    m = json.loads((b / "manifest.json").read_text())
    row = m["ladder"][0]
    assert row["met"] and row["integer_only"] and row["record"]["split_weights"] == "all"
    assert row["record"]["split_layers"] >= 1
    rec = m["models"][m["handoff"]]
    assert rec["float_op_count"] == 0 and rec["input"]["dtype"] == "uint8"
    ops = TfliteRunner(b / m["handoff"], kernels="reference").interp._get_ops_details()
    plain = _export(tiny, tmp_path / "out_plain", _recipe(["w8a16"]), monkeypatch, tmp_path).bundle
    plain_ops = TfliteRunner(plain / m["handoff"], kernels="reference").interp._get_ops_details()

    def convs(ops):
        return sum(o["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D") for o in ops)

    assert convs(ops) == 2 * convs(plain_ops)  # every convolution as two int8-weight halves


def test_leaky_relu_form_is_validated():
    with pytest.raises(RecipeError, match="leaky_relu"):
        merge_defaults({"ladder": {"w8a8": {"leaky_relu": "swish"}}})
    assert ladder.settings(merge_defaults({}))["w8a8"]["leaky_relu"] == "op"


def test_handoff_cpu_budgets_judge_w8a8_on_both_kernel_sets(tmp_path, monkeypatch):
    """[parity.handoff_cpu]: the CPU handoff is judged on its own budgets (a depth file: δ1 and blur), so a w8a8
    file that missed the handoff's budget may still be the CPU handoff; a float op still rules it out."""
    int8 = tmp_path / "m_int8.tflite"
    int8.write_bytes(b"")
    per = {"xnnpack": {"delta1": 0.995, "blur_mean_px": 0.4}, "reference": {"delta1": 0.992, "blur_mean_px": 0.45}}
    recipe = merge_defaults(
        {
            "parity": {
                "delta1_min": 0.99,
                "abs_rel_max": 0.02,
                "handoff_cpu": {"delta1_min": 0.99, "blur_mean_px_max": 0.5},
            }
        }
    )
    ctx = ladder.Context(
        type("E", (), {"id": "m"})(),
        recipe,
        None,
        None,
        None,
        [],
        tmp_path,
        lambda m: None,
        convert=None,
        judge=None,
        judge_budgets=judge_budgets,
    )
    ctx.results["w8a8"] = {
        "path": int8,
        "figures": {"per_kernels": per},
        "row": {"met": False, "failures": ["reference: abs_rel = 0.07 > 0.02"]},
    }
    monkeypatch.setattr(ladder, "time_model", lambda p, **kw: 1.0)
    choice = ladder.choose_handoff_cpu(ctx, {})
    assert choice["file"] == "m_int8.tflite" and choice["candidates"]["m_int8.tflite"]["meets"]
    per["reference"]["blur_mean_px"] = 0.6
    choice = ladder.choose_handoff_cpu(ctx, {})
    assert choice["file"] is None
    assert "reference: blur_mean_px = 0.6000 > 0.5" in choice["candidates"]["m_int8.tflite"]["failures"]
    with pytest.raises(RecipeError, match="handoff_cpu"):
        ladder.cpu_handoff_budgets(merge_defaults({"parity": {"handoff_cpu": {"kernels": "xnnpack"}}}))
