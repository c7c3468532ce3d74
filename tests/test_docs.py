"""The documentation site: it builds offline with ``mkdocs build --strict``, its nav and figures exist,
every built-in explainer has its parameter table (generated from the registry by docs/hooks.py), every CLI
option is documented, and the page on the Explanation format reads a real file without the library."""
from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import unified_xai as ux

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"
MARKER = re.compile(r"^<!--[ \t]*uxai-params:[ \t]*([\w.-]+)[ \t]*-->[ \t]*$", re.M)
FIGURE_LIMIT = 300_000
#: objects the API reference must cover (mkdocstrings gives each an anchor named by its full path)
API_OBJECTS = [
    "unified_xai.core.model.ModelAdapter", "unified_xai.core.model.ModelAdapter.split", "unified_xai.core.model.Split",
    "unified_xai.core.explanation.Explanation", "unified_xai.core.explanation.Explanation.save",
    "unified_xai.core.registry.register_explainer", "unified_xai.core.registry.create",
    "unified_xai.core.registry.list_explainers", "unified_xai.core.registry.Param",
    "unified_xai.core.errors.UXAIError", "unified_xai.core.errors.InputError", "unified_xai.core.errors.LayerError",
    "unified_xai.core.errors.ParameterError", "unified_xai.core.errors.CheckpointError",
    "unified_xai.core.errors.RegistrationError", "unified_xai.core.errors.UnknownNameError",
    "unified_xai.core.hooks.SplitError",
    "unified_xai.sampling.sobol_indices", "unified_xai.sampling.estimate",
    "unified_xai.wavelets.dwt", "unified_xai.wavelets.idwt", "unified_xai.wavelets.level_maps",
    "unified_xai.metrics.recovery.explanation_recovery",
    "unified_xai.data.loading.load_model", "unified_xai.data.loading.load_dataset",
    "unified_xai.data.loading.save_checkpoint", "unified_xai.io.load_inputs",
    "unified_xai.core.objectives.Logit", "unified_xai.core.objectives.Channel", "unified_xai.core.objectives.Neuron",
    "unified_xai.core.objectives.Direction", "unified_xai.core.objectives.Combination",
    "unified_xai.concepts.craft.Craft", "unified_xai.concepts.craft.Craft.fit", "unified_xai.concepts.bank.ConceptBank",
    "unified_xai.concepts.bank.ConceptBank.load", "unified_xai.concepts.nmf.nmf", "unified_xai.concepts.nmf.nnls",
    "unified_xai.concepts.objective.Concept", "unified_xai.concepts.recursion.shared_concepts",
    "unified_xai.concepts.recursion.refine_shared", "unified_xai.concepts.craft.nonnegative_layers",
    "unified_xai.concepts.craft.NegativeActivationsError", "unified_xai.plotting.plot_concept_bank",
    "unified_xai.featviz.maco.maco", "unified_xai.featviz.maco.MacoResult", "unified_xai.featviz.bank_images.concept_images",
    "unified_xai.featviz.spectrum.natural_spectrum", "unified_xai.featviz.spectrum.estimate_spectrum",
    "unified_xai.featviz.lucent.maco_param", "unified_xai.featviz.lucent.render_vis", "unified_xai.plotting.plot_maco",
    "unified_xai.metrics.faithfulness.deletion", "unified_xai.metrics.faithfulness.insertion",
    "unified_xai.metrics.faithfulness.mu_fidelity", "unified_xai.metrics.faithfulness.average_stability",
    "unified_xai.metrics.stability.mege_reco",
]


def _nav_files(nav) -> list[str]:
    files = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        files.extend(_nav_files(value) if isinstance(value, list) else [value])
    return files


def _config() -> dict:
    return yaml.safe_load(MKDOCS_YML.read_text())


def _builtin_explainers() -> list[str]:
    return [n for n in ux.list_explainers()
            if ux.core.registry.get_explainer_class(n).__module__.startswith("unified_xai.")]


def _page_html(site: Path, page: str) -> str:
    stem = page[: -len(".md")]
    path = site / "index.html" if stem == "index" else site / stem / "index.html"
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built once with ``mkdocs build --strict`` (offline) into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(MKDOCS_YML), "-d", str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{run.stdout}\n{run.stderr}"
    assert "WARNING" not in run.stderr, run.stderr
    return out


def test_mkdocs_build_strict(site):
    assert (site / "index.html").exists() and (site / "search" / "search_index.json").exists()


def test_nav_pages_exist_and_every_page_is_in_the_nav(site):
    config = _config()
    assert config["theme"]["font"] is False  # no web fonts: the site works offline
    nav = _nav_files(config["nav"])
    missing = [p for p in nav if not (DOCS / p).is_file()]
    assert not missing, f"pages in the nav that do not exist: {missing}"
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages, f"pages not in the nav: {sorted(set(pages) - set(nav))}"
    for page in nav:
        assert _page_html(site, page)


def test_api_reference_covers_the_public_objects(site):
    text = "".join(p.read_text(encoding="utf-8") for p in (site / "api").rglob("index.html"))
    anchors = set(re.findall(r'id="(unified_xai[\w.]*)"', text))
    missing = [name for name in API_OBJECTS if name not in anchors]
    assert not missing, f"objects missing from the API reference: {missing}"
    for name in _builtin_explainers():  # every explainer class has its entry
        cls = ux.core.registry.get_explainer_class(name)
        assert f"{cls.__module__}.{cls.__qualname__}" in anchors, name


def test_every_explainer_has_its_parameter_table(site):
    """One registry-generated table per built-in explainer, with every parameter and its default."""
    markers: dict[str, list[str]] = {}
    for path in DOCS.rglob("*.md"):
        for name in MARKER.findall(path.read_text(encoding="utf-8")):
            markers.setdefault(name, []).append(str(path.relative_to(DOCS)))
    builtins = _builtin_explainers()
    assert sorted(n for n in markers if n in builtins) == sorted(builtins), \
        f"explainers without a parameter table: {sorted(set(builtins) - set(markers))}"
    assert all(len(pages) == 1 for pages in markers.values()), markers
    for name, (page,) in markers.items():
        text = html.unescape(re.sub(r"<[^>]+>", "", _page_html(site, page)))
        head = f"Parameters of {name} (inputs"
        assert head in text, (name, page)
        section = text.split(head, 1)[1]
        for key, spec in ux.core.registry.get_explainer_class(name).params.items():
            row = re.search(rf"^{re.escape(key)}\n(.*)$", section, re.M)
            assert row, f"{page}: parameter {key!r} of {name} missing"
            assert row.group(1).startswith(repr(spec.default)), f"{page}: default of {name}.{key} is not {spec.default!r}"


def test_figures_exist_small_and_used():
    referenced = set()
    for path in DOCS.rglob("*.md"):
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", path.read_text(encoding="utf-8")):
            file = (path.parent / target).resolve()
            assert file.is_file(), f"{path.name} shows a missing figure {target}"
            referenced.add(file)
    figures = {p.resolve() for p in (DOCS / "figures").glob("*.png")}
    assert figures, "no figures"
    assert figures <= referenced, f"figures no page shows: {sorted(p.name for p in figures - referenced)}"
    for figure in figures:
        assert figure.stat().st_size < FIGURE_LIMIT, f"{figure.name} is {figure.stat().st_size} bytes"


def test_every_cli_command_and_option_is_documented():
    import typer

    from unified_xai.cli import app

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    group = typer.main.get_command(app)
    for option in ("--debug", "--version"):
        assert f"`{option}`" in text
    for name, command in group.commands.items():
        assert f"## `uxai {name}`" in text, f"command {name} has no section"
        section = text.split(f"## `uxai {name}`", 1)[1].split("\n## ", 1)[0]
        for param in command.params:
            for opt in [o for o in param.opts + param.secondary_opts if o.startswith("-") and o != "--help"]:
                assert re.search(rf"`[^`]*{re.escape(opt)}\b", section), f"uxai {name}: option {opt} not documented"


def test_reading_an_explanation_file_without_the_library(tmp_path, monkeypatch, capsys):
    """The page's h5py-only snippet runs on a file written by Explanation.save."""
    text = (DOCS / "explanation.md").read_text(encoding="utf-8")
    section = text.split("## Reading a file without the library", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert not re.search(r"^\s*(import|from) unified_xai", code, re.M)
    explanation = ux.Explanation(
        where=torch.rand(2, 8, 8), method="wam", targets=torch.tensor([1, 0]), scales=torch.rand(2, 3),
        attributions={"approximation": torch.rand(2, 1, 2, 2), "level_2": torch.rand(2, 1, 3, 2, 2)},
        level_names=["approximation", "level 2 (coarsest)", "level 1 (finest)"], class_names=["cat", "dog"],
        params={"n_samples": 4})
    monkeypatch.chdir(tmp_path)
    explanation.save("explanation.h5")
    namespace: dict = {}
    exec(compile(code, "explanation.md", "exec"), namespace)  # noqa: S102  (our own documentation)
    assert namespace["version"] == 3 and namespace["method"] == "wam" and namespace["params"] == {"n_samples": 4}
    assert list(namespace["bands"]) == ["approximation", "level_2"] and namespace["where"].shape == (2, 8, 8)
    assert capsys.readouterr().out.strip() == "wam (2, 8, 8) ['dog', 'cat']"
