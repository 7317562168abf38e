"""Quality against exact ground truth (synthetic scenes) and the photo panels."""

from types import SimpleNamespace

import cv2
import numpy as np

from experiments.render_quality import alpha_errors, edge_band, evaluate, psnr, write_panels


def _stand_in_scene(seed, kind="person", size=(480, 640), t=0):
    """Used only if toolchain.scenes is missing: a disc subject with thin strands, two depth planes."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    a = np.clip(90 - np.hypot(yy - h * 0.55, xx - w / 2), 0, 1).astype(np.float32)
    for _ in range(25):
        ang = rng.uniform(np.pi * 1.1, np.pi * 1.9)
        x0, y0 = w / 2 + 88 * np.cos(ang), h * 0.55 + 88 * np.sin(ang)
        cv2.line(a, (int(x0), int(y0)), (int(x0 + 30 * np.cos(ang)), int(y0 + 30 * np.sin(ang))), 0.6, 1, cv2.LINE_AA)
    bg = cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    fg = np.array([180, 130, 100], np.float32)
    rgb = (a[..., None] * fg + (1 - a[..., None]) * bg).astype(np.uint8)
    depth = np.where(a > 0.5, 1.5, 5.0).astype(np.float32)
    return SimpleNamespace(
        rgb=rgb,
        alpha=a,
        depth_m=depth,
        label=kind,
        subject_depth_m=1.5,
        K=np.array([[500, 0, w / 2], [0, 500, h / 2], [0, 0, 1]], float),
        t=t,
    )


def _scene_fn():
    try:
        from toolchain.scenes import generate_scene

        return generate_scene
    except ImportError:
        return _stand_in_scene


def test_metrics_basics():
    a = np.zeros((50, 50), np.float32)
    a[10:40, 10:40] = 1
    band = edge_band(a, 3)
    assert band.any() and not band[25, 25] and not band[0, 0]
    e = alpha_errors(a, a, band)
    assert e["sad_k"] == 0 and e["mse"] == 0
    x = np.zeros((4, 4, 3), np.uint8)
    assert psnr(x, x) == float("inf") and abs(psnr(x, x + 1) - 48.13) < 0.01


def test_quality_targets_vs_notebook():
    r = evaluate(seeds=(0, 1), kinds=("person", "cat"), scene_fn=_scene_fn())
    for name in ("mask_only", "with_tof"):
        v = r["vs_notebook"][name]
        assert v["band_psnr_gain_db"] >= 3.0, (name, v)
        assert v["alpha_mse_ratio"] >= 2.0, (name, v)
        assert r["mean"][name]["ssim_band"] > r["mean"]["notebook"]["ssim_band"]


def test_panels_for_every_photo_with_a_matte(shared_photos, tmp_path):
    paths = write_panels(tmp_path, photos=shared_photos, height=120)
    with_matte = [p for p in shared_photos if p.with_name(p.stem + "_alpha_pred.png").is_file()]
    assert len(paths) == len(with_matte) >= 1
    img = cv2.imread(str(paths[0]))
    assert img.shape[0] == 120 and img.shape[1] > 4 * 100
