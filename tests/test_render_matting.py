"""Matting-quality edges (toolchain/render/matting.py) and the render outputs that carry them."""

import json

import cv2
import numpy as np
import pytest

from toolchain.errors import InputError
from toolchain.render import matting
from toolchain.render.api import render
from toolchain.render.model_output import simulate_model_output
from toolchain.render.plan import make_plan


def _soft_edge_scene(h=96, w=128, fg=(220, 40, 30), bg=(20, 200, 40), edge=62, ramp=16):
    """A subject (fg colour, left of `edge`) with a linear-ramp edge over a flat background: alpha is exact."""
    x = np.arange(w, dtype=np.float32)
    alpha = np.clip((edge + ramp / 2 - x) / ramp, 0, 1)[None, :].repeat(h, 0)
    img = alpha[..., None] * np.float32(fg) + (1 - alpha[..., None]) * np.float32(bg)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), alpha


def test_band_laplacian_rows_equal_pymattings_cf_laplacian():
    from pymatting import cf_laplacian

    rng = np.random.default_rng(0)
    img = rng.random((40, 50, 3))
    unknown = np.zeros((40, 50), bool)
    unknown[10:30, 12:40] = True
    ours = matting.band_laplacian(img, unknown, epsilon=1e-6)
    ref = cf_laplacian(img, epsilon=1e-6, radius=1).tocsr()
    u = unknown.ravel()
    assert abs(ours[u] - ref[u]).max() < 1e-9


def test_trimap_keeps_a_confident_interior_and_opens_the_uncertain_band():
    p = np.zeros((80, 80), np.float32)
    p[20:60, 20:60] = 1.0
    p[20:60, 56:60] = 0.6  # the model hesitates at the right edge
    tri = matting.make_trimap(p, band_px=3)
    assert tri[40, 40] == 1.0 and tri[5, 5] == 0.0
    assert tri[40, 58] == 0.5 and tri[40, 20] == 0.5  # both outlines are unknown
    # beyond UNCERTAIN_REACH bands from the outline a confident mask is sure, a hesitant one is KEEP on
    # the background side (the solve holds it near the guided stage's soft value) (depth: test_render_trimap.py)
    assert tri[40, 75] == 0.0 and matting.make_trimap(np.where(p > 0, p, 0.3), 3)[5, 5] == matting.KEEP


def test_keep_pixels_stay_near_the_guided_value_on_a_flat_photo():
    img = np.full((60, 60, 3), 90, np.uint8)  # no edge anywhere: nothing may move the KEEP value
    tri = np.full((60, 60), matting.KEEP, np.float32)
    tri[:, 35:] = 1.0
    tri[:, 28:40] = matting.UNKNOWN
    keep = np.full((60, 60), 0.3, np.float32)
    a = matting.solve_alpha(img, tri, np.full((60, 60), 0.5, np.float32), keep)
    assert abs(float(a[:, :5].mean()) - (0.3 - matting.ALPHA_SNAP) / (1 - 2 * matting.ALPHA_SNAP)) < 0.05
    assert (a[:, 45:] == 1).all()
    assert (matting.known_alpha(tri, keep)[:, :28] == np.float32(0.3)).all()


def test_closed_form_recovers_a_two_colour_ramp():
    img, alpha = _soft_edge_scene()
    tri = np.where(alpha >= 1, 1.0, np.where(alpha <= 0, 0.0, 0.5)).astype(np.float32)
    tri[:, 40:80] = 0.5  # a band wider than the true ramp
    est = matting.solve_alpha(img, tri)
    assert np.abs(est - alpha)[:, 40:80].mean() < 0.02
    assert (est[tri == 1] == 1).all() and (est[tri == 0] == 0).all()


@pytest.mark.parametrize("method, most", [("blur", 0.3), ("ml", 0.05)])
def test_foreground_removes_the_background_colour_from_the_edge(monkeypatch, method, most):
    # a 16-px linear ramp between two flat colours: the default blur fusion (fast, box filters) leaves
    # about a quarter of the photo's error there, pymatting's estimate_foreground_ml almost none
    monkeypatch.setattr(matting, "FG_METHOD", method)
    img, alpha = _soft_edge_scene()
    tri = np.where(alpha >= 1, 1.0, np.where(alpha <= 0, 0.0, 0.5)).astype(np.float32)
    delta = matting.estimate_foreground(img, alpha, tri)
    fg = img.astype(np.float32) / 255 + delta
    band = (alpha > 0.2) & (alpha < 0.8)
    err_photo = np.abs(img.astype(np.float32) / 255 - np.float32([220, 40, 30]) / 255)[band].mean()
    err_fg = np.abs(fg - np.float32([220, 40, 30]) / 255)[band].mean()
    assert err_fg < most * err_photo


@pytest.fixture(scope="module")
def scene():
    from toolchain.scenes import generate_scene

    sc = generate_scene(1, kind="cat", size=(240, 320))
    low, spec = simulate_model_output(sc.alpha, seed=1, label_id=8)
    return sc, low, spec


def test_matting_beats_the_guided_stage_on_a_synthetic_scene(scene):
    from experiments.render_quality import compare_edges

    sc, low, spec = scene
    rows = compare_edges(sc.rgb, low, spec, sc.alpha)
    assert rows["matting"]["sad_k"] < 0.8 * rows["guided"]["sad_k"]
    assert rows["matting"]["spill"] < rows["guided"]["spill"]


@pytest.mark.parametrize("implementation", ["golden", "device"])
def test_confident_interior_stays_opaque(scene, implementation):
    sc, low, spec = scene
    res = render(sc.rgb, low, spec, mode="chroma", implementation=implementation)
    inner = cv2.erode((sc.alpha >= 1).astype(np.uint8), np.ones((25, 25), np.uint8)) > 0
    assert inner.any() and (res.alpha[inner] == 1).all()
    assert (res.composite[inner] == sc.rgb[inner]).all()  # no key colour shows through the subject


def test_upsampling_to_a_large_frame_keeps_sure_pixels_exact():
    img, alpha = _soft_edge_scene(h=600, w=2400, edge=1200, ramp=40)  # scale 4 working grid
    low, spec = simulate_model_output(alpha, seed=0)
    res = render(img, low, spec, mode="chroma")
    assert res.alpha.shape == alpha.shape and res.foreground.shape == img.shape
    assert (res.alpha[alpha == 1][:1000] == 1).all() and (res.alpha[:, -200:] == 0).all()


def test_unknown_edges_is_a_clear_error(scene):
    sc, low, spec = scene
    with pytest.raises(InputError, match="edges"):
        render(sc.rgb, low, spec, edges="magic")


def test_band_radius_follows_the_model_resolution():
    small = make_plan(480, 640, (257, 257), 8.0)
    big = make_plan(3024, 4032, (257, 257), 8.0)
    assert matting.BAND_MIN_PX <= matting.band_radius(small) <= matting.band_radius(big)


def test_a_models_edge_band_goes_from_its_manifest_to_the_trimap(scene):
    """registry output `edge_band_model_px` -> manifest outputs -> output spec -> plan -> trimap band, on
    the golden and the device path alike; a bad value is a clear error."""
    from toolchain.registry import get_entry
    from toolchain.render import device
    from toolchain.render.model_output import normalize_spec
    from toolchain.render.photo import output_spec

    assert get_entry("selfie_segmenter").outputs[0]["edge_band_model_px"] == 2.0
    manifest = {
        "outputs": [{"name": "o", "kind": "probabilities", "edge_band_model_px": 2.0}],
        "foreground_classes": {"person": 1},
    }
    spec = output_spec(manifest, "m_float16.tflite")
    assert normalize_spec(spec)["edge_band_model_px"] == 2.0
    assert "edge_band_model_px" not in normalize_spec({"kind": "probabilities"})
    wide, narrow = make_plan(3024, 4032, (256, 256), 8.0), make_plan(3024, 4032, (256, 256), 8.0, band_model_px=2.0)
    assert matting.band_radius(narrow) < matting.band_radius(wide)
    sc, low, sim_spec = scene
    p = np.clip(cv2.GaussianBlur(sc.alpha.astype(np.float32), (0, 0), 3), 0, 1)

    def unknown_px(band_model_px):  # (golden, device) unknown pixels of the trimap
        plan = make_plan(*p.shape, p.shape, 8.0, band_model_px=band_model_px)
        tri = matting.make_trimap(p, matting.band_radius(plan))
        tri8 = device.trimap_q8(np.round(p * 255).astype(np.uint8), plan, None)
        return (tri == matting.UNKNOWN).sum(), (tri8 == 128).sum()

    (g3, d3), (g2, d2) = unknown_px(3.0), unknown_px(2.0)
    assert g2 < g3 and d2 < d3
    a3 = render(sc.rgb, low, sim_spec).alpha
    a2 = render(sc.rgb, low, {**sim_spec, "edge_band_model_px": 2.0}).alpha
    assert np.abs(a3 - a2).max() > 0.05  # the band really changed the solve
    for bad in (0, -1, "wide", float("nan"), 100):
        with pytest.raises(InputError, match="edge_band_model_px"):
            render(sc.rgb, low, {**sim_spec, "edge_band_model_px": bad})


# ------------------------------------------------------------------ render outputs and --depth-model


def _tiny_depth_bundle(folder):
    """A depth 'model' in a bundle: depth grows with brightness (bright = far), handoff_cpu named."""
    import keras
    from builders import keras_to_tflite
    from keras import layers

    from toolchain.bundle import record_files

    x_in = keras.Input((24, 32, 3), batch_size=1)
    y = layers.Conv2D(1, 1, kernel_initializer="ones", bias_initializer="ones")(x_in)
    folder.mkdir(parents=True, exist_ok=True)
    keras_to_tflite(keras.Model(x_in, y), folder / "tinydepth_float32.tflite")
    manifest = {
        "model_id": "tinydepth",
        "task": "depth",
        "input": {"size": [24, 32]},
        "outputs": [{"name": "d", "kind": "relative_depth", "shape": [1, 24, 32, 1]}],
        "models": {"tinydepth_float32.tflite": {"precision": "float32"}},
        "handoff": None,
        "handoff_cpu": "tinydepth_float32.tflite",
    }  # no integer handoff: the CPU file runs
    (folder / "manifest.json").write_text(json.dumps(manifest))
    record_files(folder, "")  # every file listed with its SHA-256, as an export writes it
    return folder


def test_render_outputs_and_depth_model(tmp_path):
    from sim_fixtures import tiny_bundle

    from toolchain.render.photo import render_photo, run_depth_model

    h, w = 120, 160
    img = np.full((h, w, 3), 230, np.uint8)  # bright (far) background ...
    img[30:100, 50:110] = (60, 40, 30)  # ... and a dark (near) subject
    cv2.imwrite(str(tmp_path / "in.png"), img[..., ::-1])
    dm = _tiny_depth_bundle(tmp_path / "tinydepth")
    inv, ran = run_depth_model(dm, img)
    assert ran == "tinydepth_float32.tflite" and inv[12, 16] > inv[1, 1]  # the subject is nearer
    outs = {k: tmp_path / f"{k}.png" for k in ("alpha", "fg", "depth")}
    res = render_photo(
        tiny_bundle(),
        tmp_path / "in.png",
        tmp_path / "out.png",
        depth_model=dm,
        alpha_out=outs["alpha"],
        foreground_out=outs["fg"],
        depth_out=outs["depth"],
        max_blur_px=6,
    )
    a = cv2.imread(str(outs["alpha"]), cv2.IMREAD_UNCHANGED)
    f = cv2.imread(str(outs["fg"]), cv2.IMREAD_UNCHANGED)
    d = cv2.imread(str(outs["depth"]), cv2.IMREAD_UNCHANGED)
    assert a.dtype == np.uint8 and a.shape == (h, w)
    assert f.shape == (h, w, 4) and (f[..., 3] == a).all()
    assert d.dtype == np.uint16 and d.shape == (h, w) and d[60, 80] > d[5, 5]  # nearer is brighter
    assert any("depth from tinydepth_float32.tflite" in x for x in res.warnings)
    with pytest.raises(InputError, match="needs depth"):
        render_photo(tiny_bundle(), tmp_path / "in.png", tmp_path / "o2.png", depth_out=tmp_path / "x.png")
    with pytest.raises(InputError, match="not a depth model"):
        run_depth_model(tiny_bundle(), img)
    with pytest.raises(InputError, match=r"\.png"):
        render_photo(tiny_bundle(), tmp_path / "in.png", tmp_path / "o3.png", alpha_out=tmp_path / "a.jpg")
