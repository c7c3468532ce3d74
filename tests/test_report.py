"""Issue 12: the combined report (``ux.report``, ``uxai report``), its HDF5 file and its resumption.

The site itself (pages, pictures, the browser check) is tested in test_report_site.py.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import unified_xai as ux
from unified_xai.core import registry

from test_cli import _fails, _ok

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"wam": {"n_samples": 4}, "sobol": {"n_designs": 8}}


@pytest.fixture(scope="module")
def planted():
    return ux.data.load_model("planted-image", progress=False)


def _h5_numbers(path: Path) -> dict:
    """Every dataset of an HDF5 file, by its path (the numbers a report holds)."""
    found = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda name, obj: found.__setitem__(name, np.asarray(obj)) if isinstance(obj, h5py.Dataset)
                      else None)
    return found


def _same_numbers(a: Path, b: Path) -> None:
    left, right = _h5_numbers(a), _h5_numbers(b)
    assert sorted(left) == sorted(right)
    for name in left:
        assert np.array_equal(left[name], right[name], equal_nan=True), name


# ---------------------------------------------------------------------- content
def test_report_holds_every_answer_and_loads_back(planted, tmp_path):
    ds = ux.data.load_dataset("planted-image", split="test")
    out = tmp_path / "rep"
    rep = ux.report(planted, ds.inputs[:3], explainers=["wam", "sobol", "sobol_wavelet"], out=out, labels=[
        int(t) for t in ds.targets[:3]], explainer_params={**FAST, "sobol_wavelet": {"n_designs": 8}}, n_concepts=3,
                    top_concepts=2, maco=1, maco_steps=4, site=False, progress=False)
    loaded = ux.Report.load(out / "report.h5")
    assert [r.name for r in loaded.inputs] == [r.name for r in rep.inputs]
    predicted = planted.predict(ds.inputs[:3]).argmax(1)
    assert loaded.predictions["predicted"] == predicted.tolist()
    assert [e.method for e in loaded.explanations] == ["wam", "sobol", "sobol_wavelet"]
    wam = loaded.explanation("wam")
    assert wam.where.shape == (3, 64, 64) and wam.scales.shape == (3, 4)
    assert wam.targets.tolist() == predicted.tolist()  # each input explained for its own prediction
    # an input's explanation is the same as explaining it alone, outside the report
    alone = ux.create("wam", planted, n_samples=4).explain(ds.inputs[1:2], predicted[1:2])
    torch.testing.assert_close(wam.where[1:2], alone.where)
    for r in loaded.inputs:
        assert r.top_probs.shape == (4,) and torch.all  # top 5, of the 4 classes here(r.top_probs[:-1] >= r.top_probs[1:])
        assert set(r.agreement) >= {"where_spearman", "wam_top_scale", "wcam_top_scale", "same_top_scale"}
        assert -1 <= r.agreement["where_spearman"] <= 1
        assert r.concepts.class_id == r.predicted and r.concepts.maps.shape == (2, 64, 64)
        assert r.concepts.scales.shape == (2, 4)
        bank_importance = loaded.classes[r.predicted].importances
        assert bank_importance.shape == (3,)
        # the rebuilt input keeps 5 % of the coefficients and is a real input of the model
        assert r.rebuilt.shape == (3, 64, 64) and abs(r.rebuilt_info["kept_fraction"] - 0.05) < 0.01
    for class_id, summary in loaded.classes.items():
        assert summary.crops.shape[:2] == (3, 6) and summary.maco.shape == (1, 3, 64, 64)
        assert (out / summary.bank_path).exists()  # the bank, reusable by `uxai concepts` and by the next run


def test_rebuilt_input_from_every_coefficient_is_the_input(planted, tmp_path):
    x = ux.data.load_dataset("planted-image", split="test").inputs[:1]
    rep = ux.report(planted, x, explainers=["wam"], concepts=False, keep=1.0, out=tmp_path,
                    explainer_params={"wam": {"n_samples": 2}}, site=False, progress=False)
    r = rep.inputs[0]
    torch.testing.assert_close(r.rebuilt, x[0], atol=1e-5, rtol=0)
    assert r.rebuilt_info["rebuilt_score"] == pytest.approx(r.rebuilt_info["score"], abs=1e-3)


def test_a_second_run_reuses_every_input_and_bank(planted, tmp_path):
    x = ux.data.load_dataset("planted-image", split="test").inputs[:2]
    common = dict(explainers=["wam"], out=tmp_path, explainer_params={"wam": {"n_samples": 2}}, n_concepts=2,
                  top_concepts=1, maco=0, site=False, progress=False)
    first = ux.report(planted, x, **common)
    assert not (tmp_path / "parts").exists()  # every part is in report.h5 now
    stamps = {p: p.stat().st_mtime_ns for p in sorted((tmp_path / "banks").glob("*.h5"))}
    second = ux.report(planted, x, **common)
    assert second.reused == 2 and first.reused == 0
    assert [r.elapsed for r in second.inputs] == [r.elapsed for r in first.inputs]  # read back, not recomputed
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # the banks were reused, not refitted
    # other settings: the inputs are recomputed, not mixed with the earlier answers
    third = ux.report(planted, x, **{**common, "explainer_params": {"wam": {"n_samples": 3}}})
    assert third.reused == 0


def test_bad_files_among_good_ones_are_reported_not_fatal(planted, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    ds = ux.data.load_dataset("planted-image", split="test")
    for i in range(2):
        np.save(folder / f"good{i}.npy", ds.inputs[i].numpy())
    (folder / "broken.png").write_bytes(b"not a png at all")
    rep = ux.report(planted, folder, explainers=["wam"], concepts=False, out=tmp_path / "rep",
                    explainer_params={"wam": {"n_samples": 2}}, site=False, progress=False)
    failed = [r for r in rep.inputs if not r.ok]
    assert [r.name for r in failed] == ["broken.png"] and "broken.png" in failed[0].error
    assert len(rep.ok_inputs) == 2 and len(rep.explanations[0]) == 2
    assert [r.name for r in ux.Report.load(tmp_path / "rep").inputs if not r.ok] == ["broken.png"]


def test_bad_input_fails_before_any_work(planted, tmp_path):
    x = ux.data.load_dataset("planted-image", split="test").inputs[:1]
    with pytest.raises(ux.ParameterError, match="unknown explainer.*'no_such'.*registered: .*wam"):
        ux.report(planted, x, explainers=["wam", "no_such"], out=tmp_path / "a")
    with pytest.raises(ux.ParameterError, match="wam"):
        ux.report(planted, x, explainers=["wam"], explainer_params={"wam": {"n_samples": -1}}, out=tmp_path / "a")
    (tmp_path / "bad.png").write_bytes(b"junk")
    with pytest.raises(ux.InputError, match="bad.png"):
        ux.report(planted, tmp_path / "bad.png", out=tmp_path / "a")
    with pytest.raises(ux.InputError, match="does not exist"):
        ux.report(planted, tmp_path / "missing.npy", out=tmp_path / "a")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: a file where the folder should be instead
            (tmp_path / "file").write_text("x")
            locked = tmp_path / "file" / "sub"
        with pytest.raises(ux.InputError, match="not writable|is a file"):
            ux.report(planted, x, out=locked)
    finally:
        (tmp_path / "locked").chmod(0o700)
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())  # nothing computed
    with pytest.raises(ux.ParameterError, match="keep"):
        ux.report(planted, x, keep=0, out=tmp_path / "b")


def test_cli_errors_are_one_line(tmp_path):
    line = _fails(["report", "planted-image", "--out", str(tmp_path), "-e", "wam", "-e", "nope"])
    assert "unknown explainer" in line and "'nope'" in line
    assert "EXPLAINER.NAME=VALUE" in _fails(["report", "planted-image", "-p", "n_samples=3", "--out", str(tmp_path)])
    assert "--limit" in _fails(["report", "planted-image", "--limit", "0", "--out", str(tmp_path)])


# ---------------------------------------------------------------------- third-party explainers
PLUGIN = '''
import unified_xai as ux
from unified_xai.core.registry import Param
from unified_xai.explainers.base import Explainer


@ux.register_explainer("report_plugin_gradnorm")
class GradNorm(Explainer):
    """|gradient| summed over channels, times a factor (a plugin for the report test)."""
    params = {"factor": Param(1.0, types=(float, int))}

    def _explain(self, x, targets):
        x = x.detach().requires_grad_(True)
        score = self.adapter.forward(x).gather(1, targets[:, None]).sum()
        (grad,) = __import__("torch").autograd.grad(score, x)
        return ux.Explanation(where=self.config["factor"] * grad.abs().sum(1), method=self.name)
'''


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    """A real installed distribution (a dist-info folder on the path) with an explainer entry point."""
    site = tmp_path / "site"
    (site / "uxai_report_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "uxai_report_plugin.py").write_text(textwrap.dedent(PLUGIN))
    (site / "uxai_report_plugin-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: uxai-report-plugin\nVersion: 1.0\n")
    (site / "uxai_report_plugin-1.0.dist-info" / "entry_points.txt").write_text(
        f"[{registry.ENTRY_POINT_GROUP}]\nreport_plugin_gradnorm = uxai_report_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    yield site
    registry._REGISTRY.pop("report_plugin_gradnorm", None)
    sys.modules.pop("uxai_report_plugin", None)


def test_a_plugin_explainer_runs_in_the_report_without_any_change(planted, plugin_path, tmp_path):
    x = ux.data.load_dataset("planted-image", split="test").inputs[:2]
    rep = ux.report(planted, x, explainers=["wam", "report_plugin_gradnorm"], concepts=False, out=tmp_path / "r",
                    explainer_params={"wam": {"n_samples": 2}, "report_plugin_gradnorm": {"factor": 2.0}},
                    site=False, progress=False)
    plugin = ux.Report.load(tmp_path / "r").explanation("report_plugin_gradnorm")
    assert plugin.where.shape == (2, 64, 64) and plugin.params == {"factor": 2.0}
    grad = ux.create("saliency", planted).explain(x, rep.predictions["predicted"])
    torch.testing.assert_close(plugin.where, 2 * grad.where, rtol=1e-4, atol=1e-6)  # saliency: |grad| summed


# ---------------------------------------------------------------------- SIGKILL and resume
def _uxai_report(out: Path, plugin: Path, limit: int = 6) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(plugin)}
    args = [sys.executable, "-m", "unified_xai.cli", "report", "planted-audio", "--limit", str(limit), "--out",
            str(out), "-e", "wam", "-e", "sobol", "-e", "report_plugin_gradnorm", "-p", "wam.n_samples=4",
            "-p", "sobol.n_designs=8", "--n-concepts", "2", "--no-progress"]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_run_resumes_with_the_same_numbers(tmp_path, plugin_path):
    """SIGKILL mid-run, rerun: the same HDF5 numbers as an uninterrupted run, finished inputs not redone."""
    whole = _uxai_report(tmp_path / "whole", plugin_path)
    killed_out = tmp_path / "killed"
    killed = _uxai_report(killed_out, plugin_path)
    deadline = time.monotonic() + 240
    while len(list((killed_out / "parts").glob("*.h5"))) < 2 and killed.poll() is None:
        assert time.monotonic() < deadline, "no input finished in 240 s"
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    finished = {}
    for path in (killed_out / "parts").glob("*.h5"):
        with h5py.File(path, "r") as h5:
            finished[int(h5.attrs["index"])] = float(h5.attrs["elapsed"])
    assert 2 <= len(finished) < 6 and not (killed_out / "report.h5").exists()
    resumed = _uxai_report(killed_out, plugin_path)
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    assert f"({len(finished)} reused from an earlier run)" in output, output
    inputs = ux.Report.load(killed_out).inputs
    assert all(inputs[i].elapsed == t for i, t in finished.items())  # read back, not recomputed
    whole_output = whole.communicate(timeout=600)[0]
    assert whole.returncode == 0, whole_output
    _same_numbers(tmp_path / "whole" / "report.h5", killed_out / "report.h5")
    assert "index.html" in output and (killed_out / "index.html").exists()


def test_wav_files_and_npy_volumes_are_report_inputs(tmp_path):
    import soundfile

    audio = ux.data.load_model("planted-audio", progress=False)
    ds = ux.data.load_dataset("planted-audio", split="test")
    for i in range(2):
        soundfile.write(tmp_path / f"clip{i}.wav", ds.inputs[i, 0].numpy(), int(audio.sample_rate))
    rep = ux.report(audio, sorted(tmp_path.glob("*.wav")), explainers=["wam"], concepts=False, out=tmp_path / "a",
                    explainer_params={"wam": {"n_samples": 2}}, site=False, progress=False)
    assert [r.name for r in rep.inputs] == ["clip0", "clip1"] and rep.spatial_ndim == 1
    torch.testing.assert_close(rep.inputs[0].input, ds.inputs[0], atol=1e-4, rtol=0)  # 16-bit wav round trip
    volume = ux.data.load_model("planted-volume", progress=False)
    vs = ux.data.load_dataset("planted-volume", split="test")
    np.save(tmp_path / "vol.npy", vs.inputs[0].numpy())
    rep = ux.report(volume, tmp_path / "vol.npy", explainers=["wam"], concepts=False, out=tmp_path / "v",
                    explainer_params={"wam": {"n_samples": 2}}, site=False, progress=False)
    assert rep.explanation("wam").where.shape == (1, *vs.inputs.shape[2:])


def test_a_model_without_a_concept_layer_is_refused_with_the_remedy(tmp_path):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4)).eval()
    adapter = ux.ModelAdapter(model, input_shape=(3, 8, 8))
    with pytest.raises(ux.UXAIError, match="no non-negative layer.*--no-concepts"):
        ux.report(adapter, torch.rand(2, 3, 8, 8), out=tmp_path / "r")
    assert not (tmp_path / "r").exists()
    rep = ux.report(adapter, torch.rand(2, 3, 8, 8), explainers=["saliency"], concepts=False, out=tmp_path / "r",
                    site=False, progress=False)
    assert len(rep.explanations[0]) == 2 and rep.inputs[0].rebuilt is None  # no wam: no rebuilt input


def test_a_free_size_model_reports_images_of_several_sizes(tmp_path):
    from PIL import Image

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    adapter = ux.ModelAdapter(model, input_shape=(3, None, None))
    rng = np.random.default_rng(0)
    for name, size in (("small", (32, 48)), ("large", (64, 64))):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    rep = ux.report(adapter, [tmp_path / "small.png", tmp_path / "large.png"], explainers=["wam", "saliency"],
                    concepts=True, n_concepts=2, top_concepts=1, maco=0, out=tmp_path / "r",
                    explainer_params={"wam": {"n_samples": 2, "levels": 2}}, site=False, progress=False)
    shapes = [tuple(r.explanations["wam"].where.shape[1:]) for r in rep.inputs]
    assert shapes == [(32, 48), (64, 64)]
    alone = adapter.predict(rep.inputs[1].input[None]).softmax(1)[0]
    torch.testing.assert_close(rep.inputs[1].top_probs, alone.topk(3).values)
    with pytest.raises(ux.InputError, match="several shapes.*keep the explanations apart"):
        rep.explanations
    assert ux.Report.load(tmp_path / "r").inputs[0].explanations["saliency"].where.shape == (1, 32, 48)
