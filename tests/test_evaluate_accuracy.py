"""`portrait dataset synth` and `portrait evaluate` on the local engine, with tiny generated bundles."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from toolchain.bundle import record_files
from toolchain.errors import InputError
from toolchain.evaluate import datasets
from toolchain.evaluate.accuracy import evaluate, summary_lines
from toolchain.evaluate.datasets import BadSample, load_sample, open_dataset, synth

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bundles():
    from evaluate_fixtures import build_bundles

    return build_bundles()


@pytest.fixture(scope="module")
def seg_set(tmp_path_factory):
    return synth(8, tmp_path_factory.mktemp("sets") / "voc", task="segmentation", size=(60, 80)).root


def _digests(root: Path) -> dict:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_synth_is_deterministic_and_exact(tmp_path, seg_set):
    again = synth(8, tmp_path / "again", task="segmentation", size=(60, 80))
    assert _digests(again.root) == _digests(seg_set)
    other = synth(2, tmp_path / "other", task="segmentation", size=(60, 80), seed=5)
    assert _digests(other.root)["JPEGImages/synth_000000.jpg"] != _digests(seg_set)["JPEGImages/synth_000000.jpg"]
    ds = open_dataset(seg_set)
    assert ds.task == "segmentation" and len(ds.samples) == 8 and "val.txt" in ds.layout
    with Image.open(seg_set / "SegmentationClass" / "synth_000001.png") as im:
        assert im.mode == "P"
    from toolchain.scenes import generate_scene

    scene = generate_scene(1, "cat", size=(60, 80))
    _, truth = load_sample(ds.samples[1], num_classes=21)
    assert (truth == np.where(scene.alpha >= 0.5, 8, 0)).all()  # exact truth: cat = VOC class 8
    for task, sub in (("matting", "alpha"), ("depth", "depth")):
        d = synth(2, tmp_path / task, task=task, size=(60, 80))
        assert d.task == task and (d.root / sub / "synth_000000.png").is_file()
    _, depth = load_sample(open_dataset(tmp_path / "depth").samples[0])
    assert np.abs(depth - generate_scene(0, "person", size=(60, 80)).depth_m).max() <= 0.0005  # mm rounding


def test_synth_never_overwrites_other_data(tmp_path):
    keep = tmp_path / "photos"
    keep.mkdir()
    (keep / "mine.jpg").write_bytes(b"x")
    with pytest.raises(InputError, match="not a synthetic dataset"):
        synth(2, keep)
    assert (keep / "mine.jpg").read_bytes() == b"x"


def _voc_copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_bad_samples_each_say_why(tmp_path, seg_set):
    root = _voc_copy(seg_set, tmp_path / "voc")
    (root / "JPEGImages" / "synth_000000.jpg").write_bytes(b"not a jpeg")
    lab = np.zeros((30, 40), np.uint8)
    Image.fromarray(lab, mode="L").save(root / "SegmentationClass" / "synth_000001.png")
    big = np.array(Image.open(root / "SegmentationClass" / "synth_000002.png"))
    big[0, 0] = 40
    Image.fromarray(big, mode="L").save(root / "SegmentationClass" / "synth_000002.png")
    (root / "JPEGImages" / "synth_000003.jpg").unlink()
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(root / "SegmentationClass" / "synth_000004.png")
    ds = open_dataset(root)
    reasons = []
    for s in ds.samples[:5]:
        with pytest.raises(BadSample) as exc:
            load_sample(s, num_classes=21)
        reasons.append(str(exc.value))
    assert "does not decode" in reasons[0]
    assert "size mismatch" in reasons[1]
    assert "label out of range: 40" in reasons[2]
    assert "image missing" in reasons[3]
    assert "not a palette" in reasons[4]
    load_sample(ds.samples[5], num_classes=21)  # the rest are fine


def test_flat_matting_layout(tmp_path):
    img = np.full((20, 30, 3), 128, np.uint8)
    cv2.imwrite(str(tmp_path / "a.jpg"), img)
    cv2.imwrite(str(tmp_path / "a_alpha_pred.png"), np.zeros((20, 30), np.uint8))
    cv2.imwrite(str(tmp_path / "b.jpg"), img)  # no alpha: not a sample, listed as ignored
    ds = open_dataset(tmp_path)
    assert ds.task == "matting" and [s.name for s in ds.samples] == ["a"] and "b.jpg" in ds.ignored[0]


def test_evaluate_segmentation_local(tmp_path, bundles, seg_set):
    r = evaluate(bundles["segmentation"], seg_set, out_dir=tmp_path / "rep", resamples=200, shard_size=3)
    files = [f["file"] for f in r["files"]]
    assert files == ["tinyseg_float32.tflite", "tinyseg_int8.tflite"]  # float32 first: the reference
    assert r["files"][1]["roles"] == ["handoff"]
    assert r["dataset"]["evaluated"] == 8 and len(r["per_image"]) == 8
    assert [p["index"] for p in r["per_image"]] == list(range(8))
    f32, i8 = r["figures"]["tinyseg_float32.tflite"], r["figures"]["tinyseg_int8.tflite"]
    assert "drop_vs_float32" not in f32 and set(i8["drop_vs_float32"]) == {"miou", "pixel_accuracy", "boundary_f"}
    for figs in (f32, i8):
        assert (
            0 <= figs["miou"] <= 1
            and figs["ci95"]["miou"][0] <= figs["miou"] + 1e-12 <= figs["ci95"]["miou"][1] + 2e-12
        )
    assert i8["drop_vs_float32"]["miou"] == pytest.approx(f32["miou"] - i8["miou"])
    # the set's mIoU is the IoU of the summed confusion matrices, recomputed here from the per-image rows
    from toolchain.evaluate import truth_metrics as M

    conf = sum(M.dense_confusion(p["models"]["tinyseg_float32.tflite"]["confusion"], 21) for p in r["per_image"])
    assert f32["miou"] == pytest.approx(M.miou(conf))
    assert conf.sum() == 8 * 60 * 80
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert rep["per_image"] == json.loads(json.dumps(r["per_image"]))
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "tinyseg_int8.tflite" in html and "IoU per class" in html
    assert any("drop" in line for line in summary_lines(r))


def test_more_than_one_percent_bad_fails_after_writing_the_report(tmp_path, bundles, seg_set):
    root = _voc_copy(seg_set, tmp_path / "voc")
    (root / "JPEGImages" / "synth_000005.jpg").write_bytes(b"")
    with pytest.raises(InputError, match=r"1 of 8 samples are bad \(12.5% > 1%\)"):
        evaluate(bundles["segmentation"], root, out_dir=tmp_path / "rep", resamples=50)
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert rep["bad_samples"] == [{"name": "synth_000005", "reason": "image does not decode: synth_000005.jpg"}]
    assert rep["dataset"]["evaluated"] == 7  # listed and skipped, never counted
    r = evaluate(bundles["segmentation"], root, out_dir=tmp_path / "rep2", resamples=50, max_bad_fraction=0.2)
    assert r["dataset"]["bad"] == 1 and len([p for p in r["per_image"] if "models" in p]) == 7


def test_evaluate_matting_and_depth(tmp_path, bundles):
    mat = synth(3, tmp_path / "mat", task="matting", size=(60, 80)).root
    r = evaluate(bundles["segmentation"], mat, out_dir=tmp_path / "m", resamples=50)
    figs = r["figures"]["tinyseg_int8.tflite"]
    assert set(figs["drop_vs_float32"]) == {"sad_k", "mse", "grad_k", "conn_k", "holes", "ghosts"} and figs["sad_k"] > 0
    dep = synth(3, tmp_path / "dep", task="depth", size=(60, 80)).root
    r = evaluate(bundles["depth"], dep, out_dir=tmp_path / "d", resamples=50)
    figs = r["figures"]["tinydepth_float32.tflite"]
    assert r["settings"]["align"] == "inverse" and 0 <= figs["delta1"] <= 1 and figs["rmse"] > 0
    with pytest.raises(InputError, match="depth model"):
        evaluate(bundles["depth"], mat, out_dir=tmp_path / "x")


def test_cli_local_run_does_not_import_ray(tmp_path, bundles, seg_set):
    code = (
        "import sys; from toolchain.cli import main; "
        f"rc = main(['evaluate', {str(bundles['segmentation'])!r}, '--dataset', {str(seg_set)!r}, "
        f"'--report-dir', {str(tmp_path)!r}, '--resamples', '20', '--no-progress']); "
        "assert 'ray' not in sys.modules, 'local engine imported ray'; sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "tinyseg_int8.tflite (handoff)" in out.stdout and (tmp_path / "report.html").is_file()


def test_voc_palette_matches_pascal():
    pal = datasets.voc_palette()
    assert (
        pal[15].tolist() == [192, 128, 128] and pal[8].tolist() == [64, 0, 0] and pal[255].tolist() == [224, 224, 192]
    )


def test_cli_dataset_synth(tmp_path, capsys):
    from toolchain.cli import main

    assert (
        main(
            [
                "dataset",
                "synth",
                "--n",
                "2",
                "--out",
                str(tmp_path / "d"),
                "--task",
                "matting",
                "--size",
                "40x48",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "2 samples" in capsys.readouterr().out
    assert cv2.imread(str(tmp_path / "d" / "alpha" / "synth_000001.png"), cv2.IMREAD_UNCHANGED).shape == (40, 48)
    assert main(["dataset", "synth", "--n", "2", "--out", str(tmp_path / "e"), "--size", "40by48"]) == 2
    assert "bad --size" in capsys.readouterr().err


def test_shared_photos_and_depth_photos_read_as_sets(shared_dir):
    photos = open_dataset(shared_dir / "photos")
    assert photos.task == "matting" and len(photos.samples) >= 4
    assert all(Path(s.truth).name.startswith(s.name + "_alpha") for s in photos.samples)
    rgb, alpha = load_sample(photos.samples[0])
    assert rgb.shape[:2] == alpha.shape and 0.0 <= alpha.min() and alpha.max() <= 1.0
    depth = open_dataset(shared_dir / "depth_photos")
    assert depth.task == "depth" and len(depth.samples) >= 3
    for s in depth.samples:
        _, d = load_sample(s)
        assert np.isfinite(d).all() and (d > 0).mean() > 0.9


def test_onnx_file_of_the_bundle_runs_in_onnxruntime(tmp_path, bundles, seg_set):
    """An ONNX file in the manifest is evaluated too: here a 1x1 convolution whose logits favour
    class 15 on bright pixels, so its figures differ from the float32 .tflite's."""
    import shutil

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    b = tmp_path / "tinyseg"
    shutil.copytree(bundles["segmentation"], b)
    w = np.zeros((21, 3, 1, 1), np.float32)
    w[15] = 1.0 / 255
    bias = np.zeros(21, np.float32)
    bias[0] = 1.5
    graph = helper.make_graph(
        [
            helper.make_node("Transpose", ["x"], ["xc"], perm=[0, 3, 1, 2]),
            helper.make_node("Conv", ["xc", "w", "b"], ["yc"]),
            helper.make_node("Transpose", ["yc"], ["y"], perm=[0, 2, 3, 1]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 33, 33, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 33, 33, 21])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias, "b")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), b / "tinyseg_float32.onnx")
    m = json.loads((b / "manifest.json").read_text())
    m["models"]["tinyseg_float32.onnx"] = {"precision": "float32"}
    (b / "manifest.json").write_text(json.dumps(m))
    record_files(b, "tinyseg_float32.onnx")  # listed with its SHA-256, as an export lists it
    r = evaluate(b, seg_set, out_dir=tmp_path / "rep", resamples=50)
    files = {f["file"]: f["precision"] for f in r["files"]}
    assert files["tinyseg_float32.onnx"] == "float32 onnx"
    figs = r["figures"]["tinyseg_float32.onnx"]
    assert 0 <= figs["miou"] <= 1 and figs["miou"] != r["figures"]["tinyseg_float32.tflite"]["miou"]
    only = evaluate(b, seg_set, out_dir=tmp_path / "rep2", resamples=50, precisions=["onnx"])
    assert [f["file"] for f in only["files"]] == ["tinyseg_float32.tflite", "tinyseg_float32.onnx"]
