"""`portrait parity` as a library call on a tiny bundle: the gate passes and fails where it should,
the JSON is strict and the HTML is one static file; and the real DeepLab when ../shared is set."""

import json
import re

import pytest
from parity_fixtures import MID, build_tiny_pair

from toolchain.parity import bundle_parity, report


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return build_tiny_pair(tmp_path_factory.mktemp("parity_report"))


def _run(pair, tmp_path, **kw):
    return bundle_parity.parity_model(
        MID,
        bundle=pair.bundle,
        images=pair.images_dir,
        out_dir=tmp_path / "rep",
        registry=pair.registry,
        recipe=_recipe(),
        worst=2,
        **kw,
    )


def _recipe():
    from toolchain.recipes import merge_defaults

    return merge_defaults(
        {"calibration": {"samples": 12, "sources": ["skimage"]}, "parity": {"classes": [], "pixel_agreement_min": 0.5}}
    )


def test_gate_passes_within_budget_and_writes_a_static_report(pair, tmp_path):
    res = _run(pair, tmp_path)
    assert res["passed"] and res["parity"]["kernels"] == "both"  # the default: judged on XNNPACK and reference
    assert "pixel_agreement" in res["parity"]["kernel_agreement"]
    data = json.loads((tmp_path / "rep" / "report.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert data["layers"]["layers"] and data["passed"] is True and "_layer_chart" not in data
    page = (tmp_path / "rep" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3  # layer chart + two worst images
    assert not re.search(r"""(src|href)=['"](?!data:)""", page)  # nothing to fetch
    assert "Kernel variants" in page and "reference" in page and "Every layer" in page


def test_gate_fails_when_budget_is_out_of_reach(pair, tmp_path):
    res = _run(pair, tmp_path, budgets={"pixel_agreement_min": 1.01}, per_layer=False)
    assert not res["passed"] and "pixel_agreement" in res["parity"]["failures"][0]
    assert "mixed_precision" not in res  # not asked for, recipe does not enable it


def test_mixed_precision_runs_after_a_miss_and_is_reported(pair, tmp_path, monkeypatch):
    monkeypatch.setenv("PORTRAIT_MODELS_DIR", str(pair.root / "models"))
    res = _run(pair, tmp_path, budgets={"pixel_agreement_min": 1.01}, mixed_precision=True, max_conversions=4)
    m = res["mixed_precision"]
    assert not m["met"] and "no layer set" in m["message"]
    assert m["costs"]["bytes"]["mixed"] > 0 and m["costs"]["latency_ms"]["mixed"] > 0
    assert "Mixed precision" in (tmp_path / "rep" / "report.html").read_text()
    assert "mixed precision:" in bundle_parity.summary(res)


def test_disagreement_maps():
    import numpy as np

    ref = np.zeros((4, 4, 3))
    ref[..., 1] = 1
    out = ref.copy()
    out[0, 0] = [5, 0, 0]
    assert report.disagreement("segmentation", ref, out).sum() == 1
    assert report.disagreement("mask", np.full((2, 2), 0.6), np.array([[0.4, 0.6], [0.7, 0.9]])).sum() == 1


def test_real_deeplab_per_layer_and_kernels(deeplab_bundle, tmp_path):
    bundle = deeplab_bundle
    res = bundle_parity.parity_model("deeplabv3_mnv2_pascal_257", bundle=bundle, out_dir=tmp_path, worst=1)
    lay = res["layers"]
    assert lay["matched"]["unmatched_float_ops"] == 0 and len(lay["layers"]) >= 70
    assert all(r["snr_db"] > 5 for r in lay["layers"])
    assert 0.9 < res["parity"]["kernel_agreement"]["pixel_agreement"] <= 1
