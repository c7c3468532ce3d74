"""The report's static HTML site: ``build_site(report, out)`` writes ``out/index.html`` and the pages it links.

No server, no external resource: every page works from ``file://`` (inline CSS, a small inline script that
sorts the index table), pictures are PNG files beside the pages and audio inputs are WAV files the pages
play. The layout::

    out/index.html                 model, settings, one sortable row per input, the class pages
    out/inputs/<slug>.html         one per input that succeeded: prediction, where + scale per explainer,
                                   white-box vs black-box agreement, concepts, what the model keeps, faithfulness
    out/classes/<slug>.html        one per class with a concept bank: its concept atlas, the inputs predicted as it
    out/figures/...png             the pictures (one per page section)
    out/audio/...wav               audio inputs and their rebuilt versions

The site only draws a :class:`~unified_xai.report.records.Report`; it computes nothing about the model.
"""
from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import re
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import numpy as np
import torch

from ..core.errors import InputError
from ..core.storage import atomic_write
from ..plotting import level_infos
from . import figures
from .records import ClassConcepts, InputResult, Report

#: explainers the pages name by their paper's name
DISPLAY_NAMES = {"wam": "WAM", "sobol": "Sobol", "sobol_wavelet": "WCAM", "craft": "CRAFT", "gradcam": "Grad-CAM",
                 "saliency": "Saliency", "smoothgrad": "SmoothGrad", "integrated_gradients": "Integrated Gradients",
                 "input_x_gradient": "Input × Gradient"}
#: faithfulness metrics: display name, and which way is better
METRICS = {"deletion": ("Deletion", "lower is better"), "insertion": ("Insertion", "higher is better"),
           "mu_fidelity": ("µ-Fidelity", "higher is better")}

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------------
# small text helpers
# --------------------------------------------------------------------------------------------------
def esc(value: Any) -> str:
    """HTML-escaped text (quotes included, so it is safe in attributes too)."""
    return html.escape(str(value), quote=True)


def _url(path: str) -> str:
    """A relative URL of a file of the site (each path segment percent-encoded), escaped for an attribute."""
    return esc("/".join(quote(part) for part in path.split("/")))


def slug(text: str, limit: int = 48) -> str:
    """A file-name-safe version of ``text``: lowercase letters, digits, ``.``, ``_`` and ``-``."""
    text = re.sub(r"[^a-z0-9._-]+", "-", str(text).lower()).strip("-._")
    return text[:limit].strip("-._") or "item"


def explainer_title(name: str) -> str:
    shown = DISPLAY_NAMES.get(name)
    return f"{shown} ({name})" if shown and shown.lower() != name else (shown or name)


def _percent(p: float) -> str:
    value = 100 * float(p)
    if value >= 99.95 or value == 0:
        return f"{value:.0f} %"
    return f"{value:.1f} %" if value >= 0.1 else f"{value:.2g} %"


def _as_float(value: Any) -> float | None:
    """``value`` as a float, NaN for None; None when it is not a number (text)."""
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _number(value: Any, digits: int = 3) -> str:
    number = _as_float(value)
    if number is None:
        return esc(value)
    if math.isnan(number):
        return "—"
    return f"{number:.{digits}g}" if abs(number) < 1000 else f"{number:,.0f}"


def _sort_value(value: Any) -> str:
    number = _as_float(value)
    if number is None:
        return esc(value)
    return "" if math.isnan(number) else repr(number)


# --------------------------------------------------------------------------------------------------
# page frame
# --------------------------------------------------------------------------------------------------
CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #d9dde5; --soft: #f4f6f9; --accent: #1f5fbf; --bad: #b3261e;
        --good: #1b7f3b; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); background: #fff; }
header.top { background: #17202f; color: #fff; padding: 14px 28px; }
header.top a { color: #cfe0ff; }
header.top .crumbs { font-size: 13px; opacity: .9; }
header.top h1 { margin: 4px 0 2px; font-size: 24px; font-weight: 600; }
header.top .lead { margin: 0; font-size: 15px; color: #dde5f2; }
main { max-width: 1240px; margin: 0 auto; padding: 8px 28px 40px; }
h2 { font-size: 19px; margin: 30px 0 8px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 4px; }
h3 small, .muted { color: var(--muted); font-weight: normal; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
nav.toc { font-size: 14px; margin: 12px 0 0; }
nav.toc a { margin-right: 14px; }
figure { margin: 8px 0 14px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; background: #fff; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 2px; }
table { border-collapse: collapse; font-size: 14px; margin: 6px 0 12px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 10px; text-align: left; vertical-align: middle; }
th { background: var(--soft); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.nowrap { white-space: nowrap; }
tbody tr:hover { background: #f8fafd; }
table.sortable th:not(.nosort) { cursor: pointer; user-select: none; }
table.sortable th:not(.nosort)::after { content: " \\2195"; color: #9aa3b2; font-size: 12px; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; color: var(--accent); }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; color: var(--accent); }
img.thumb { height: 56px; width: auto; border: 1px solid var(--line); border-radius: 3px; display: block; }
img.pixelated, img.thumb.pixelated { image-rendering: pixelated; }
tr.failed td { background: #fff5f4; }
.error { color: var(--bad); }
.yes { color: var(--good); font-weight: 600; }
.no { color: var(--bad); font-weight: 600; }
.bar { display: inline-block; height: 10px; background: #5b8fd9; border-radius: 2px; vertical-align: middle; }
.row { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
.note { background: var(--soft); border-left: 4px solid var(--accent); padding: 8px 14px; margin: 10px 0;
        border-radius: 0 4px 4px 0; }
.note p { margin: 4px 0; }
dl.settings { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; font-size: 14px; margin: 6px 0; }
dl.settings dt { color: var(--muted); }
dl.settings dd { margin: 0; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px;
                 overflow-wrap: anywhere; }
ul.classes li, ul.inputs li { margin: 3px 0; }
audio { width: 340px; max-width: 100%; }
.players { display: flex; flex-wrap: wrap; gap: 24px; margin: 6px 0 10px; }
.players div { font-size: 14px; }
footer { color: var(--muted); font-size: 12px; margin-top: 40px; border-top: 1px solid var(--line); padding-top: 8px; }
"""

SORT_JS = """
(function () {
  function cellAt(row, col) {
    var start = 0;
    for (var i = 0; i < row.cells.length; i++) {
      var cell = row.cells[i], span = cell.colSpan || 1;
      if (col < start + span) { return start === col ? cell : null; }
      start += span;
    }
    return null;
  }
  function value(row, col, numeric) {
    var cell = cellAt(row, col);
    if (!cell) { return null; }
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    if (raw === "") { return null; }
    if (numeric) { var n = parseFloat(raw); return isNaN(n) ? null : n; }
    return raw.toLowerCase();
  }
  function sortBy(table, th, col) {
    var numeric = th.getAttribute("data-type") === "number";
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var heads = table.tHead.rows[0].cells;
    for (var h = 0; h < heads.length; h++) { heads[h].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var keyed = rows.map(function (row, i) { return {row: row, key: value(row, col, numeric), i: i}; });
    keyed.sort(function (a, b) {
      if (a.key === null && b.key === null) { return a.i - b.i; }
      if (a.key === null) { return 1; }
      if (b.key === null) { return -1; }
      var order = numeric ? a.key - b.key : a.key.localeCompare(b.key, undefined, {numeric: true});
      if (order === 0) { return a.i - b.i; }
      return ascending ? order : -order;
    });
    keyed.forEach(function (item) { body.appendChild(item.row); });
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      if (th.classList.contains("nosort")) { return; }
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortBy(table, th, col); });
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortBy(table, th, col); }
      });
    });
  });
})();
"""


def _page(title: str, heading: str, lead: str, body: str, root: str, crumbs: str = "", script: bool = False) -> str:
    """A whole page; ``heading``, ``lead``, ``body`` and ``crumbs`` are HTML already escaped."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{esc(title)}</title>\n"
        # no favicon request (the page makes none of its own)
        "<link rel=\"icon\" href=\"data:,\">\n"
        f"<style>{CSS}</style>\n</head>\n<body>\n"
        f"<header class=\"top\">{f'<div class=crumbs>{crumbs}</div>' if crumbs else ''}"
        f"<h1>{heading}</h1>{f'<p class=lead>{lead}</p>' if lead else ''}</header>\n"
        f"<main>\n{body}\n<footer>unified-xai report · <a href=\"{root}index.html\">index</a></footer>\n</main>\n"
        + (f"<script>{SORT_JS}</script>\n" if script else "")
        + "</body>\n</html>\n"
    )


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path, binary=False) as handle:
        handle.write(text)


def _figure_html(src: str, alt: str, caption: str = "", pixelated: bool = False) -> str:
    cls = ' class="pixelated"' if pixelated else ""
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure><img src="{_url(src)}" alt="{esc(alt)}"{cls}>{cap}</figure>'


# --------------------------------------------------------------------------------------------------
# what the pages say about one input
# --------------------------------------------------------------------------------------------------
class _Site:
    def __init__(self, report: Report, out: Path):
        self.report = report
        self.out = out
        self.ndim = int(report.spatial_ndim)
        self.sr = report.sample_rate
        self.input_slugs: dict[int, str] = {}
        used: set[str] = set()
        for r in report.inputs:
            base = f"{r.index:04d}-{slug(r.name)}"
            name, n = base, 1
            while name in used:
                n += 1
                name = f"{base}-{n}"
            used.add(name)
            self.input_slugs[r.index] = name
        self.class_slugs = {cid: f"class-{cid}-{slug(cc.name or report.class_name(cid))}"
                            for cid, cc in report.classes.items()}
        self.thumbs: dict[int, str] = {}

    # ------------------------------------------------------------------ names
    def class_name(self, cid: int | None) -> str:
        if cid is None:
            return ""
        if cid in self.report.classes and self.report.classes[cid].name:
            return self.report.classes[cid].name
        return self.report.class_name(cid)

    def class_label(self, cid: int | None) -> str:
        return figures.short_name(self.class_name(cid))

    def class_link(self, cid: int, root: str, anchor: str = "", text: str | None = None) -> str:
        label = esc(text if text is not None else self.class_label(cid))
        if cid not in self.class_slugs:
            return label
        return f'<a href="{_url(f"{root}classes/{self.class_slugs[cid]}.html")}{anchor}">{label}</a>'

    def input_href(self, r: InputResult, root: str) -> str:
        return _url(f"{root}inputs/{self.input_slugs[r.index]}.html")

    # ------------------------------------------------------------------ answers
    def white_box(self, r: InputResult) -> str | None:
        name = r.agreement.get("white_box")
        if name in r.explanations:
            return name
        if "wam" in r.explanations:
            return "wam"
        for name, e in r.explanations.items():
            if e.scales is not None:
                return name
        return next(iter(r.explanations), None)

    def top_scale(self, r: InputResult) -> str | None:
        """WAM's top scale: the run's answer when it recorded one, else the level of WAM's largest share."""
        if r.agreement.get("wam_top_scale"):
            return str(r.agreement["wam_top_scale"])
        name = self.white_box(r)
        e = r.explanations.get(name) if name else None
        if e is None or e.scales is None:
            return None
        best = top_level(level_infos(e, 0, self.ndim))
        return None if best is None else best.name

    def level_meaning(self, r: InputResult, level: str) -> str:
        """``"mid-size details, ~4 px"`` for a level name, from an explanation of this input with levels."""
        for e in r.explanations.values():
            if e.scales is None and e.scale_maps is None:
                continue
            for info in level_infos(e, 0, self.ndim):
                if info.name == level or info.name.split(" (")[0] == str(level).split(" (")[0]:
                    return f"{info.meaning}, {info.extent}"
        return ""

    def point(self, r: InputResult) -> tuple[int, ...] | None:
        """Where the volume's slices go: the maximum of the white-box where map."""
        name = self.white_box(r)
        if self.ndim != 3 or name is None:
            return None
        where = figures._np(r.explanations[name].where[0])
        return figures.where_point(where) if where.ndim == 3 else None

    def agreement_html(self, r: InputResult) -> str:
        """The white-box vs black-box answers for this input, in words."""
        a = r.agreement or {}
        white, black, scale_black = a.get("white_box"), a.get("black_box"), a.get("scale_black_box")
        paragraphs = []
        rho = a.get("where_spearman")
        if white and black:
            who = f"{esc(explainer_title(white))}, white-box (gradients), and {esc(explainer_title(black))}, " \
                  f"black-box (masking the input)"
            if rho is None:
                paragraphs.append(f"<b>Where.</b> The where maps of {who} could not be compared for this input "
                                  f"(one of them is constant).")
            else:
                paragraphs.append(f"<b>Where.</b> The where maps of {who} have a rank correlation (Spearman) "
                                  f"of <b>ρ = {float(rho):.2f}</b>: {_verdict(float(rho))}.")
        elif rho is not None:
            paragraphs.append(f"<b>Where.</b> The where maps have a rank correlation (Spearman) of "
                              f"<b>ρ = {float(rho):.2f}</b>: {_verdict(float(rho))}.")
        wam_top, wcam_top, same = a.get("wam_top_scale"), a.get("wcam_top_scale"), a.get("same_top_scale")

        def level(name):
            meaning = self.level_meaning(r, name)
            return f"<b>{esc(name)}</b>" + (f" ({esc(meaning)})" if meaning else "")

        white_name = esc(explainer_title(white or "wam"))
        if wam_top and wcam_top:
            scale_name = esc(explainer_title(scale_black or "sobol_wavelet"))
            verdict = "" if same is None else (" — <span class=yes>the same scale</span>" if same
                                               else " — <span class=no>different scales</span>")
            paragraphs.append(f"<b>Scale.</b> {white_name} puts most of the importance on {level(wam_top)}; "
                              f"{scale_name}, black-box, on {level(wcam_top)}{verdict}.")
        elif wam_top:
            paragraphs.append(f"<b>Scale.</b> {white_name} puts most of the importance on {level(wam_top)}; "
                              f"no black-box scale answer was computed for this input.")
        if not paragraphs:
            return ""
        return "<div class=note>" + "".join(f"<p>{p}</p>" for p in paragraphs) + "</div>"


def top_level(infos):
    """The level with the largest share (signed: the level whose removal lowers the score most, as
    ``agreement["wam_top_scale"]`` in run.py), or None without shares."""
    shares = [i.share or 0.0 for i in infos]
    if not infos or not any(shares):
        return None
    return infos[int(np.argmax(shares))]


def _level_text(info, meaning: bool = False) -> str:
    """``"level 2 (mid-size details, ~4 px)"``, with its share when it is negative (it lowers the score)."""
    text = info.name + (f": {info.meaning}, {info.extent}" if meaning else "")
    share = info.share or 0.0
    if share < 0:
        text += f", {figures._share_text(share)}: it lowers the score"
    return text


def _verdict(rho: float) -> str:
    if rho >= 0.7:
        return "they agree strongly on where the evidence lies"
    if rho >= 0.4:
        return "they agree moderately on where the evidence lies"
    if rho >= 0.15:
        return "they agree only weakly on where the evidence lies"
    if rho > -0.15:
        return "they do not agree on where the evidence lies (no rank correlation)"
    return "they disagree: what one ranks high the other ranks low"


# --------------------------------------------------------------------------------------------------
# audio files
# --------------------------------------------------------------------------------------------------
def _write_wav(path: Path, signal: np.ndarray, sample_rate: float, peak: float) -> None:
    """``(C, T)`` as a 16-bit WAV, divided by ``peak`` (one gain for an input and its rebuilt version, so
    that their loudness compares)."""
    import soundfile

    data = np.asarray(signal, dtype=np.float64).reshape(-1, signal.shape[-1]).T / (peak or 1.0)
    data = np.clip(data * 0.98, -1.0, 1.0)
    with atomic_write(path) as handle:
        soundfile.write(handle, data, int(round(sample_rate)), format="WAV", subtype="PCM_16")


# --------------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------------
def _check_out(out) -> Path:
    if isinstance(out, bool) or not isinstance(out, (str, os.PathLike)):
        raise InputError(f"build_site: out must be a folder path (str or Path), got {type(out).__name__}")
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"build_site: the output {str(out)!r} is a file, not a folder; give a folder path "
                         f"(it is created when missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"build_site: cannot create the output folder {str(out)!r} ({err.strerror or err}); give "
                         f"a folder you can write to") from None
    probe = None
    try:
        fd, probe = tempfile.mkstemp(prefix=".uxai-write-test.", dir=path)
        os.close(fd)
    except OSError as err:
        raise InputError(f"build_site: the output folder {str(out)!r} is not writable ({err.strerror or err}); "
                         f"give a folder you can write to, or change its permissions (chmod u+w)") from None
    finally:
        if probe is not None and os.path.exists(probe):
            os.remove(probe)
    return path


def build_site(report: Report, out: str | os.PathLike, progress: bool | None | Progress = None) -> Path:
    """Write the static HTML site of ``report`` into the folder ``out`` and return ``out/index.html``.

    ``progress``: None (a bar when stderr is a terminal), True / False, or a callable ``progress(done, total)``
    called after each page. Pages and pictures of an earlier build in ``out`` are overwritten.

    Raises :class:`~unified_xai.InputError` when ``report`` is not a Report or ``out`` cannot be written.
    """
    if not isinstance(report, Report):
        raise InputError(f"build_site: expected a unified_xai Report (from ux.report(...) or Report.load(path)), got "
                         f"{type(report).__name__}")
    if int(report.spatial_ndim) not in (1, 2, 3):
        raise InputError(f"build_site: the report's spatial_ndim is {report.spatial_ndim!r}; 1 (audio), 2 (images) "
                         f"and 3 (volumes) are drawn")
    out = _check_out(out)
    site = _Site(report, out)
    total = len(report.ok_inputs) + len(report.classes) + 1
    with ExitStack() as stack:
        if callable(progress) and not isinstance(progress, bool):
            tick = progress
        else:
            from ..core.batching import progress_bar, progress_enabled

            advance = stack.enter_context(progress_bar(total, "report site", progress_enabled(progress)))

            def tick(done: int, total: int) -> None:
                advance(1)
        count = 0
        for r in report.inputs:
            if r.ok:
                _input_page(site, r)
                count += 1
                tick(count, total)
        for cid in sorted(report.classes):
            _class_page(site, cid)
            count += 1
            tick(count, total)
        index = out / "index.html"
        _write_text(index, _index_page(site))
        tick(count + 1, total)
    return index


# --------------------------------------------------------------------------------------------------
# index
# --------------------------------------------------------------------------------------------------
def _settings_html(report: Report) -> str:
    items = [("model", report.model_id), ("inputs", f"{len(report.inputs)} ({len(report.ok_inputs)} succeeded)"),
             ("explainers run", ", ".join(report.explainers) or "none")]
    if report.level_names:
        items.append(("wavelet levels", ", ".join(report.level_names)))
    if report.sample_rate:
        items.append(("sample rate", f"{report.sample_rate:g} Hz"))
    for key, value in sorted(report.settings.items()):
        seconds = key == "elapsed" and isinstance(value, (int, float))
        items.append(("run time" if seconds else key, esc(f"{value:.1f} s") if seconds else _setting_html(value)))
    items.append(("unified-xai", esc(report.version)))
    items.append(("site built", esc(_dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z").strip())))
    return "<dl class=settings>" + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def _setting_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):  # flat parameters: k=v, leaving out the unset ones
        return ", ".join(f"{k}={_setting_text(v)}" for k, v in sorted(value.items()) if v is not None)
    return json.dumps(value, sort_keys=True, default=str)


def _setting_html(value: Any, limit: int = 400) -> str:
    """A setting's value as escaped HTML: a dict of dicts (e.g. each explainer's parameters) one line each."""
    def cut(text: str) -> str:
        return esc(text if len(text) <= limit else text[:limit - 1] + "…")

    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        return "<br>".join(f"<b>{esc(k)}</b>: {cut(_setting_text(v))}" for k, v in value.items())
    return cut(_setting_text(value))


def _index_page(site: _Site) -> str:
    report = site.report
    heads = [("#", "number", "input order"), ("", "nosort", ""), ("Input", "text", "the input's name; opens its page"),
             ("Prediction", "text", "the most probable class"),
             ("Probability", "number", "softmax probability of the predicted class"),
             ("True label", "text", "the known class, when the input has one"),
             ("Top scale", "text", "the wavelet level WAM gives most of the importance"),
             ("Top concept", "number", "the concept of the predicted class most important in this input "
                                        "(sorts by its importance)"),
             ("Where ρ", "number", "Spearman rank correlation of the white-box and black-box where maps"),
             ("Same top scale", "text", "whether WAM (white-box) and WCAM (black-box) name the same top scale")]
    head_html = []
    for label, kind, tip in heads:
        attrs = ' class="nosort"' if kind == "nosort" else (' data-type="number" class="num"' if kind == "number"
                                                             else "")
        head_html.append(f'<th{attrs} title="{esc(tip)}" scope="col">{esc(label)}</th>')
    rows = []
    for r in report.inputs:
        cells = [f'<td class=num data-sort="{r.index}">{r.index}</td>']
        if not r.ok:
            cells.append("<td></td>")
            cells.append(f"<td data-sort=\"{esc(r.name)}\">{esc(r.name)}</td>")
            error = esc(r.error or "no error message was recorded")
            cells.append(f'<td colspan="{len(heads) - 3}" class=error data-sort="">failed: {error}</td>')
            rows.append("<tr class=failed>" + "".join(cells) + "</tr>")
            continue
        href = site.input_href(r, "")
        thumb = site.thumbs.get(r.index)
        pixel = " pixelated" if site.ndim == 2 else ""
        cells.append(f'<td><a href="{href}"><img class="thumb{pixel}" src="{_url(thumb)}" alt="{esc(r.name)}"></a></td>'
                     if thumb else "<td></td>")
        cells.append(f'<td data-sort="{esc(r.name)}"><a href="{href}">{esc(r.name)}</a></td>')
        pred = r.predicted
        if pred is not None:
            cells.append(f'<td data-sort="{esc(site.class_label(pred))}" title="{esc(site.class_name(pred))}">'
                         f"{site.class_link(pred, '')}</td>")
            prob = float(r.top_probs[0]) if r.top_probs is not None and len(r.top_probs) else None
            shown = _percent(prob) if prob is not None else "—"
            cells.append(f'<td class=num data-sort="{_sort_value(prob)}">{shown}</td>')
        else:
            cells += ['<td data-sort="">—</td>', '<td class=num data-sort="">—</td>']
        if r.label is not None:
            mark = "" if pred is None else (' <span class=yes title="the prediction is right">✓</span>'
                                            if r.label == pred
                                            else ' <span class=no title="the prediction is wrong">✗</span>')
            label = esc(site.class_label(r.label))
            cells.append(f'<td data-sort="{label}">{label}{mark}</td>')
        else:
            cells.append('<td data-sort="">—</td>')
        top = site.top_scale(r)
        cells.append(f'<td data-sort="{esc(top or "")}">{esc(top) if top else "—"}</td>')
        c = r.concepts
        if c is not None and c.ids is not None and len(c.ids):
            cid, k, imp = int(c.class_id), int(c.ids[0]), float(c.importances[0])
            link = site.class_link(cid, "", anchor=f"#concept-{k}", text=f"concept {k}")
            cells.append(f'<td class="num nowrap" data-sort="{_sort_value(imp)}">{link} '
                         f'<span class=muted>({imp:.2f})</span></td>')
        else:
            cells.append('<td class=num data-sort="">—</td>')
        rho = r.agreement.get("where_spearman")
        shown = _number(rho, 2) if rho is not None else "—"
        cells.append(f'<td class=num data-sort="{_sort_value(rho)}">{shown}</td>')
        same = r.agreement.get("same_top_scale")
        cells.append('<td data-sort="">—</td>' if same is None else
                     (f'<td data-sort="yes"><span class=yes>yes</span></td>' if same
                      else f'<td data-sort="no"><span class=no>no</span></td>'))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    table = ('<table class="sortable" id="inputs"><thead><tr>' + "".join(head_html) + "</tr></thead><tbody>"
             + "\n".join(rows) + "</tbody></table>")
    failed = len(report.inputs) - len(report.ok_inputs)
    body = [
        "<h2>Run</h2>", _settings_html(report),
        f"<h2>Inputs <small class=muted>({len(report.inputs)}"
        + (f", {failed} failed" if failed else "") + ")</small></h2>",
        "<p class=muted>Click a column header to sort the table; click it again to reverse the order.</p>",
        table,
    ]
    if report.classes:
        items = []
        for cid in sorted(report.classes):
            cc = report.classes[cid]
            n_pred = sum(1 for r in report.ok_inputs if r.predicted == cid)
            k = int(torch.as_tensor(cc.importances).numel())
            items.append(f"<li>{site.class_link(cid, '')} <span class=muted>(class {cid}) — {k} concept"
                         f"{'s' if k != 1 else ''} at layer {esc(cc.layer)}, {n_pred} input"
                         f"{'s' if n_pred != 1 else ''} predicted as it</span></li>")
        body += ["<h2>Classes: concept atlases</h2>", "<ul class=classes>" + "".join(items) + "</ul>"]
    lead = (f"Model <b>{esc(report.model_id)}</b> · {len(report.ok_inputs)} of {len(report.inputs)} inputs explained"
            f" · where the model looks, at what wavelet scale, which concept")
    return _page(f"unified-xai report — {report.model_id}", "Explanation report", lead, "\n".join(body), root="",
                 script=True)


# --------------------------------------------------------------------------------------------------
# input pages
# --------------------------------------------------------------------------------------------------
def _input_page(site: _Site, r: InputResult) -> None:
    report, ndim, sr = site.report, site.ndim, site.sr
    name = site.input_slugs[r.index]
    fig_dir = f"figures/inputs/{name}"
    root = "../"
    point = site.point(r)
    x = r.input
    if x is None:
        for e in r.explanations.values():
            if e.inputs is not None:
                x = e.inputs[0]
                break
    sections: list[tuple[str, str, str]] = []  # (anchor, title, html)

    # ---- prediction
    parts = []
    if x is not None:
        thumb = f"{fig_dir}/thumb.png"
        figures.thumbnail(x, ndim, site.out / thumb, sr, point)
        site.thumbs[r.index] = thumb
        shape = " × ".join(str(s) for s in x.shape[1:])
        unit = {2: "px", 3: "voxels"}.get(ndim, "samples")
        caption = f"the input as the model saw it ({int(x.shape[0])} channel{'s' if x.shape[0] != 1 else ''}, " \
                  f"{shape} {unit}" + (f", {x.shape[-1] / sr:.2f} s at {sr:g} Hz" if ndim == 1 and sr else "") + ")"
        src = f"{fig_dir}/input.png"
        figures.input_figure(x, ndim, site.out / src, sr, point, title="input")
        parts.append(_figure_html(root + src, f"input {r.name}", esc(caption), pixelated=ndim == 2))
    top = _top5_html(site, r)
    prediction = f"<div class=row><div>{''.join(parts)}</div><div>{top}</div></div>"
    if ndim == 1 and x is not None:
        prediction += _players(site, r, x, root)
    sections.append(("prediction", "Prediction", prediction))

    # ---- where and scale
    blocks = [site.agreement_html(r)]
    order = [n for n in report.explainers if n in r.explanations] + \
        [n for n in r.explanations if n not in report.explainers]
    roles = {r.agreement.get("white_box"): "white-box", r.agreement.get("black_box"): "black-box",
             r.agreement.get("scale_black_box"): "black-box"}
    for i, ename in enumerate(order):
        e = r.explanations[ename]
        src = f"{fig_dir}/where-{i:02d}-{slug(ename)}.png"
        explained = site.class_name(int(e.targets.reshape(-1)[0])) if e.targets is not None and e.targets.numel() \
            else ""
        title = f"{explainer_title(ename)} — explains “{figures.short_name(explained)}”" if explained \
            else explainer_title(ename)
        params = e.key_params()
        role = roles.get(ename)
        blocks.append(f"<h3 id=\"explainer-{esc(slug(ename))}\">{esc(explainer_title(ename))}"
                      + (f" <small>{role}</small>" if role else "") + "</h3>")
        try:
            figures.explanation_figure(e, x, ndim, site.out / src, sr, title=title)
        except (InputError, ValueError, IndexError) as err:  # e.g. a third-party map of an unexpected shape
            blocks.append(f"<p class=error>This explanation cannot be drawn: {esc(err)} (where map of shape "
                          f"{esc(tuple(e.where.shape))}).</p>")
            continue
        flat = bool(e.where.numel()) and float(e.where.max() - e.where.min()) <= 1e-6 * float(e.where.abs().max())
        what = ("at what scale (its where map is uniform at these settings, e.g. one region per sub-band)" if flat
                and e.scales is not None else "where and at what scale" if e.scales is not None else "where")
        caption = f"{esc(explainer_title(ename))}: {what}" + (f" · {esc(params)}" if params else "") \
            + (f" · {e.elapsed:.2g} s" if e.elapsed else "")
        blocks.append(_figure_html(root + src, f"{ename} explanation of {r.name}", caption))
    if order:
        sections.append(("where", "Where the model looks, and at what scale", "\n".join(b for b in blocks if b)))

    # ---- concepts
    concepts_html = _input_concepts(site, r, x, fig_dir, root)
    if concepts_html:
        sections.append(("concepts", "Which concepts of its class it uses", concepts_html))

    # ---- what the model keeps
    if r.rebuilt is not None and x is not None:
        sections.append(("rebuilt", "What the model keeps", _rebuilt_html(site, r, x, fig_dir, root, point)))

    # ---- faithfulness
    if r.faithfulness:
        sections.append(("faithfulness", "Faithfulness of the explanations", _faithfulness_html(site, r)))

    pred = r.predicted
    lead_bits = []
    if pred is not None:
        prob = float(r.top_probs[0]) if r.top_probs is not None and len(r.top_probs) else None
        lead_bits.append(f"predicted <b>{esc(site.class_label(pred))}</b>" + (f" ({_percent(prob)})" if prob is not None
                                                                             else ""))
    if r.label is not None:
        verdict = "" if pred is None else (" — right" if r.label == pred else " — wrong")
        lead_bits.append(f"true label {esc(site.class_label(r.label))}{verdict}")
    lead_bits.append(f"model {esc(report.model_id)}")
    if r.elapsed:
        lead_bits.append(f"computed in {r.elapsed:.1f} s")
    toc = "<nav class=toc>" + "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t, _ in sections) + "</nav>"
    body = toc + "\n" + "\n".join(f'<section id="{a}"><h2>{esc(t)}</h2>\n{h}\n</section>' for a, t, h in sections)
    crumbs = f'<a href="{root}index.html">← all inputs</a> · input {r.index}'
    _write_text(site.out / "inputs" / f"{name}.html",
                _page(f"{r.name} — unified-xai report", esc(r.name), " · ".join(lead_bits), body, root, crumbs))


def _top5_html(site: _Site, r: InputResult) -> str:
    if r.top_ids is None or r.top_probs is None:
        return "<p class=muted>No prediction recorded.</p>"
    rows = []
    for rank, (cid, p) in enumerate(zip(r.top_ids.tolist(), r.top_probs.tolist()), 1):
        cid = int(cid)
        mark = " <span class=yes>✓ true label</span>" if r.label is not None and cid == r.label else ""
        width = max(1, round(120 * float(p)))
        rows.append(f"<tr><td class=num>{rank}</td><td title=\"{esc(site.class_name(cid))}\">"
                    f"{site.class_link(cid, '../')}{mark}</td><td class=num>{cid}</td>"
                    f"<td class=num>{_percent(p)}</td><td><span class=bar style=\"width:{width}px\"></span></td></tr>")
    n = len(rows)
    return (f"<h3>Top {n} classes</h3><table><thead><tr><th class=num>#</th><th>class</th><th class=num>id</th>"
            f"<th class=num>probability</th><th></th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _players(site: _Site, r: InputResult, x: torch.Tensor, root: str) -> str:
    if not site.sr:
        return "<p class=muted>No sample rate is recorded in this report, so no audio file was written.</p>"
    name = site.input_slugs[r.index]
    signal = figures._np(x)
    rebuilt = figures._np(r.rebuilt) if r.rebuilt is not None else None
    peak = float(np.abs(signal).max())
    if rebuilt is not None:
        peak = max(peak, float(np.abs(rebuilt).max()))
    src = f"audio/{name}-input.wav"
    _write_wav(site.out / src, signal, site.sr, peak)
    players = [f'<div>the input<br><audio controls preload="metadata" src="{_url(root + src)}"></audio></div>']
    if rebuilt is not None:
        src = f"audio/{name}-rebuilt.wav"
        _write_wav(site.out / src, rebuilt, site.sr, peak)
        players.append(f'<div>what the model keeps (rebuilt, <a href="#rebuilt">below</a>)<br>'
                       f'<audio controls preload="metadata" src="{_url(root + src)}"></audio></div>')
    return "<div class=players>" + "".join(players) + "</div>"


def _input_concepts(site: _Site, r: InputResult, x, fig_dir: str, root: str) -> str:
    report = site.report
    c = r.concepts
    if c is None:
        if not report.classes:
            return ""
        pred = r.predicted
        return (f"<p class=muted>This report has no concept bank for the predicted class "
                f"{esc(site.class_label(pred))}, so no concepts are shown for this input.</p>")
    cid = int(c.class_id)
    cc: ClassConcepts | None = report.classes.get(cid)
    ids = [int(i) for i in c.ids.tolist()]
    class_imp = torch.as_tensor(cc.importances).reshape(-1).tolist() if cc is not None else []
    rows = []
    for rank, k in enumerate(ids):
        top = ""
        if c.scales is not None and len(c.scales) > rank:
            best = top_level(figures.profile_infos(c.scales, report.level_names, site.ndim, site.sr, index=rank))
            top = "" if best is None else _level_text(best)
        cls_value = f"{class_imp[k]:.2f}" if k < len(class_imp) else "—"
        link = site.class_link(cid, root, f"#concept-{k}", f"concept {k}")
        rows.append(f"<tr><td class=num>{rank + 1}</td><td>{link}"
                    f"</td><td class=num>{float(c.importances[rank]):.3f}</td>"
                    f"<td class=num>{float(c.coefficients[rank]):.3g}</td><td class=num>{cls_value}</td>"
                    f"<td>{esc(top) if top else '—'}</td></tr>")
    table = ("<table><thead><tr><th class=num>#</th><th>concept</th>"
             "<th class=num title=\"total Sobol index of the concept for this input\">importance here</th>"
             "<th class=num title=\"pooled coefficient of the concept in this input\">coefficient</th>"
             "<th class=num title=\"the concept's importance over the class images\">importance for the class</th>"
             "<th>top scale here</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    src = f"{fig_dir}/concepts.png"
    figures.concepts_figure(c, cc, x, site.ndim, site.out / src, report.level_names, site.sr,
                            class_name=site.class_name(cid))
    intro = (f"<p>The {len(ids)} concepts of the class {site.class_link(cid, root)} most important for this input "
             f"(CRAFT: concepts factorised from the activations of layer <code>{esc(cc.layer) if cc else '?'}</code>,"
             f" importance = total Sobol index for this input). Each concept's own scale profile is WAM on that "
             f"concept. Its MACO image and top crops come from the "
             f"{site.class_link(cid, root, text='class page')}.</p>")
    caption = ("where each concept lies in this input (its coefficient at every position), its scale profile here, "
               "the class's MACO image of it and the class images' crops that express it most")
    return intro + table + _figure_html(root + src, f"concepts of {r.name}", esc(caption))


def _rebuilt_html(site: _Site, r: InputResult, x, fig_dir: str, root: str, point) -> str:
    info = r.rebuilt_info or {}
    src = f"{fig_dir}/rebuilt.png"
    target = info.get("target")
    cid = int(target) if isinstance(target, (int, float)) else r.predicted
    figures.rebuilt_figure(x, r.rebuilt, site.ndim, site.out / src, site.sr, info, point,
                           class_name=site.class_name(cid) if cid is not None else "")
    kept, score, rebuilt_score = info.get("kept_fraction"), info.get("score"), info.get("rebuilt_score")
    words = ["The input rebuilt from only its most important wavelet coefficients (ranked by WAM), all the others "
             "set to zero: the structures the decision keeps."]
    count = info.get("kept")
    if isinstance(kept, (int, float)):
        words.append(f"Kept: <b>{100 * kept:.3g} %</b> of the coefficients"
                     + (f" ({int(count):,} of them)" if isinstance(count, (int, float)) else "") + ".")
    if isinstance(score, (int, float)) and isinstance(rebuilt_score, (int, float)):
        of = f" of {esc(site.class_label(cid))}" if cid is not None else ""
        ratio = f" ({100 * rebuilt_score / score:.0f} % of it)" if score > 0 else ""
        words.append(f"The score{of} goes from <b>{score:.2f}</b> on the input to <b>{rebuilt_score:.2f}</b> on the "
                     f"rebuilt input{ratio}.")
    extra = {k: v for k, v in info.items() if k not in ("kept_fraction", "kept", "score", "rebuilt_score", "target")}
    if extra:
        words.append("<span class=muted>" + esc(", ".join(f"{k} = {v}" for k, v in sorted(extra.items()))) + "</span>")
    html_text = "<p>" + " ".join(words) + "</p>"
    if site.ndim == 1:
        html_text += "<p class=muted>Listen to both with the players in the Prediction section above.</p>"
    caption = {1: "top: both waveforms; bottom: the spectrograms of the input (left) and of the rebuilt input (right)",
               2: "left: the input; right: the rebuilt input, shown with its own contrast",
               3: "top row: the input; bottom row: the rebuilt input, shown with its own contrast"}[site.ndim]
    return html_text + _figure_html(root + src, f"rebuilt {r.name}", caption, pixelated=site.ndim == 2)


def _faithfulness_html(site: _Site, r: InputResult) -> str:
    metrics = []
    for scores in r.faithfulness.values():
        for m in scores:
            if m not in metrics:
                metrics.append(m)
    head = "".join(f"<th class=num title=\"{esc(METRICS.get(m, (m, ''))[1])}\">{esc(METRICS.get(m, (m, ''))[0])}"
                   + (f"<br><small class=muted>{esc(METRICS[m][1])}</small>" if m in METRICS else "") + "</th>"
                   for m in metrics)
    rows = []
    order = [n for n in site.report.explainers if n in r.faithfulness] + \
        [n for n in r.faithfulness if n not in site.report.explainers]
    for name in order:
        scores = r.faithfulness[name]
        rows.append(f"<tr><td>{esc(explainer_title(name))}</td>"
                    + "".join(f"<td class=num>{_number(scores.get(m))}</td>" for m in metrics) + "</tr>")
    return ("<p>How well each explanation predicts the model's behaviour when the input is changed: Deletion and "
            "Insertion are areas under the target's score as the most important features are removed from the input "
            "or added to a blank one; µ-Fidelity correlates the attribution of random subsets with the score drop "
            "when they are removed.</p><table><thead><tr><th>explainer</th>" + head + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


# --------------------------------------------------------------------------------------------------
# class pages
# --------------------------------------------------------------------------------------------------
def _class_page(site: _Site, cid: int) -> None:
    report = site.report
    cc = report.classes[cid]
    name = site.class_slugs[cid]
    root = "../"
    src = f"figures/classes/{name}/atlas.png"
    figures.atlas_figure(cc, site.out / src, report.level_names, site.sr, model_id=report.model_id)
    importances = torch.as_tensor(cc.importances).reshape(-1).tolist()
    predicted = [r for r in report.ok_inputs if r.predicted == cid]
    top_of: dict[int, list[InputResult]] = {}
    for r in predicted:
        if r.concepts is not None and int(r.concepts.class_id) == cid and len(r.concepts.ids):
            top_of.setdefault(int(r.concepts.ids[0]), []).append(r)
    m = 0 if cc.maco is None else int(cc.maco.shape[0])
    rows = []
    for k, imp in enumerate(importances):
        top = ""
        if cc.scales is not None and cc.scales.ndim == 2 and k < cc.scales.shape[0]:
            best = top_level(figures.profile_infos(cc.scales, report.level_names, site.ndim, site.sr, index=k))
            top = "" if best is None else _level_text(best, meaning=True)
        users = top_of.get(k, [])
        links = ", ".join(f'<a href="{site.input_href(r, root)}">{esc(r.name)}</a>' for r in users) or "—"
        rows.append(f'<tr id="concept-{k}"><td>concept {k}</td><td class=num>{imp:.3f}</td>'
                    f"<td>{esc(top) if top else '—'}</td><td>{'yes' if k < m else 'no'}</td><td>{links}</td></tr>")
    table = ("<table><thead><tr><th>concept</th><th class=num title=\"total Sobol index over the class images\">"
             "importance</th><th>top scale (over the class images)</th><th>MACO image</th>"
             "<th>inputs where it is the top concept</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    facts = [f"{len(importances)} concepts factorised (NMF) from the activations of layer <code>{esc(cc.layer)}</code>"]
    if cc.n_images:
        facts.append(f"fitted on {cc.n_images} image{'s' if cc.n_images != 1 else ''} of the class"
                     + (f" ({esc(cc.source)})" if cc.source else ""))
    elif cc.source:
        facts.append(f"images: {esc(cc.source)}")
    if cc.bank_path:
        facts.append(f"bank file <code>{esc(cc.bank_path)}</code>")
    body = [f"<p>{'; '.join(facts)}. Concepts are ordered by their importance for the class (total Sobol index: how "
            f"much of the class score's variance the concept explains), most important first. Each row of the atlas "
            f"shows a concept's importance, the crops of the class images that express it most, its wavelet scale "
            f"profile (WAM on the concept, over the class images) and its MACO image (a picture maximising it).</p>",
            table,
            _figure_html(root + src, f"concept atlas of {cc.name}",
                         esc(f"concept atlas of {site.class_label(cid)}: importance, top crops, scale profile, MACO"),
                         pixelated=False)]
    if predicted:
        items = []
        for r in predicted:
            thumb = site.thumbs.get(r.index)
            img = (f'<img class="thumb{" pixelated" if site.ndim == 2 else ""}" src="{_url(root + thumb)}" '
                   f'alt="{esc(r.name)}" style="display:inline-block;vertical-align:middle;margin-right:8px">'
                   if thumb else "")
            prob = float(r.top_probs[0]) if r.top_probs is not None and len(r.top_probs) else None
            items.append(f'<li><a href="{site.input_href(r, root)}">{img}{esc(r.name)}</a>'
                         + (f" <span class=muted>({_percent(prob)})</span>" if prob is not None else "") + "</li>")
        body += [f"<h2>Inputs predicted as {esc(site.class_label(cid))} ({len(predicted)})</h2>",
                 "<ul class=inputs>" + "".join(items) + "</ul>"]
    else:
        body += [f"<h2>Inputs predicted as {esc(site.class_label(cid))}</h2>",
                 "<p class=muted>No input of this report is predicted as this class.</p>"]
    crumbs = f'<a href="{root}index.html">← all inputs</a> · class {cid}'
    lead = f"class {cid} of model {esc(report.model_id)} · {len(importances)} concepts · layer {esc(cc.layer)}"
    _write_text(site.out / "classes" / f"{name}.html",
                _page(f"{cc.name} — concept atlas", f"Concept atlas of “{esc(site.class_label(cid))}”", lead,
                      "\n".join(body), root, crumbs))
