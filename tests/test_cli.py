import subprocess
import sys

import pytest

from toolchain import cli


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["export", "--help"],
        ["models", "--help"],
        ["bench", "--help"],
        ["parity", "--help"],
        ["render", "--help"],
        ["sim", "--help"],
        ["check", "--help"],
    ],
)
def test_help_texts(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 0
    assert "usage: portrait" in capsys.readouterr().out


def test_models_where_prints_url_and_sha(capsys):
    assert cli.main(["models", "where", "deeplabv3_mnv2_pascal_257"]) == 0
    out = capsys.readouterr().out
    assert "https://" in out and "68a53978" in out


def test_export_with_no_model_files_names_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PORTRAIT_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("PORTRAIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PORTRAIT_OUT_DIR", str(tmp_path / "out"))
    monkeypatch.setattr(
        "toolchain.export.load_registry",
        lambda: {
            k: v
            for k, v in __import__("toolchain.registry", fromlist=["x"]).load_registry().items()
            if k.startswith("deeplab")
        },
    )
    code = cli.main(["export", "--all"])
    err = capsys.readouterr().err
    assert code == 1
    assert "deeplabv3_mnv2_pascal_257" in err and "deeplabv3_mnv2_pascal_513" in err
    assert "download.tensorflow.org" in err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "toolchain.cli", "models", "list"], capture_output=True, text=True)
    assert out.returncode == 0 and "deeplabv3_mnv2_pascal_257" in out.stdout
