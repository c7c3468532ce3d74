"""The uxai command line, end to end on built-in models and on user files.

``runner.invoke(app, ...)`` goes through ``UXAIGroup.main``, the same path as the ``uxai`` entry point
(``unified_xai.cli:main``): one-line errors, exit status 2 on bad input.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import unified_xai as ux
from unified_xai.cli import app, main
from unified_xai.core import storage

runner = CliRunner()


def _ok(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def _fails(args, status=2):
    """The command fails with ``status`` and prints exactly one line, on stderr, starting with 'error:'."""
    result = runner.invoke(app, args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == status, result.output
    assert len(lines) == 1, result.output
    assert result.stderr.startswith("error: ") and not result.stdout.strip(), result.output
    return lines[0]


def _folders(root):
    return sorted(str(p.parent.relative_to(root)) for p in root.rglob("explanation.h5"))


# --------------------------------------------------------------------------- basics
def test_help_everywhere():
    for command in ([], ["list"], ["info"], ["explain"], ["demo"], ["describe"]):
        assert "Usage" in _ok(command + ["--help"])


def test_no_command_shows_the_help_without_error():
    result = runner.invoke(app, [])
    assert "Usage" in result.output and "error:" not in result.output


def test_version():
    assert _ok(["--version"]).strip() == f"uxai (unified-xai) {ux.__version__}"


def test_list_shows_explainers_and_builtins():
    out = _ok(["list"])
    for name in ("wam", "saliency", "sobol", "planted-image", "digits"):
        assert name in out


def test_info_lists_layers_and_classes():
    out = _ok(["info", "digits"])
    assert "output shape" in out and "(1, 10)" in out and "classes (10" in out


def test_describe_shows_params_defaults_and_doc():
    from unified_xai.cli import docstring_params

    cls = ux.core.registry.get_explainer_class("wam")
    out = _ok(["describe", "wam"])
    assert out.startswith("wam: ") and "where" in out.splitlines()[0]
    for name, spec in cls.params.items():
        line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        assert f"default {spec.default!r}" in line and spec.describe() in line
        doc = spec.doc or docstring_params(cls).get(name, "")
        assert doc and " ".join(doc.split()) in " ".join(out.split()), name
    assert "default 25" in out and "int >= 1" in out
    assert "unknown explainer 'wamm'" in _fails(["describe", "wamm"])


# --------------------------------------------------------------------------- bad input: one line, status 2
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def files(tmp_path):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 3, 32, 32), dtype=np.float32))  # digits takes 1 channel
    state = tmp_path / "weights.pt"
    torch.save(ux.data.load_model("digits", pretrained=False).model.state_dict(), state)
    return {"wrong": str(wrong), "state": str(state), "missing": str(tmp_path / "missing.png"), "out": str(tmp_path)}


BAD_INPUT = {
    "unknown model": (["explain", "no-such-model"], "unknown model 'no-such-model'"),
    "unknown method": (["explain", "digits", "-m", "wamm"], "closest: 'wam'"),
    "bad param value": (["explain", "digits", "-m", "wam", "-p", "n_samples=-1"], "'n_samples' got -1"),
    "unknown param": (["explain", "digits", "-m", "wam", "-p", "n_sample=4"], "unknown parameter 'n_sample'"),
    "param syntax": (["explain", "digits", "-p", "n_samples"], "NAME=VALUE"),
    "missing input file": (["explain", "digits", "{missing}"], "does not exist"),
    "wrong input shape": (["explain", "digits", "{wrong}", "-m", "saliency"], "wrong.npy"),
    "bad target name": (["explain", "planted-image", "--target", "corase", "-m", "saliency", "--n", "1"],
                        "'coarse'"),
    "target out of range": (["explain", "planted-image", "--target", "7", "-m", "saliency", "--n", "1"], "7"),
    "n negative": (["explain", "digits", "--n", "-1"], "--n must be at least 1"),
    "n zero": (["explain", "digits", "--n", "0"], "--n must be at least 1"),
    "n too large": (["explain", "digits", "--n", "100000"], "give --n between 1 and"),
    "n not a number": (["explain", "digits", "--n", "many"], "Invalid value for '--n'"),
    "bad input shape": (["explain", "digits", "--input-shape", "3,abc"], "--input-shape takes C,SPATIAL"),
    "input shape too short": (["explain", "digits", "--input-shape", "3"], "--input-shape takes C,SPATIAL"),
    "checkpoint without arch": (["explain", "{state}"], "--arch"),
    "missing checkpoint": (["explain", "nowhere.pt"], "does not exist"),
    "bad batch size": (["explain", "digits", "--batch-size", "0"], "--batch-size"),
    "seed not taken": (["explain", "digits", "-m", "saliency", "--seed", "3"], "saliency takes no seed"),
    "layer unknown": (["explain", "digits", "-m", "gradcam", "--layer", "nope", "--n", "1"], "'nope'"),
    "demo limit": (["demo", "--limit", "0"], "--limit must be at least 1"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT), ids=list(BAD_INPUT))
def test_bad_input_is_one_line_with_status_2(case, files):
    args, expected = BAD_INPUT[case]
    args = [a.format(**files) for a in args] + ["--out", files["out"], "--no-progress"] * (args[0] == "explain")
    assert expected in _fails(args)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu_is_one_line(tmp_path):
    line = _fails(["explain", "digits", "--device", "cuda", "--out", str(tmp_path)])
    assert "no CUDA GPU" in line and "--device cpu" in line
    assert "no CUDA GPU" in _fails(["info", "digits", "--device", "cuda:0"])


def test_debug_shows_the_traceback(tmp_path):
    result = runner.invoke(app, ["--debug", "explain", "digits", "-m", "wamm", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "Traceback" in result.stderr and "UnknownNameError" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: unknown explainer")
    # accepted anywhere on the line
    result = runner.invoke(app, ["explain", "digits", "-m", "wamm", "--debug", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "Traceback" in result.stderr


def test_unexpected_error_is_one_line_with_status_1(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something deep broke\nwith two lines")

    monkeypatch.setattr(ux.data, "load_model", broken)
    line = _fails(["explain", "digits", "--out", str(tmp_path)], status=1)
    assert "RuntimeError: something deep broke with two lines" in line and "--debug" in line
    result = runner.invoke(app, ["--debug", "explain", "digits", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" in result.stderr


def test_main_returns_the_status_without_exiting(capsys):
    assert main(["explain", "no-such-model"], standalone_mode=False) == 2
    assert capsys.readouterr().err.startswith("error: unknown model")
    assert main(["--version"], standalone_mode=False) == 0


# --------------------------------------------------------------------------- runs and their folders
@pytest.mark.parametrize("model, method, extra", [
    ("planted-audio", "wam", ["-p", "n_samples=2"]),
    ("planted-volume", "wam", ["-p", "n_samples=2"]),
    ("digits", "sobol", ["-p", "grid_size=4", "-p", "n_designs=8", "--batch-size", "4"]),
    ("digits", "sobol_wavelet", ["-p", "n_designs=4", "-p", "levels=2", "-p", "grid_size=2"]),
])
def test_explain_builtin(tmp_path, model, method, extra):
    out = _ok(["explain", model, "--method", method, "--n", "2", "--out", str(tmp_path), "--no-progress", *extra])
    (h5,) = tmp_path.rglob("explanation.h5")
    assert h5.parent.parent.name == model and h5.parent.name.startswith(method) and h5.parent.name.endswith("-n2")
    assert str(h5) in out and "parameters:" in out and "target" in out
    loaded = ux.Explanation.load(h5)
    assert loaded.method == method and len(loaded) == 2
    pngs = sorted(h5.parent.glob("*.png"))
    assert [p.name for p in pngs] == ["test-000.png", "test-001.png"] and all(p.stat().st_size > 1000 for p in pngs)


def test_run_folders_never_collide(tmp_path):
    base = ["explain", "planted-image", "--n", "1", "--out", str(tmp_path), "--no-progress"]
    _ok(base + ["-m", "wam", "--variant", "smoothgrad", "-p", "n_samples=2"])
    _ok(base + ["-m", "wam", "--variant", "integrated", "-p", "n_samples=2"])
    _ok(base + ["-m", "saliency"])
    _ok(base[:2] + ["--n", "2"] + base[4:] + ["-m", "saliency"])
    _ok(["explain", "digits", "--n", "1", "-m", "saliency", "--out", str(tmp_path), "--no-progress"])
    folders = _folders(tmp_path)
    assert folders == sorted(["planted-image/wam-smoothgrad-n_samples2-n1", "planted-image/wam-n_samples2-n1",
                              "planted-image/saliency-n1", "planted-image/saliency-n2", "digits/saliency-n1"])
    variants = {ux.Explanation.load(tmp_path / f / "explanation.h5").params.get("variant") for f in folders}
    assert {"smoothgrad", "integrated"} <= variants
    # a rerun with identical settings replaces its own folder only
    h5 = tmp_path / "planted-image/saliency-n1/explanation.h5"
    before = h5.stat().st_mtime_ns
    _ok(base + ["-m", "saliency"])
    assert _folders(tmp_path) == folders and h5.stat().st_mtime_ns != before


def test_one_png_per_input_and_default_settings_folder(tmp_path):
    out = _ok(["explain", "planted-image", "-m", "saliency", "--out", str(tmp_path), "--no-progress"])
    folder = tmp_path / "planted-image" / "saliency"
    assert sorted(p.name for p in folder.iterdir()) == ["explanation.h5"] + [f"test-00{i}.png" for i in range(4)]
    assert "(all defaults)" in out and out.count(".png") == 4


def test_target_by_class_name(tmp_path):
    adapter = ux.data.load_model("planted-image")
    coarse = [c.lower() for c in adapter.class_names].index("coarse")
    out = _ok(["explain", "planted-image", "-m", "saliency", "--n", "2", "--target", "COARSE", "--out", str(tmp_path),
               "--no-progress"])
    (h5,) = tmp_path.rglob("explanation.h5")
    assert h5.parent.name == "saliency-target_coarse-n2"
    assert ux.Explanation.load(h5).targets.tolist() == [coarse, coarse]
    assert f"target {coarse} 'coarse'" in out
    # an index means the same class: the same folder
    _ok(["explain", "planted-image", "-m", "saliency", "--n", "2", "--target", str(coarse), "--out", str(tmp_path),
         "--no-progress"])
    assert len(_folders(tmp_path)) == 1


def test_seed_and_layer_reach_the_explainer(tmp_path):
    _ok(["explain", "digits", "-m", "smoothgrad", "--seed", "7", "-p", "n_samples=2", "--n", "1", "--out",
         str(tmp_path), "--no-progress"])
    layer = ux.data.load_model("digits").layer_names()[0]
    _ok(["explain", "digits", "-m", "gradcam", "--layer", layer, "--n", "1", "--out", str(tmp_path), "--no-progress"])
    loaded = {p.parent.name: ux.Explanation.load(p) for p in tmp_path.rglob("explanation.h5")}
    assert loaded["smoothgrad-n_samples2-seed7-n1"].seed == 7
    assert loaded[f"gradcam-layer_{layer}-n1"].params["layer"] == layer


def test_module_factory_from_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    (tmp_path / "uxai_cli_factory_models.py").write_text(
        "from torch import nn\n"
        "def make():\n"
        "    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),"
        " nn.Flatten(), nn.Linear(4, 3))\n")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((2, 1, 20, 20), dtype=np.float32))
    line = _fails(["explain", "uxai_cli_factory_models:make", "x.npy", "-m", "saliency"])
    assert "--input-shape" in line
    out = _ok(["explain", "uxai_cli_factory_models:make", "x.npy", "-m", "saliency", "--input-shape", "1,20,20",
               "--out", "o", "--no-progress"])
    (h5,) = (tmp_path / "o").rglob("explanation.h5")
    assert h5.parent.parent.name == "uxai_cli_factory_models_make-1x20x20" and "x.npy" not in out
    assert len(ux.Explanation.load(h5)) == 2 and len(list(h5.parent.glob("*.png"))) == 2
    _ok(["explain", "uxai_cli_factory_models:make", "x.npy", "-m", "saliency", "--input-shape", "1,none,none",
         "--out", "o", "--no-progress"])
    assert len(list((tmp_path / "o").rglob("explanation.h5"))) == 2
    sys.modules.pop("uxai_cli_factory_models", None)


def test_batch_size_auto(tmp_path):
    _ok(["explain", "digits", "-m", "saliency", "--n", "1", "--batch-size", "auto", "--out", str(tmp_path),
         "--no-progress"])
    assert _folders(tmp_path) == ["digits/saliency-n1"]  # the chunk size never changes the result: not named


def test_checkpoint_with_arch(tmp_path, files):
    out = _ok(["explain", files["state"], "--arch", "digits", "-m", "saliency", "--n", "1", "--out",
               str(tmp_path / "o"), "--no-progress"])
    (h5,) = (tmp_path / "o").rglob("explanation.h5")
    assert h5.parent.parent.name.startswith("weights-") and "arch_digits" in h5.parent.parent.name
    assert ux.Explanation.load(h5).where.shape == (1, 32, 32) and str(h5) in out


def test_explain_user_files(tmp_path):
    from PIL import Image
    import soundfile

    image = tmp_path / "img.png"
    Image.fromarray((np.random.default_rng(0).random((40, 50)) * 255).astype(np.uint8)).save(image)
    out = _ok(["explain", "digits", str(image), "--method", "saliency", "--out", str(tmp_path / "a")])
    (h5,) = (tmp_path / "a").rglob("explanation.h5")
    assert ux.Explanation.load(h5).where.shape == (1, 32, 32) and (h5.parent / "img.png").exists()
    assert "conversions:" in out and "img.png" in out  # the loader's notes are shown

    wav = tmp_path / "clip.wav"
    soundfile.write(wav, np.random.default_rng(0).standard_normal(5000).astype(np.float32) * 0.1, 8000)
    _ok(["explain", "planted-audio", str(wav), "--method", "wam", "-p", "n_samples=2", "--out", str(tmp_path / "b")])
    tensor = tmp_path / "x.pt"
    torch.save(torch.rand(3, 1, 32, 32), tensor)
    _ok(["explain", "digits", str(tensor), "--method", "saliency", "--out", str(tmp_path / "d")])
    (h5,) = (tmp_path / "d").rglob("explanation.h5")
    assert len(ux.Explanation.load(h5)) == 3 and len(list(h5.parent.glob("*.png"))) == 3
    # other files, other folder
    torch.save(torch.rand(1, 1, 32, 32), tmp_path / "y.pt")
    _ok(["explain", "digits", str(tmp_path / "y.pt"), "--method", "saliency", "--out", str(tmp_path / "d")])
    assert len(list((tmp_path / "d").rglob("explanation.h5"))) == 2


# --------------------------------------------------------------------------- temporaries of killed runs
def test_atomic_writes_use_recognisable_temporaries(tmp_path):
    target = tmp_path / "f.bin"
    with storage.atomic_write(target) as handle:
        (tmp,) = [p for p in tmp_path.iterdir()]
        assert tmp.name.startswith(".f.bin.") and tmp.name.endswith(".uxai-tmp")
        assert storage.temporary_owner(tmp) == os.getpid()
        handle.write(b"abc")
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"] and target.read_bytes() == b"abc"
    assert storage.temporary_owner(target) is None


def test_stale_temporaries_are_cleaned(tmp_path):
    dead = _dead_pid()
    run = tmp_path / "planted-image" / "saliency-n1"
    run.mkdir(parents=True)
    stale = run / f".explanation.h5.{dead}.k2j4_x9q.uxai-tmp"
    stale_top = tmp_path / f".other.png.{dead}.abcdefgh.uxai-tmp"
    live = run / f".test-000.png.{os.getpid()}.abcdefgh.uxai-tmp"  # a writer that still runs
    unrelated = run / ".notes.tmp"
    for path in (stale, stale_top, live, unrelated):
        path.write_bytes(b"partial")
    assert storage.clean_stale_temporaries(tmp_path, depth=0) == [stale_top]
    out = _ok(["explain", "planted-image", "-m", "saliency", "--n", "1", "--out", str(tmp_path), "--no-progress"])
    assert not stale.exists() and live.exists() and unrelated.exists()
    assert "removed 1 temporary file" in out
    assert storage.clean_stale_temporaries(tmp_path / "missing") == []


def test_gitignore_matches_the_temporaries():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    patterns = open(os.path.join(root, ".gitignore")).read().split()
    assert f"*{storage.TEMP_SUFFIX}" in patterns


# --------------------------------------------------------------------------- demo
def test_demo_writes_reports_and_an_index(tmp_path):
    """The demo runs the combined report per model and links the reports from one index."""
    out = _ok(["demo", "--out", str(tmp_path), "--limit", "1", "--model", "planted-image", "--no-progress"])
    assert "done" in out and str((tmp_path / "index.html").resolve()) in out
    assert (tmp_path / "planted-image" / "report.h5").exists() and (tmp_path / "planted-image" / "index.html").exists()
    assert 'href="planted-image/index.html"' in (tmp_path / "index.html").read_text()
    assert len(ux.Report.load(tmp_path / "planted-image").inputs) == 1
    assert "--model 'nope' is not a built-in model" in _fails(["demo", "--model", "nope"])
