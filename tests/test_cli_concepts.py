"""``uxai concepts``: CRAFT concept banks of classes, stored and reused, with one figure per class.

Small settings throughout (planted-image, 3 concepts, 4 images, 32-pixel crops, 2 WAM samples) so the
whole file runs in well under a minute on a laptop CPU.
"""
from __future__ import annotations

import re

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

import unified_xai as ux

from test_cli import _fails, _ok, runner  # noqa: F401  (the CLI tests' runner and exit-status checks)

matplotlib.use("Agg")
MODEL = "planted-image"
SMALL = ["--n-concepts", "3", "--max-images", "4", "--patch-size", "32", "--wam-samples", "2", "--batch-size", "64",
         "--no-progress"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same command twice: the first fits and writes, the second reuses the bank."""
    out = tmp_path_factory.mktemp("concepts")
    args = ["concepts", MODEL, "--class", "fine", "--out", str(out), *SMALL]
    return out, [_ok(args), _ok(args)]


def test_help():
    text = _ok(["concepts", "--help"])
    assert "Usage" in text and "--class" in text and "--images" in text


def test_writes_the_bank_and_the_figure(runs):
    out, (first, _) = runs
    folder = out / MODEL / "concepts"
    (bank_path,) = (folder / "banks").glob("*.h5")
    figure = folder / "fine.png"
    assert figure.is_file() and figure.stat().st_size > 5000
    assert Image.open(figure).size[0] > 600
    assert "fitted bank" in first and "reused bank" not in first
    assert str(bank_path) in first and str(figure) in first
    assert "layer 'features' (the last non-negative layer with a spatial grid" in first
    assert "class 0 'fine'" in first and "4 item(s) of planted-image (test)" in first
    assert re.search(r"\d+ crops of 32x32 px \(resized", first)
    assert len(re.findall(r"^  concept \d  importance \d\.\d{3}  scales: approximation", first, re.M)) == 3
    bank = ux.concepts.ConceptBank.load(bank_path)
    assert bank.class_name == "fine" and bank.class_id == 0 and bank.layer == "features" and bank.n_concepts == 3
    assert bank.model_id == MODEL and bank.top_crop_images_.shape[-2:] == (32, 32)
    assert torch.all(bank.importances_[:-1] >= bank.importances_[1:])  # most important first


def test_second_run_reuses_the_bank(runs):
    out, (first, second) = runs
    assert "reused bank" in second and "fitted bank" not in second
    assert "scale profiles: reused" in second
    assert len(list((out / MODEL / "concepts" / "banks").glob("*.h5"))) == 1
    importances = [re.findall(r"importance (\d\.\d{3})", text) for text in (first, second)]
    assert importances[0] == importances[1]  # (no timing assertion: these machines are noisy)


def test_images_folder(tmp_path):
    data = ux.data.load_dataset(MODEL, split="test")
    x = data.inputs[data.targets == 2][:3].numpy()
    folder = tmp_path / "coarse"
    folder.mkdir()
    np.save(folder / "a.npy", x[0])
    np.save(folder / "b.npy", x[1])
    Image.fromarray((x[2].transpose(1, 2, 0) * 255).round().clip(0, 255).astype("uint8")).save(folder / "c.png")
    (folder / "notes.txt").write_text("not an image")
    text = _ok(["concepts", MODEL, "--class", "coarse", "--images", str(folder), "--out", str(tmp_path / "out"),
                "--no-scales", *SMALL])
    assert "3 input(s) from 3 file(s)" in text and "skipped 1 other file(s): notes.txt" in text
    (bank_path,) = (tmp_path / "out" / MODEL / "concepts" / "banks").glob("*.h5")
    bank = ux.concepts.ConceptBank.load(bank_path)
    assert bank.class_name == "coarse" and bank.importances_per_image_.shape[0] == 3
    assert (tmp_path / "out" / MODEL / "concepts" / "coarse.png").is_file()
    assert "scales:" not in text


@pytest.fixture
def places(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a.txt").write_text("x")
    one = tmp_path / "one.npy"
    np.save(one, np.zeros((3, 64, 64), dtype=np.float32))
    return {"empty": str(empty), "texts": str(texts), "file": str(one), "missing": str(tmp_path / "nowhere"),
            "out": str(tmp_path / "out")}


BAD = {
    "no class": ([], "Missing option '--class'"),
    "bad class name": (["--class", "corase"], "closest: 'coarse'"),
    "class out of range": (["--class", "9"], "out of range"),
    "unknown layer": (["--class", "fine", "--layer", "nope"], "no layer named 'nope'"),
    "negative layer": (["--class", "fine", "--layer", "features.0"], "'features.1', 'features.3', 'features'"),
    "missing images folder": (["--class", "fine", "--images", "{missing}"], "does not exist"),
    "empty images folder": (["--class", "fine", "--images", "{empty}"], "(it is empty)"),
    "folder without images": (["--class", "fine", "--images", "{texts}"], "holds a.txt"),
    "images is a file": (["--class", "fine", "--images", "{file}"], "is a file"),
    "images for two classes": (["--class", "fine", "--class", "mid", "--images", "{empty}"], "one class"),
    "images and dataset": (["--class", "fine", "--images", "{empty}", "--dataset", MODEL], "not both"),
    "dataset of another shape": (["--class", "fine", "--dataset", "digits"], "does not fit"),
    "zero concepts": (["--class", "fine", "--n-concepts", "0"], "--n-concepts must be at least 1"),
    "zero images": (["--class", "fine", "--max-images", "0"], "--max-images must be at least 1"),
    "bad batch size": (["--class", "fine", "--batch-size", "0"], "--batch-size"),
    "patch larger than the inputs": (["--class", "fine", "--patch-size", "100"], "larger than the inputs (64, 64)"),
    "bad split": (["--class", "fine", "--split", "nope"], "split must be one of"),
    "two classes in a comma list with images": (["--class", "0,1", "--images", "{texts}"], "one class"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_is_one_line_with_status_2(case, places):
    args, expected = BAD[case]
    line = _fails(["concepts", MODEL, *[a.format(**places) for a in args], "--out", places["out"], "--no-progress"])
    assert expected in line, line


def test_class_absent_from_the_dataset(tmp_path, monkeypatch):
    full = ux.data.load_dataset(MODEL, split="test")
    keep = full.targets != 3
    subset = ux.data.ArrayDataset(full.name, "test", full.inputs[keep], full.targets[keep], full.class_names)
    monkeypatch.setattr(ux.data, "load_dataset", lambda name, split="test": subset)
    line = _fails(["concepts", MODEL, "--class", "background", "--out", str(tmp_path), "--no-progress"])
    assert "no item of class 3 'background'" in line and "--images" in line


# --------------------------------------------------------------------------- the figure, every modality
def _bank(crops: torch.Tensor, K: int = 2) -> ux.concepts.ConceptBank:
    return ux.concepts.ConceptBank(
        concepts_=torch.rand(K, 8), importances_=torch.tensor([0.6, 0.3])[:K], layer="features", class_id=1,
        class_name="tone", model_id="toy", crop_boxes_=torch.zeros(20, 1 + crops.ndim - 3, dtype=torch.long),
        importances_per_image_=torch.rand(5, K), top_crop_images_=crops)


@pytest.mark.parametrize("crops", [torch.rand(2, 7, 3, 16, 16), torch.rand(2, 4, 1, 256), torch.rand(2, 3, 1, 8, 8, 8)],
                         ids=["image", "signal", "volume"])
def test_plot_concept_bank(crops):
    import matplotlib.pyplot as plt

    from unified_xai.plotting import plot_concept_bank

    profiles = torch.tensor([[0.1, 0.2, 0.7], [0.0, 0.0, 0.0]])
    fig = plot_concept_bank(_bank(crops), profiles, ["approximation", "level 2 (coarsest)", "level 1 (finest)"],
                            sample_rate=8000 if crops.ndim == 4 else None)
    texts = [ax.get_title(loc) for ax in fig.axes for loc in ("left", "center")]
    texts += [t.get_text() for ax in fig.axes for t in ax.texts] + [fig._suptitle.get_text()]
    assert any("concept 0\n(importance 0.60)" in t for t in texts)
    assert any("“tone”" in t and "model toy" in t and "layer features" in t for t in texts)
    assert any("70 %" in t for t in texts) and any("no profile" in t for t in texts)
    assert sum(1 for t in texts if t.startswith("top crop")) == min(6, crops.shape[1])
    plt.close(fig)
    with pytest.raises(ux.UXAIError):
        plot_concept_bank(_bank(crops), torch.rand(3, 3))


def test_damaged_scale_profiles_are_recomputed(runs, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(runs[0], out)
    (cache,) = (out / MODEL / "concepts" / "banks").glob("*.json")
    cache.write_text("{not json")
    text = _ok(["concepts", MODEL, "--class", "fine", "--out", str(out), *SMALL])
    assert "reused bank" in text and "scale profiles: wam" in text
    assert cache.read_text().startswith("{") and '"profiles"' in cache.read_text()


# ---------------------------------------------------------------- uxai visualize (MACO)
VIZ = ["--steps", "3", "--crops", "2", "--no-progress"]


def test_visualize_a_logit_and_a_channel(tmp_path):
    text = _ok(["visualize", MODEL, "--logit", "coarse", "--out", str(tmp_path), *VIZ])
    folder = tmp_path / MODEL / "visualize"
    for name in ("logit-coarse.png", "logit-coarse_alpha.png", "logit-coarse.npz"):
        assert (folder / name).is_file() and str(folder / name) in text
    assert "MACO of logit(2): 3 steps x 2 views" in text
    rgba = np.asarray(Image.open(folder / "logit-coarse_alpha.png"))
    assert rgba.shape == (64, 64, 4) and rgba[..., 3].min() < rgba[..., 3].max()
    result = ux.featviz.MacoResult.load(folder / "logit-coarse.npz")
    assert result.config["steps"] == 3 and result.image.shape == (3, 64, 64)
    text = _ok(["visualize", MODEL, "--layer", "features", "--channel", "1", "--out", str(tmp_path), *VIZ])
    assert (folder / "features-channel1.png").is_file() and "channel(features, 1)" in text


def test_visualize_a_concept_caches_beside_its_bank(runs):
    out, _ = runs
    first = _ok(["visualize", MODEL, "--concept", "fine:0", "--out", str(out), *VIZ])
    (bank_path,) = (out / MODEL / "concepts" / "banks").glob("*.h5")
    cached = list(bank_path.with_suffix(".maco").glob("concept0-*.npz"))
    assert len(cached) == 1 and "concept 0 of class 0 'fine'" in first
    assert (out / MODEL / "visualize" / "concept-fine-0_alpha.png").is_file()
    stamp = cached[0].stat().st_mtime_ns
    _ok(["visualize", MODEL, "--concept", "fine:0", "--out", str(out), *VIZ])
    assert cached[0].stat().st_mtime_ns == stamp  # read, not optimised again


@pytest.mark.parametrize("args, message", [
    (["--logit", "1", "--layer", "features", "--channel", "0"], "exactly one of"),
    (["--layer", "features"], "--layer and --channel go together"),
    (["--layer", "featurez", "--channel", "0"], "no layer named 'featurez'"),
    (["--layer", "features", "--channel", "999"], "channel 999 does not exist"),
    (["--logit", "nope"], "nope"),
    (["--concept", "fine"], "CLASS:ID"),
    (["--concept", "mid:0"], "no concept bank of class 1 'mid'"),
    (["--logit", "1", "--steps", "0"], "--steps and --crops must be at least 1"),
    (["--logit", "1", "--spectrum", "missing.npz"], "is not a file"),
])
def test_visualize_bad_input_is_one_line(tmp_path, args, message):
    line = _fails(["visualize", MODEL, *VIZ, *args, "--out", str(tmp_path)])
    assert message in line


def test_concepts_with_maco_images(tmp_path):
    args = ["concepts", MODEL, "--class", "coarse", "--out", str(tmp_path), *SMALL, "--no-scales", "--maco", "2",
            "--maco-steps", "3"]
    text = _ok(args)
    (bank_path,) = (tmp_path / MODEL / "concepts" / "banks").glob("*.h5")
    cached = sorted(bank_path.with_suffix(".maco").glob("*.npz"))
    assert len(cached) == 2 and "MACO images of 2 concept(s) (3 steps)" in text
    assert (tmp_path / MODEL / "concepts" / "coarse.png").is_file()
    # the visualize command finds the same cache
    stamp = cached[0].stat().st_mtime_ns
    _ok(["visualize", MODEL, "--concept", "coarse:0", "--out", str(tmp_path), "--steps", "3", "--no-progress"])
    assert cached[0].stat().st_mtime_ns == stamp
