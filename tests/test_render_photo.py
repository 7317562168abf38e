"""`portrait render` and the photo panels on a tiny exported bundle (no ../shared needed)."""

import cv2
import numpy as np
import pytest
from sim_fixtures import tiny_bundle

from experiments.render_quality import write_panels
from toolchain.errors import InputError
from toolchain.images import bundled_photos
from toolchain.render.photo import read_depth, render_photo


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    p = tmp_path_factory.mktemp("ph") / "astronaut.png"
    cv2.imwrite(str(p), bundled_photos()["astronaut"][..., ::-1])
    return p


def test_render_photo_writes_the_composite(photo, tmp_path):
    out = tmp_path / "out.png"
    depth = np.full((64, 64), 3.0, np.float32)
    depth[16:48, 16:48] = 1.0
    np.save(tmp_path / "d.npy", depth)
    r = render_photo(tiny_bundle(), photo, out, depth=tmp_path / "d.npy", f_number=2.0)
    img = cv2.imread(str(out))
    assert img is not None and img.shape[:2] == (512, 512) and r.composite.shape == (512, 512, 3)
    import json

    assert r.model_file == json.loads((tiny_bundle() / "manifest.json").read_text())["handoff_cpu"]


def test_render_photo_bad_inputs_are_clear(photo, tmp_path):
    with pytest.raises(InputError, match="no exported bundle"):
        render_photo(tmp_path / "nope", photo, tmp_path / "o.png")
    with pytest.raises(InputError, match="not found"):
        read_depth(tmp_path / "missing.npy")
    (tmp_path / "d.txt").write_text("1 2 3")
    with pytest.raises(InputError, match="unknown depth format"):
        read_depth(tmp_path / "d.txt")


def test_panels_from_a_bundle_cover_every_photo(photo, tmp_path):
    written = write_panels(tmp_path / "panels", photos=[photo], bundle=tiny_bundle())
    assert len(written) == 1 and cv2.imread(str(written[0])).shape[1] == 4 * 360


def test_render_runs_the_file_the_manifest_vouches_for_unless_told(photo, tmp_path):
    """Default: the manifest's handoff_cpu (a file that met the parity budget on XNNPACK), not the
    int8 file, which may have missed it (the selfie's w8a8 does)."""
    import json
    import shutil

    from sim_fixtures import copy_bundle

    from toolchain.render.photo import run_segmentation, segmentation_file

    bundle = copy_bundle(tmp_path)
    m = json.loads((bundle / "manifest.json").read_text())
    assert segmentation_file(m) == m["handoff_cpu"] and segmentation_file(m, "handoff") == m["handoff"]
    assert segmentation_file(m, "float32") == "tiny_float32.tflite"
    img = cv2.imread(str(photo))[..., ::-1]
    # point handoff_cpu at the float32 file: the default run must then equal an explicit float32 run
    m["handoff_cpu"] = "tiny_float32.tflite"
    (bundle / "manifest.json").write_text(json.dumps(m))
    default, _ = run_segmentation(bundle, img)
    f32, _ = run_segmentation(bundle, img, precision="float32")
    i8, _ = run_segmentation(bundle, img, precision="int8")
    assert np.array_equal(default, f32) and not np.array_equal(default, i8)
    del m["handoff_cpu"]
    (bundle / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="names no handoff_cpu"):
        run_segmentation(bundle, img)
    shutil.rmtree(bundle)
