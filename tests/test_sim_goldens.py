"""Golden vectors and the on-device checker (toolchain/device/goldens.py, toolchain/device/check.py) on a tiny
exported bundle: the simulator's own reference-kernel outputs pass, perturbed ones fail."""

import json
import shutil

import numpy as np
import pytest
from sim_fixtures import copy_bundle

from toolchain.device import check, goldens
from toolchain.errors import BundleError, InputError


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    b = copy_bundle(tmp_path_factory.mktemp("gold"), labels=True)
    goldens.write_goldens(b)
    return b


@pytest.fixture(scope="module")
def ref_outputs(bundle, tmp_path_factory):
    return goldens.dump_outputs(bundle, tmp_path_factory.mktemp("dev") / "ref", kernels="reference")


def _copy(src, tmp_path):
    dst = tmp_path / "dev"
    shutil.copytree(src, dst)
    return dst


def test_goldens_index_is_documented_and_complete(bundle):
    idx = json.loads((bundle / "goldens" / "goldens.json").read_text())
    assert idx["format"] == "portrait-goldens" and idx["format_version"] == 1
    stages = {v["stage"] for v in idx["vectors"]}
    assert stages == {"model", "fused"}
    names = [v["name"] for v in idx["vectors"]]
    assert len(names) == len(set(names))
    for v in idx["vectors"]:
        assert "metric" in v["tolerance"]
        for rec in (
            list(v["inputs"].values()) + list(v["expected"].values()) + list(v.get("float_reference", {}).values())
        ):
            arr = np.load(bundle / "goldens" / rec["file"])
            assert list(arr.shape) == rec["shape"] and arr.dtype.name == rec["dtype"]
        if v["stage"] == "model" and "labels" not in v["model_file"]:
            out = next(iter(v["expected"].values()))
            # raw integer output with its quantization: uint8 where the int8 core ends in the web output edge
            assert out["dtype"] in ("int8", "uint8") and out["scale"] > 0
            assert "float_reference" in v
    fused = next(v for v in idx["vectors"] if v["stage"] == "fused")
    assert set(fused["inputs"]) == {"image", "model_output", "depth_m", "confidence"}
    assert set(fused["expected"]) == {"alpha", "composite"}


def test_checker_passes_on_reference_kernel_outputs(bundle, ref_outputs):
    results = check.check_outputs(bundle, ref_outputs)
    assert results and all(r.passed for r in results), check.format_report(results)
    assert check.main(["--bundle", str(bundle), "--device-outputs", str(ref_outputs)]) == 0


def test_checker_passes_on_xnnpack_outputs(bundle, tmp_path):
    # a port on another correct int8 kernel library must pass the tolerance
    dev = goldens.dump_outputs(bundle, tmp_path / "xnn", kernels="xnnpack")
    results = check.check_outputs(bundle, dev)
    # labels vectors of this untrained model are almost all ties (argmax flips on one step of
    # rounding), so only the logits and fused vectors are held to the tolerance here
    assert all(r.passed for r in results if r.stage == "fused" or "labels" not in r.name), check.format_report(results)


def test_checker_fails_on_perturbed_model_output(bundle, ref_outputs, tmp_path, capsys):
    dev = _copy(ref_outputs, tmp_path)
    idx = goldens.read_index(bundle)
    v = next(v for v in idx["vectors"] if v["stage"] == "model" and "labels" not in v["model_file"])
    rec = next(iter(v["expected"].values()))
    a = np.load(dev / rec["file"]).astype(np.int32)
    info = np.iinfo(rec["dtype"])
    noise = np.random.default_rng(0).integers(-8, 9, a.shape)  # ~4 steps mean
    a = np.clip(a + noise, info.min, info.max).astype(rec["dtype"])
    np.save(dev / rec["file"], a)
    results = {r.name: r for r in check.check_outputs(bundle, dev)}
    assert not results[v["name"]].passed
    assert any("mean_abs_q" in f for f in results[v["name"]].failures)
    assert sum(not r.passed for r in results.values()) == 1
    assert check.main(["--bundle", str(bundle), "--device-outputs", str(dev)]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_checker_fails_on_perturbed_fused_output_and_accepts_small_noise(bundle, ref_outputs, tmp_path):
    dev = _copy(ref_outputs, tmp_path)
    v = next(v for v in goldens.read_index(bundle)["vectors"] if v["stage"] == "fused")
    f = dev / v["expected"]["composite"]["file"]
    c = np.load(f).astype(np.int32)
    c[::97, ::89] += 1  # one level on a few pixels: within tolerance
    np.save(f, np.clip(c, 0, 255).astype(np.uint8))
    assert all(r.passed for r in check.check_outputs(bundle, dev))
    c[:40, :40] = 255 - c[:40, :40]  # a wrong block
    np.save(f, np.clip(c, 0, 255).astype(np.uint8))
    r = next(r for r in check.check_outputs(bundle, dev) if r.name == v["name"])
    assert not r.passed and any(s.startswith("composite") for s in r.failures)


def test_raw_bin_device_outputs_are_read(bundle, ref_outputs, tmp_path):
    dev = _copy(ref_outputs, tmp_path)
    for p in list(dev.glob("*.npy")):
        p.with_suffix(".bin").write_bytes(
            np.ascontiguousarray(np.load(p)).astype(np.load(p).dtype.newbyteorder("<")).tobytes()
        )
        p.unlink()
    assert all(r.passed for r in check.check_outputs(bundle, dev))


def test_missing_and_malformed_device_files_fail_that_vector(bundle, ref_outputs, tmp_path):
    dev = _copy(ref_outputs, tmp_path)
    idx = goldens.read_index(bundle)
    v0, v1 = [v for v in idx["vectors"] if v["stage"] == "model"][:2]
    (dev / next(iter(v0["expected"].values()))["file"]).unlink()
    rec1 = next(iter(v1["expected"].values()))
    np.save(dev / rec1["file"], np.load(dev / rec1["file"]).astype(np.float32))
    res = {r.name: r for r in check.check_outputs(bundle, dev)}
    assert not res[v0["name"]].passed and "missing" in res[v0["name"]].failures[0]
    assert not res[v1["name"]].passed and "dtype" in res[v1["name"]].failures[0]


def test_bundle_without_goldens_is_a_clear_error(tmp_path, ref_outputs):
    import shutil

    from toolchain.bundle import record_files

    b = copy_bundle(tmp_path)
    shutil.rmtree(b / "goldens", ignore_errors=True)  # the export writes them; this bundle lost them
    with pytest.raises(BundleError, match="missing from the bundle") as e:  # its manifest still lists them
        check.check_outputs(b, ref_outputs)
    assert e.value.file.startswith("goldens/") and "copy the bundle again" in e.value.fix
    record_files(b, "goldens/")  # a bundle whose manifest lists no goldens: made without them
    with pytest.raises(InputError, match="no golden vectors") as e:
        check.check_outputs(b, ref_outputs)
    assert "toolchain.device.goldens" in e.value.fix
    assert check.main(["--bundle", str(b), "--device-outputs", str(ref_outputs)]) == 2


def test_goldens_cli_writes_into_an_existing_bundle(tmp_path):
    b = copy_bundle(tmp_path)
    assert goldens.main(["--bundle", str(b)]) == 0
    assert (b / "goldens" / "goldens.json").is_file()
    assert goldens.read_index(b)["vectors"]  # recorded in the manifest: the bundle is still intact
