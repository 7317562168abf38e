"""`make demo`'s gallery opened in headless Chromium: loads without console errors, every image
decodes, the screenshot is not blank. Runs on scikit-image's photos and the tiny test bundle, so it
needs neither ../shared nor a network; skips (saying how to install it) without the `chromium` package."""

import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from experiments.demo import build_demo, crop_windows

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_crop_windows_find_the_soft_edges():
    a = np.zeros((300, 400), np.float32)
    a[100:140, 250:290] = 0.5
    ((y, x),) = crop_windows(a, n=1, size=64)
    assert y <= 100 and y + 64 >= 140 - 24 and x <= 250 + 24 and x + 64 >= 290 - 24


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    from sim_fixtures import tiny_bundle

    mp = pytest.MonkeyPatch()
    mp.delenv("PORTRAIT_DATA_DIR", raising=False)  # scikit-image's photos: the same page everywhere
    try:
        path = build_demo(tmp_path_factory.mktemp("demo"), bundle=tiny_bundle(), quick=True)
    finally:
        mp.undo()
    return path


def _chromium():
    exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("chromium is not installed: apt-get install -y chromium (.ci/run does this)")
    return exe


def test_gallery_is_self_contained(gallery):
    text = gallery.read_text()
    assert len(re.findall(r"<img ", text)) >= 6
    assert not re.search(r'src="(?!data:)', text)  # every image is embedded
    assert (gallery.parent / "figures.json").is_file()


def test_gallery_in_headless_chromium(gallery, tmp_path):
    exe = _chromium()
    n_img = len(re.findall(r"<img ", gallery.read_text()))
    common = FLAGS + [f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run(
        [exe, *common, "--virtual-time-budget=20000", "--dump-dom", gallery.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln]
    assert not console, console
    assert f'data-decoded="{n_img}/{n_img}"' in dom.stdout
    shot = tmp_path / "shot.png"
    r = subprocess.run(
        [
            exe,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile2'}",
            "--window-size=1280,1600",
            f"--screenshot={shot}",
            gallery.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    img = cv2.imread(str(shot))
    assert img.shape[:2] == (1600, 1280)
    assert img.std() > 20 and len(np.unique(img.reshape(-1, 3)[::7], axis=0)) > 500
