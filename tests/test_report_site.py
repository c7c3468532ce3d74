"""The report's static site (``unified_xai.report.site.build_site``) on real small reports of the three modalities.

The reports are computed by ``ux.report`` on the built-in planted models (``sample_report``). The browser test serves a site from a
temporary folder and opens it in headless Chromium (Debian's ``chromium`` + ``chromium-driver``).
"""
from __future__ import annotations

import base64
import html.parser
import http.server
import os
import shutil
import tempfile
import threading
import time
from html import escape as html_escape
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
import torch

import unified_xai as ux
from unified_xai.core.errors import InputError
from unified_xai.report.records import InputResult, Report
from unified_xai.report.site import build_site

pytestmark = pytest.mark.usefixtures("one_thread")

MODELS = {"image": "planted-image", "audio": "planted-audio", "volume": "planted-volume"}
#: inputs explained per kind, and how many classes they come from (one concept bank per predicted class)
PICKS = {"image": (2, 2), "audio": (1, 1), "volume": (1, 1)}
ODD_NAME = "photo <1> & \"friends\""
FAILED_NAME = "broken <scan> & co.png"


# --------------------------------------------------------------------------------------------------
# real small reports, computed by ux.report
# --------------------------------------------------------------------------------------------------
def _picks(targets: torch.Tensor, n: int, n_classes: int) -> list[int]:
    """The first ``n`` dataset indices of the first ``n_classes`` classes found, taken in turn."""
    classes = list(dict.fromkeys(int(t) for t in targets.tolist()))[:n_classes]
    pools = [[i for i, t in enumerate(targets.tolist()) if t == c] for c in classes]
    return [pools[k % n_classes].pop(0) for k in range(n)]


def sample_report(kind: str, tmp_path: Path) -> Report:
    """A small real report of ``kind`` ("image", "audio", "volume") by ``ux.report``: a few test items of a
    built-in planted model given as .npy files, explained by wam, sobol and sobol_wavelet, with CRAFT concepts,
    MACO images and faithfulness scores (images), and one file that cannot be read; site not built yet."""
    adapter = ux.data.load_model(MODELS[kind], progress=False)
    ds = ux.data.load_dataset(MODELS[kind], split="test")
    folder = tmp_path / "inputs"
    folder.mkdir()
    files = []
    for n, i in enumerate(_picks(ds.targets, *PICKS[kind])):
        files.append(folder / f"{ODD_NAME if n == 0 else f'{ds.name} test #{i}'}.npy")
        np.save(files[-1], ds.inputs[i].numpy())
    (folder / FAILED_NAME).write_bytes(b"not an image file")
    files.insert(1, folder / FAILED_NAME)
    return ux.report(adapter, files, explainers=["wam", "sobol", "sobol_wavelet"], out=tmp_path / "report",
                     explainer_params={"wam": {"n_samples": 4}, "sobol": {"n_designs": 8, "grid_size": 4},
                                       "sobol_wavelet": {"n_designs": 8, "grid_size": 2}},
                     n_concepts=3, top_concepts=2, maco=2 if kind == "image" else 0, maco_steps=12,
                     faithfulness=kind == "image", site=False, progress=False)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """``site(kind)`` -> (report, path of index.html): each kind's report and site built once per module."""
    built: dict[str, tuple[Report, Path]] = {}

    def get(kind: str) -> tuple[Report, Path]:
        if kind not in built:
            folder = tmp_path_factory.mktemp(f"site-{kind}")
            report = sample_report(kind, folder)
            built[kind] = (report, build_site(report, folder / "report", progress=False))  # as ux.report does
        return built[kind]

    return get


# --------------------------------------------------------------------------------------------------
# reading the pages
# --------------------------------------------------------------------------------------------------
class _Page(html.parser.HTMLParser):
    """The links, pictures, players, element ids and text of one page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images: list[str] = []
        self.audio: list[str] = []
        self.ids: set[str] = set()
        self.tables: list[dict] = []
        self.headers: list[dict] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a" and "href" in attrs:
            self.links.append(attrs["href"])
        elif tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag in ("audio", "source") and "src" in attrs:
            self.audio.append(attrs["src"])
        elif tag == "table":
            self.tables.append(attrs)
        elif tag == "th":
            self.headers.append(attrs)

    def handle_data(self, data):
        self.text.append(data)


def _read(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _target(page: Path, href: str) -> tuple[Path, str] | None:
    """The local file (and fragment) a relative link of ``page`` points to; None for other links."""
    parts = urlsplit(href)
    if parts.scheme or parts.netloc:
        return None
    path = (page.parent / unquote(parts.path)).resolve() if parts.path else page.resolve()
    return path, parts.fragment


def _crawl(index: Path) -> dict[Path, _Page]:
    """Every page reachable from ``index`` by local links."""
    pages: dict[Path, _Page] = {}
    todo = [index.resolve()]
    while todo:
        path = todo.pop()
        if path in pages:
            continue
        pages[path] = _read(path)
        for href in pages[path].links:
            target = _target(path, href)
            if target and target[0].suffix == ".html" and target[0].is_file():
                todo.append(target[0])
    return pages


# --------------------------------------------------------------------------------------------------
# the structure of the site
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(MODELS))
def test_site_pages_links_pictures(site, kind):
    report, index = site(kind)
    root = index.parent
    assert index == root / "index.html" and index.is_file()
    pages = _crawl(index)
    inputs = {p for p in pages if p.parent.name == "inputs"}
    classes = {p for p in pages if p.parent.name == "classes"}
    assert len(inputs) == len(report.ok_inputs) == PICKS[kind][0]
    assert len(classes) == len(report.classes) == PICKS[kind][1]
    for path, page in pages.items():
        assert page.images, f"{path.name} shows no picture"
        for src in page.images:
            target = _target(path, src)
            assert target and target[0].is_file() and target[0].stat().st_size > 100, f"{path.name}: missing {src}"
            assert target[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert root.resolve() in target[0].parents
        for href in page.links:
            target = _target(path, href)
            assert target is not None, f"{path.name} links outside the site: {href}"
            file, fragment = target
            assert file.is_file(), f"{path.name}: broken link {href}"
            if fragment:
                assert fragment in pages[file].ids, f"{path.name}: no #{fragment} in {file.name}"
    # every explainer has a figure on every input page, in the report's order
    for path in inputs:
        text = path.read_text(encoding="utf-8")
        positions = [text.index(f'id="explainer-{name}"') for name in report.explainers]
        assert positions == sorted(positions)
        assert f"Top {min(5, len(report.class_names))} classes" in text
        for section in ("prediction", "where", "concepts", "rebuilt"):
            assert f'<section id="{section}">' in text
        assert ("id=\"faithfulness\"" in text) == (kind == "image")
        assert "rank correlation (Spearman)" in text and "ρ = " in text
    # no external resource: no http(s) URL, CDN or remote script anywhere
    for path in root.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "<script src" not in text


def test_index_table_is_sortable_and_lists_every_input(site):
    report, index = site("image")
    page = _read(index)
    text = index.read_text(encoding="utf-8")
    assert any("sortable" in (t.get("class") or "") for t in page.tables)
    assert "<script>" in text and "addEventListener(\"click\"" in text
    numeric = [h for h in page.headers if h.get("data-type") == "number"]
    assert len(numeric) >= 4  # #, probability, top concept importance, where rho
    body = text[text.index("<tbody>"):text.index("</tbody>")]
    assert body.count("<tr") == len(report.inputs)
    failed = body[body.index("<tr class=failed>"):]
    failed = failed[:failed.index("</tr>")]
    assert "<a " not in failed and "failed: " in failed
    error = next(r.error for r in report.inputs if not r.ok)
    assert FAILED_NAME in error and html_escape(error) in failed
    # every class page is linked from the index, and links to the inputs predicted as its class
    assert "Classes: concept atlases" in text
    pages = _crawl(index)
    for cid in report.classes:
        page = next(p for p in pages if p.parent.name == "classes" and p.name.startswith(f"class-{cid}-"))
        linked = {_target(page, href)[0].name for href in pages[page].links}
        predicted = [r for r in report.ok_inputs if r.predicted == cid]
        assert predicted and all(any(f"{r.index:04d}-" in name for name in linked) for r in predicted)


def test_names_are_escaped(site):
    report, index = site("image")
    root = index.parent
    for path in root.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        assert "<1>" not in text and "<scan>" not in text, f"unescaped name in {path.name}"
    index_text = index.read_text(encoding="utf-8")
    assert html_escape(ODD_NAME) in index_text and html_escape(FAILED_NAME) in index_text
    page = next(p for p in (root / "inputs").glob("*.html") if "photo" in p.name)
    text = page.read_text(encoding="utf-8")
    assert f"<title>{html_escape(ODD_NAME)} — unified-xai report</title>" in text
    assert f"<h1>{html_escape(ODD_NAME)}</h1>" in text
    assert ODD_NAME in "".join(_read(page).text)  # what a reader sees is the name itself


def test_audio_pages_play_the_input_and_what_the_model_keeps(site):
    import soundfile

    report, index = site("audio")
    for path in (index.parent / "inputs").glob("*.html"):
        page = _read(path)
        assert len(page.audio) == 2, path.name
        for src in page.audio:
            file, _ = _target(path, src)
            assert file.is_file() and file.suffix == ".wav"
            data, rate = soundfile.read(file)
            assert rate == int(report.sample_rate)
            assert data.shape[0] == report.ok_inputs[0].input.shape[-1] and np.abs(data).max() > 0.01
        assert "<audio controls" in path.read_text(encoding="utf-8")


def test_scale_bars_draw_negative_shares():
    from matplotlib.figure import Figure

    from unified_xai.report import figures

    infos = figures.profile_infos(torch.tensor([[-0.2, 0.5, 0.25, -0.05]]), None, 2)
    ax = Figure().add_subplot()
    figures.scale_bars(ax, infos)
    widths = [bar.get_width() for bar in ax.patches]
    assert np.allclose(widths, [-20, 50, 25, -5])
    assert ax.get_xlim()[0] < -20 and ax.get_xlim()[1] > 50  # the negative bar and its label fit
    colors = [bar.get_facecolor()[:3] for bar in ax.patches]
    assert colors[0] != colors[1] and colors[0] == colors[3]  # negative shares in their own colour
    labels = [t.get_text() for t in ax.texts]
    assert [t.strip() for t in labels] == ["−20 %", "50 %", "25 %", "−5.0 %"]


def test_a_report_with_only_explanations(site, tmp_path):
    """Any explainer name draws (a third-party one, a where map coarser than the image); absent agreement keys,
    concepts, rebuilt input and faithfulness leave their sections out."""
    import dataclasses

    report, _ = site("image")
    ok = report.ok_inputs[0]
    sobol = ok.explanations["sobol"]
    coarse = dataclasses.replace(sobol, method="lab.coarse", where=torch.nn.functional.avg_pool2d(sobol.where, 8))
    runs = {"my_lab.occlusion": dataclasses.replace(sobol, method="my_lab.occlusion"), "lab.coarse": coarse}
    bare = InputResult(index=0, name="bare", label=None, input=ok.input, top_ids=ok.top_ids, top_probs=ok.top_probs,
                       explanations=runs, agreement={"where_spearman": 0.5})
    small = Report(model_id=report.model_id, class_names=report.class_names, spatial_ndim=2, sample_rate=None,
                   explainers=list(runs), settings={}, inputs=[bare], level_names=None)
    index = build_site(small, tmp_path / "bare-site", progress=False)
    path = next((index.parent / "inputs").glob("*.html"))
    page = path.read_text(encoding="utf-8")
    assert 'id="explainer-my_lab.occlusion"' in page and 'id="explainer-lab.coarse"' in page
    assert len(_read(path).images) == 3 and "cannot be drawn" not in page  # the input and two where figures
    assert 'id="where"' in page and 'id="concepts"' not in page and 'id="rebuilt"' not in page
    assert 'id="faithfulness"' not in page and "ρ = 0.50" in page
    assert "Classes: concept atlases" not in index.read_text(encoding="utf-8")


def test_bad_output_folder_is_a_clear_error(site, tmp_path, monkeypatch):
    report, _ = site("image")
    a_file = tmp_path / "taken.txt"
    a_file.write_text("not a folder")
    with pytest.raises(InputError, match="is a file, not a folder"):
        build_site(report, a_file)
    with pytest.raises(InputError, match="cannot create the output folder"):
        build_site(report, a_file / "site")
    with pytest.raises(InputError, match="expected a unified_xai Report"):
        build_site({"inputs": []}, tmp_path / "site")
    with pytest.raises(InputError, match="out must be a folder path"):
        build_site(report, 3)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # root writes anywhere: simulate a read-only folder
    with pytest.raises(InputError, match="is not writable .*Permission denied"):
        build_site(report, tmp_path / "read-only")


# --------------------------------------------------------------------------------------------------
# the site in a real browser
# --------------------------------------------------------------------------------------------------
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,1000")


def _browser(tmp_path: Path, monkeypatch):
    if os.environ.get("UXAI_SKIP_BROWSER") == "1":
        pytest.skip("UXAI_SKIP_BROWSER=1")
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    if missing:
        pytest.fail(f"the report site test needs headless Chromium ({', '.join(missing)} missing): install Debian's "
                    f"packages with `apt-get install -y chromium chromium-driver` (as root; scripts/test.sh does it "
                    f"through scripts/browser.sh), or set UXAI_SKIP_BROWSER=1 to skip this test", pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("the report site test needs selenium: .venv/bin/pip install -c constraints.txt -e '.[dev]'",
                    pytrace=False)
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager never downloads a driver or a browser
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


class _Server:
    """The site folder served by ``http.server`` on 127.0.0.1 and a free port, in a thread."""

    def __init__(self, folder: Path):
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


_IMAGES_STATE = """
return Array.from(document.images).map(function (img) {
  return {src: img.getAttribute("src"), complete: img.complete, width: img.naturalWidth};
});
"""
_AUDIO_STATE = """
return Array.from(document.querySelectorAll("audio")).map(function (a) {
  return {src: a.getAttribute("src"), ready: a.readyState, error: a.error ? a.error.code : null,
          duration: a.duration};
});
"""


def _wait(driver, script: str, done, timeout: float = 15.0):
    end = time.monotonic() + timeout
    while True:
        state = driver.execute_script(script)
        if done(state) or time.monotonic() > end:
            return state
        time.sleep(0.05)


def _check_page(driver, url: str, errors: list) -> None:
    """Open ``url``; every image loads, every player has its audio, the console shows no error."""
    driver.get(url)
    images = _wait(driver, _IMAGES_STATE, lambda s: all(i["complete"] for i in s))
    assert images, f"no image on {url}"
    broken = [i["src"] for i in images if not i["complete"] or i["width"] <= 0]
    assert not broken, f"images that do not load on {url}: {broken}"
    players = _wait(driver, _AUDIO_STATE, lambda s: all(a["ready"] >= 1 or a["error"] for a in s))
    bad = [a for a in players if a["error"] or a["ready"] < 1 or not a["duration"] > 0]
    assert not bad, f"audio players that do not load on {url}: {bad}"
    errors += [(url, entry["message"]) for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _column(driver, index: int) -> list[str]:
    return driver.execute_script(
        "var col = arguments[0];"
        "return Array.from(document.querySelectorAll('#inputs tbody tr')).map(function (row) {"
        " return row.cells[col] ? row.cells[col].textContent.trim() : ''; });", index)


def _screenshot(driver, path: Path) -> Path:
    """The whole page (not only the window) as a PNG, through the DevTools protocol."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    clip = {"x": 0, "y": 0, "width": int(size["width"]), "height": min(int(size["height"]), 8000), "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                             "clip": clip})
    path.write_bytes(base64.b64decode(shot["data"]))
    print(f"screenshot: {path}")
    return path


def test_site_in_headless_chromium(site, tmp_path, monkeypatch):
    """The done-when of issue 12: the site, served from a temporary folder and opened from file://, shows every
    picture and plays every audio file in headless Chromium with no console error; the index table sorts."""
    from selenium.webdriver.common.by import By

    image_report, image_index = site("image")
    _, audio_index = site("audio")
    served = tmp_path / "served"
    shutil.copytree(image_index.parent, served / "image")
    shutil.copytree(audio_index.parent, served / "audio")
    shots = Path(os.environ.get("UXAI_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    driver = _browser(tmp_path, monkeypatch)
    errors: list = []
    try:
        with _Server(served) as server:
            for kind in ("image", "audio"):
                for page in sorted(_crawl(served / kind / "index.html")):
                    relative = page.relative_to(served.resolve()).as_posix()
                    _check_page(driver, server.url + relative, errors)
            # sorting: click a numeric column header, the rows change order; click again, they reverse
            driver.get(server.url + "image/index.html")
            heads = driver.find_elements(By.CSS_SELECTOR, "#inputs thead th")
            names = [h.text.strip() for h in heads]
            before = _column(driver, 0)
            probability = heads[names.index("Probability")]
            probability.click()
            assert probability.get_attribute("aria-sort") == "ascending"
            ascending = _column(driver, 0)
            assert ascending != before and sorted(ascending) == sorted(before)
            assert ascending[-1] == before[1]  # the failed input (no probability) goes last
            values = [float(v.rstrip(" %")) for v in _column(driver, names.index("Probability"))[:-1]]
            assert values == sorted(values)
            probability.click()
            assert probability.get_attribute("aria-sort") == "descending"
            values = [float(v.rstrip(" %")) for v in _column(driver, names.index("Probability"))[:-1]]
            assert values == sorted(values, reverse=True)
            heads[names.index("Input")].click()
            assert heads[names.index("Input")].get_attribute("aria-sort") == "ascending"
            driver.get(server.url + "image/index.html")
            index_shot = _screenshot(driver, shots / "report-index.png")
            page = next(p for p in sorted((served / "image" / "inputs").glob("*.html")) if "photo" not in p.name)
            driver.get(server.url + f"image/inputs/{page.name}")
            input_shot = _screenshot(driver, shots / "report-input.png")
            driver.get(server.url + f"audio/inputs/{next((served / 'audio' / 'inputs').glob('*.html')).name}")
            audio_shot = _screenshot(driver, shots / "report-input-audio.png")
            driver.get(server.url + f"image/classes/{sorted((served / 'image' / 'classes').glob('*.html'))[0].name}")
            class_shot = _screenshot(driver, shots / "report-class.png")
        # the same site from file://, no server
        for page in (served / "image" / "index.html", next((served / "image" / "inputs").glob("*.html")),
                     next((served / "image" / "classes").glob("*.html"))):
            _check_page(driver, page.resolve().as_uri(), errors)
        driver.get((served / "image" / "index.html").resolve().as_uri())
        driver.find_element(By.CSS_SELECTOR, "#inputs tbody a").click()
        assert "unified-xai report" in driver.title and driver.current_url.startswith("file://")
    finally:
        driver.quit()
    assert not errors, f"console errors: {errors}"
    for shot in (index_shot, input_shot, audio_shot, class_shot):
        assert shot.is_file() and shot.stat().st_size > 10_000
