"""Shared fixtures. Real-data tests skip with a reason when ../shared is not configured."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# the export's browser step (device-check --headless, minutes per bundle) is off in tests: their exports
# record the web clients as NOT RUN; tests/test_handoff.py runs it for real on the offline selfie bundle
os.environ.setdefault("PORTRAIT_DEVICE_CHECK", "off")

# Fixtures that need the real models and photos: a test using one is marked `shared`, so
# `make test-fast` (-m "not shared and not slow") leaves it out whether or not ../shared is configured.
SHARED_FIXTURES = {"shared_dir", "shared_photos", "shared_depth_photos", "deeplab_bundle"}


# Tests that run the TF converter or a whole export (on tiny generated models), or a simulation
# through such a bundle, are `integration`: `make test-fast` leaves them out. A module named here
# counts whole; a (module, test) pair marks one test of a module of unit tests.
INTEGRATION_MODULES = {
    "test_bias_scales",
    "test_calibration",
    "test_evaluate_accuracy",
    "test_evaluate_ray",
    "test_export",
    "test_frozen_graph",
    "test_handoff",
    "test_ladder",
    "test_parity_layers",
    "test_parity_mixed",
    "test_parity_report",
    "test_partial16",
    "test_ptq",
    "test_ptq_xnnpack",
    "test_render_demo",
    "test_render_photo",
    "test_render_quality",
    "test_runtime_memo",
    "test_saturation",
    "test_search_engine",
    "test_sim_cost",
    "test_sim_goldens",
    "test_sim_simulate",
    "test_split",
    "test_tflite_import",
    "test_leaky_relu_forms",
    "test_reproducible_export",
}
INTEGRATION_TESTS = (
    {("test_sim_smoothing", "test_smoothing_cuts_flicker_2x_without_raising_alpha_error_10pct")}
    | {
        ("test_parity_bound", t)
        for t in (
            "test_gate_bound_is_float_rounded_onto_the_files_grid",
            "test_a_file_far_under_its_bound_fails_on_both_kernel_sets",
            "test_a_further_image_set_is_judged_beside_the_main_one",
            "test_a_set_with_gate_false_is_reported_not_gating",
        )
    }
    | {("test_report", "test_report_names_the_handoff_and_the_manifests_figures")}
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SHARED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.shared)
        module = item.module.__name__.rpartition(".")[2] if getattr(item, "module", None) else ""
        if module in INTEGRATION_MODULES or (module, getattr(item, "originalname", item.name)) in INTEGRATION_TESTS:
            item.add_marker(pytest.mark.integration)


def _shared_dir() -> Path | None:
    raw = os.environ.get("PORTRAIT_DATA_DIR")
    if raw and Path(raw).is_dir():
        return Path(raw)
    return None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    d = _shared_dir()
    if d is None:
        pytest.skip(
            "real models/photos not configured: set PORTRAIT_DATA_DIR=../shared "
            "and PORTRAIT_MODELS_DIR=../shared/models (.ci/run does this when ../shared exists)"
        )
    return d


@pytest.fixture(scope="session")
def shared_photos(shared_dir) -> list[Path]:
    from toolchain.paths import list_photos

    photos = list_photos(shared_dir / "photos")
    if not photos:
        pytest.skip(f"no photos in {shared_dir / 'photos'}")
    return photos


@pytest.fixture(scope="session")
def shared_depth_photos(shared_dir) -> list[Path]:
    d = shared_dir / "depth_photos"
    photos = sorted(d.glob("*.jpg")) if d.is_dir() else []
    if not photos:
        pytest.skip(f"no depth photos in {d}")
    return photos


@pytest.fixture(scope="session")
def deeplab_bundle(shared_dir, tmp_path_factory):
    """The real DeepLab 257 exported once per test session (about 30 s) with its own recipe."""
    from toolchain.export import export_model

    os.environ["PORTRAIT_MODELS_DIR"] = str(shared_dir / "models")
    return export_model("deeplabv3_mnv2_pascal_257", out_root=tmp_path_factory.mktemp("deeplab"), quiet=True).bundle


@pytest.fixture(scope="session")
def selfie_bundle(tmp_path_factory):
    """The real selfie segmenter with its recipe's budget and ladder, exported in 45-80 s: float32,
    float16, dynamic, the all-int8 rung and the handoff the recipe really reaches (w8a16 on
    ../shared's photos; mixed float on the bundled scikit-image photos, where w8a16 gets 0.977).
    Offline: the model is the embedded default from the mediapipe wheel on PyPI. Shared by
    test_handoff.py and test_device_check.py (one export per session)."""
    from toolchain.export import export_model
    from toolchain.handoff import client
    from toolchain.recipes import load_recipe

    if client.client_python() is None:
        pytest.skip("MediaPipe client environment absent: run `make client-env`")
    recipe = load_recipe("selfie_segmenter")
    recipe.update(onnx=False)
    return export_model(
        "selfie_segmenter", out_root=tmp_path_factory.mktemp("selfie"), recipe=recipe, quiet=True
    ).bundle
