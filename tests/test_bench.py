"""``uxai bench``: every method's speed over its floor in one run, printed and saved as markdown.

The quick run goes through the CLI (the same path as the ``uxai`` entry point). No assertion is made on the
ratios' values: the machines are shared and noisy; only that every benchmark gives finite positive figures.
"""
from __future__ import annotations

import math
import re

import pytest
import torch
from unified_xai import bench

from test_cli import _fails, _ok  # noqa: F401  (the CLI tests' runner and exit-status checks)


def _seconds(text: str) -> float:
    value, unit = text.split()
    return float(value) / (1000 if unit == "ms" else 1)


def _table(markdown: str) -> list[dict]:
    """The rows of the saved table, by column name."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert tuple(head) == bench.COLUMNS
    return [dict(zip(head, (c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])))) for line in lines[1:]]


def _check_rows(rows: list[dict]) -> None:
    for row in rows:
        for column in ("method s", "floor s"):
            value = _seconds(row[column])
            assert math.isfinite(value) and value > 0, row
        ratio = float(row["ratio"].rstrip("×"))
        low, high = (float(v) for v in row["range"].split("–"))
        assert all(math.isfinite(v) and v > 0 for v in (ratio, low, high)) and low <= ratio <= high, row
        assert row["met"] in ("yes", "no", "—") and int(row["pairs"]) >= 1


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.md"
    threads = torch.get_num_threads()
    printed = _ok(["bench", "--quick", "--repeats", "2", "--out", str(out)])
    assert torch.get_num_threads() == threads  # the run's one thread is not left behind
    return printed, out


def test_quick_run_lists_every_benchmark_and_writes_the_markdown(quick_run):
    printed, out = quick_run
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Speed benchmarks\n")
    assert "- command: `uxai bench --quick --repeats 2 --out " in text
    for fact in ("- date: ", "CPU cores", "torch " + torch.__version__, "1 thread", "planted-image 3×64×64"):
        assert fact in text, fact
    rows = _table(text)
    assert {row["method"].split()[0] for row in rows} == set(bench.BENCHMARKS)
    _check_rows(rows)
    methods = [row["method"] for row in rows]
    for method in ("wam (gradient)", "wam (smoothgrad)", "wam (integrated)"):
        assert method in methods
    assert [r["setting"].split(",")[0] for r in rows if r["method"] == "deletion"] == ["pixels", "wavelet"]
    nmf = next(r for r in rows if r["method"].startswith("nmf"))
    assert nmf["target"].startswith("≥ 2.5") and "speed-up" in nmf["target"]
    wam = next(r for r in rows if r["method"] == "wam (smoothgrad)")
    assert wam["target"] == "≤ 1.05" and re.fullmatch(r"\d+ f\+b \+ \d+ no-grad forwards", wam["floor"])
    for name in bench.BENCHMARKS:  # the terminal: a line per row as it is measured, then the table
        assert re.search(rf"^{re.escape(name)}\b", printed, re.M), name
    assert f"written: {out}" in " ".join(printed.split())


def test_only_restricts_and_the_default_file_is_outside_the_docs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not a checkout of the repository
    printed = _ok(["bench", "--quick", "--only", "saliency,gradcam", "--only", "saliency", "--repeats", "1"])
    out = tmp_path / bench.QUICK_OUT
    rows = _table(out.read_text(encoding="utf-8"))
    assert [row["method"] for row in rows] == ["saliency", "gradcam"]
    _check_rows(rows)
    assert "wam" not in printed and "--only saliency --only gradcam" in out.read_text(encoding="utf-8")
    assert not (tmp_path / "docs").exists()


def test_default_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert bench.default_out(quick=False, every=True, model=None) == bench.INSTALLED_OUT
    for folder in ("docs", "unified_xai"):
        (tmp_path / folder).mkdir()
    (tmp_path / "mkdocs.yml").write_text("site_name: x\n")
    assert bench.default_out(quick=False, every=True, model=None) == bench.REPO_OUT == bench.Path("docs/bench.md")
    assert bench.default_out(quick=True, every=True, model=None) == bench.QUICK_OUT
    assert bench.default_out(quick=False, every=False, model=None) == bench.INSTALLED_OUT
    assert bench.default_out(quick=False, every=True, model="planted-image") == bench.INSTALLED_OUT


def test_bad_options_fail_in_one_line(tmp_path):
    line = _fails(["bench", "--only", "wamm"])
    assert "'wamm'" in line and all(name in line for name in bench.BENCHMARKS)
    assert "'nope'" in _fails(["bench", "--quick", "--only", "saliency,nope"])
    assert "--repeats" in _fails(["bench", "--repeats", "0"])
    assert "--threads" in _fails(["bench", "--threads", "0"])
    assert "--batch-size" in _fails(["bench", "--batch-size", "0"])
    assert "folder" in _fails(["bench", "--out", str(tmp_path)])
    (tmp_path / "file").write_text("x")
    assert "is a file" in _fails(["bench", "--out", str(tmp_path / "file" / "bench.md")])
    assert "nosuch" in _fails(["bench", "--quick", "--only", "saliency", "--model", "nosuch",
                               "--out", str(tmp_path / "b.md")])
    assert "--repeats" in _fails(["bench", "--repeats", "x"])  # a usage error: still one line, status 2
    assert not (tmp_path / "b.md").exists()


def test_harness_interleaves_pairs_and_takes_the_median_of_their_ratios(monkeypatch):
    """The harness logic without a clock: warm-up floor then method, pairs alternating, ratio per pair."""
    def fake_clock(values):
        clock = iter(values)
        monkeypatch.setattr(bench, "timed", lambda call, device=None: (call(), next(clock))[1])

    calls = []
    case = bench.Case("m", "s", "model", "floor", lambda: calls.append("method"), lambda: calls.append("floor"))
    fake_clock([9.0, 9.0, 2.0, 1.0, 1.0, 4.0, 3.0, 1.0])  # warm-ups, then (m, f), (f, m), (m, f)
    row = bench.measure("m", case, repeats=3, min_seconds=0)
    assert calls == ["floor", "method", "method", "floor", "floor", "method", "method", "floor"]
    assert (row.method_s, row.floor_s, row.ratio, row.low, row.high, row.pairs) == (3.0, 1.0, 3.0, 2.0, 4.0, 3)
    assert row.met is None and row.target_text == "—"

    case.speedup, case.target, case.per = True, 2.5, 2  # a speed-up: floor / method, higher is better
    fake_clock([9.0, 9.0, 1.0, 4.0, 4.0, 1.0])
    row = bench.measure("m", case, repeats=2, min_seconds=0)
    assert (row.method_s, row.floor_s, row.ratio) == (0.5, 2.0, 4.0) and row.met is True
    assert row.target_text == "≥ 2.5 (speed-up)" and row.ratio_text == "4.00×"


def test_short_rows_get_more_pairs_until_their_time_is_spent(monkeypatch):
    """Pairs of a few seconds are noisy: after --repeats pairs the harness goes on until the pairs took
    min_seconds, at most 3 * repeats pairs; long rows stop at --repeats."""
    monkeypatch.setattr(bench, "timed", lambda call, device=None: 1.0)  # every call 1 s: 2 s a pair
    case = bench.Case("m", "s", "model", "floor", lambda: None, lambda: None)
    assert bench.measure("m", case, repeats=2, min_seconds=7).pairs == 4  # 3 pairs = 6 s < 7 s, 4 = 8 s
    assert bench.measure("m", case, repeats=2, min_seconds=100).pairs == 6  # capped at 3 * repeats
    assert bench.measure("m", case, repeats=2, min_seconds=3).pairs == 2  # --repeats pairs took long enough
    assert bench.MIN_ROW_SECONDS > 0 and bench.measure("m", case, repeats=1).pairs == 3
