"""The uxai command line, end to end on built-in models and on user files."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import unified_xai as ux
from unified_xai.cli import app

runner = CliRunner()


def _ok(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_help_everywhere():
    for command in ([], ["list"], ["info"], ["explain"], ["demo"]):
        assert "Usage" in _ok(command + ["--help"])


def test_list_shows_explainers_and_builtins():
    out = _ok(["list"])
    for name in ("wam", "saliency", "sobol", "planted-image", "digits"):
        assert name in out


def test_info_lists_layers():
    out = _ok(["info", "digits"])
    assert "output shape" in out and "(1, 10)" in out


@pytest.mark.parametrize("model, method, extra", [
    ("planted-image", "wam", ["--variant", "smoothgrad", "-p", "n_samples=4"]),
    ("planted-audio", "wam", ["-p", "n_samples=4"]),
    ("planted-volume", "wam", ["-p", "n_samples=4"]),
    ("digits", "sobol", ["-p", "grid_size=4", "-p", "n_designs=8"]),
    ("digits", "sobol_wavelet", ["-p", "n_designs=8", "-p", "levels=2"]),
])
def test_explain_builtin(tmp_path, model, method, extra):
    out = _ok(["explain", model, "--method", method, "--n", "2", "--out", str(tmp_path), "--no-progress", *extra])
    h5 = next(tmp_path.glob("*.h5"))
    assert h5.name in out and next(tmp_path.glob("*.png")).stat().st_size > 1000
    loaded = ux.Explanation.load(h5)
    assert loaded.method == method and len(loaded) == 2


def test_explain_user_files(tmp_path):
    from PIL import Image
    import soundfile

    image = tmp_path / "img.png"
    Image.fromarray((np.random.default_rng(0).random((40, 50)) * 255).astype(np.uint8)).save(image)
    _ok(["explain", "digits", str(image), "--method", "saliency", "--out", str(tmp_path / "a")])
    assert ux.Explanation.load(next((tmp_path / "a").glob("*.h5"))).where.shape == (1, 32, 32)

    wav = tmp_path / "clip.wav"
    soundfile.write(wav, np.random.default_rng(0).standard_normal(5000).astype(np.float32) * 0.1, 8000)
    _ok(["explain", "planted-audio", str(wav), "--method", "wam", "-p", "n_samples=2", "--out", str(tmp_path / "b")])
    volume = tmp_path / "vol.npy"
    shape = ux.data.load_model("planted-volume").input_shape
    np.save(volume, np.random.default_rng(0).random(shape).astype(np.float32))
    _ok(["explain", "planted-volume", str(volume), "--method", "wam", "--variant", "gradient", "--out", str(tmp_path / "c")])
    tensor = tmp_path / "x.pt"
    torch.save(torch.rand(2, 1, 32, 32), tensor)
    _ok(["explain", "digits", str(tensor), "--method", "wam", "-p", "n_samples=2", "--out", str(tmp_path / "d")])
    assert len(ux.Explanation.load(next((tmp_path / "d").glob("*.h5")))) == 2


def test_explain_bad_method_and_file(tmp_path):
    result = runner.invoke(app, ["explain", "digits", "--method", "wamm", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "closest: 'wam'" in str(result.exception)
    result = runner.invoke(app, ["explain", "digits", str(tmp_path / "missing.png"), "--out", str(tmp_path)])
    assert result.exit_code != 0 and "does not exist" in str(result.exception)


def test_demo_writes_outputs(tmp_path):
    out = _ok(["demo", "--out", str(tmp_path), "--n", "2", "--method", "saliency"])
    assert "done" in out and len(list(tmp_path.glob("*.h5"))) == len(ux.data.list_models())
