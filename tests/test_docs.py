"""The documentation site builds in strict mode and covers the public modules."""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _nav_pages() -> list[str]:
    text = (REPO / "mkdocs.yml").read_text()
    nav = text[text.index("\nnav:") :]
    return re.findall(r":\s*([\w\-/]+\.md)\s*$", nav, re.M)


def test_nav_lists_the_required_pages():
    pages = _nav_pages()
    for page in ("index.md", "getting-started.md", "matlab.md", "start.md", "signal.md",
                 "batch.md", "io.md", "cli.md", "distributed.md", "gd.md", "architecture.md",
                 "api.md"):
        assert page in pages, page


def test_api_reference_covers_the_public_modules():
    entries = set(re.findall(r"^::: ([\w.]+)\s*$", (REPO / "docs" / "api.md").read_text(), re.M))
    for mod in ("peakfit", "peakfit.fit", "peakfit.matlab", "peakfit.options", "peakfit.result",
                "peakfit.models", "peakfit.start", "peakfit.batch", "peakfit.signal",
                "peakfit.io", "peakfit.matlab.text", "peakfit.matlab.compare", "peakfit.plot",
                "peakfit.interop", "peakfit.backends", "peakfit.pipeline", "peakfit.batchfit",
                "peakfit.distributed", "peakfit.cli", "peakfit.errors", "peakfit.gd"):
        assert mod in entries, mod


#: where the browser test builds the site and saves its screenshots (CI keeps them as artifacts)
BUILD = Path(os.environ.get("PEAKFIT_DOCS_BUILD", REPO / "build" / "docs"))
#: LaTeX that must never reach a reader: the math hook turns it into MathML
RAW_LATEX = ("\\(", "\\)", "\\[", "\\]", "$$", "\\frac", "\\sum", "\\exp", "\\left",
             "\\text")


def _need(module: str) -> None:
    """Skip without ``module``; in CI (``CI=true``) fail: the docs tests must run there."""
    try:
        importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{module} is missing: pip install -e '.[test]' installs it")
        pytest.skip(f"{module} is not installed")


@pytest.fixture(scope="module")
def site() -> Path:
    """The site built once in strict mode, examples included, into ``BUILD/site``."""
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python", "mkdocs_gen_files",
                   "latex2mathml", "matplotlib"):
        _need(module)
    missing = [p for p in _nav_pages() if not (REPO / "docs" / p).is_file()
               and not p.startswith("gallery/") and p != "performance.md"]
    assert not missing, f"pages in the nav but not in docs/: {missing}"
    mkdocs = shutil.which("mkdocs")
    cmd = [mkdocs] if mkdocs else [sys.executable, "-m", "mkdocs"]
    out = BUILD / "site"
    proc = subprocess.run([*cmd, "build", "--strict", "-d", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


@pytest.mark.slow
def test_mkdocs_build_strict(site):
    for page in ("getting-started", "matlab", "cli", "distributed", "architecture", "api",
                 "performance", "gallery", "gallery/plot_4peaks", "gallery/gd_figures"):
        assert (site / page / "index.html").is_file(), page
    api = (site / "api" / "index.html").read_text()
    assert 'id="peakfit.fit_gaussians"' in api and 'id="peakfit.cli.main"' in api
    # equations are MathML in the HTML itself; no script renders them
    home = (site / "index.html").read_text()
    assert home.count("<math ") == 1 and "\\sum" not in home
    assert "mathjax" not in home.lower() and "katex" not in home.lower()
    assert "fonts.googleapis" not in home  # nothing is loaded from the network


@pytest.mark.slow
def test_gallery_pages_embed_output_and_figures(site):
    gallery = site / "gallery"
    # one figure per plotting cell, and the 13 figures of the gd demo's quick mode
    counts = {p.name: len(list((gallery / "images").glob(f"{p.name}_*.png")))
              for p in gallery.iterdir() if p.is_dir() and p.name != "images"}
    assert counts == {"plot_4peaks": 1, "matlab_display": 1, "start_hard": 1, "batch_map": 1,
                      "compare_matlab": 0, "batch_folder": 0, "seed_4peaks": 0,
                      "gd_figures": 16}
    page = (gallery / "plot_4peaks" / "index.html").read_text()
    assert "General model" not in page and "R-square 0.998708" in page
    assert "AGREE: all 9 coefficients" in (gallery / "compare_matlab" / "index.html").read_text()
    start = (gallery / "start_hard" / "index.html").read_text()
    assert start.count(": success (") == 4


def _browser():
    """A headless Chromium driven by selenium; skip (fail in CI) when either is missing."""
    in_ci = os.environ.get("CI") == "true"
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        if in_ci:
            pytest.fail("selenium is not installed (it is in the test extra)")
        pytest.skip("selenium is not installed")
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                    if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        msg = ("headless Chromium is needed: apt-get install -y chromium chromium-driver "
               f"(found browser={browser}, chromedriver={driver})")
        if in_ci:
            pytest.fail(msg)
        pytest.skip(msg)
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1400", "--hide-scrollbars"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=Service(executable_path=driver))


@contextlib.contextmanager
def _serve(root: Path):
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _target(site: Path, path: str) -> Path:
    p = site / urllib.parse.unquote(path).lstrip("/")
    return p / "index.html" if path.endswith("/") or p.is_dir() else p


_PAGE_JS = """
const art = document.querySelector('article') || document.body;
const copy = art.cloneNode(true);
copy.querySelectorAll('pre, code, script, style, math').forEach(e => e.remove());
return {
  text: copy.textContent,
  maths: Array.from(document.querySelectorAll('article math')).map(
      m => m.getBoundingClientRect().width),
  badImages: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))
      .map(i => i.getAttribute('src')),
  images: document.images.length,
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  external: performance.getEntriesByType('resource').map(e => e.name)
      .filter(u => !u.startsWith(location.origin)),
};
"""


@pytest.mark.slow
def test_site_in_headless_chromium(site):
    """Every page in a real browser: no raw LaTeX, every image loads, no broken internal link.

    Also: equations are laid out (MathML with a width), nothing is fetched from the network.
    """
    driver = _browser()
    shots = BUILD / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    pages = sorted(p.parent.relative_to(site).as_posix() for p in site.rglob("index.html"))
    problems: list[str] = []
    ids: dict[Path, set[str]] = {}
    n_images = n_links = 0
    try:
        driver.set_page_load_timeout(60)
        with _serve(site) as base:
            for page in pages:
                url = base + ("" if page == "." else page + "/")
                driver.get(url)
                info = driver.execute_script(_PAGE_JS)
                raw = [d for d in RAW_LATEX if d in info["text"]]
                if raw:
                    problems.append(f"{page}: raw LaTeX {raw}")
                if info["external"]:
                    problems.append(f"{page}: loads from the network {info['external']}")
                if any(w <= 0 for w in info["maths"]):
                    problems.append(f"{page}: equations not laid out {info['maths']}")
                if info["badImages"]:
                    problems.append(f"{page}: images that do not load {info['badImages']}")
                n_images += info["images"]
                for href in info["links"]:
                    if not href.startswith(base):
                        continue
                    n_links += 1
                    parts = urllib.parse.urlsplit(href)
                    target = _target(site, parts.path)
                    if not target.is_file():
                        problems.append(f"{page}: broken link {href}")
                    elif parts.fragment and target.suffix == ".html":
                        if target not in ids:
                            ids[target] = set(re.findall(r'\bid="([^"]+)"', target.read_text()))
                        if urllib.parse.unquote(parts.fragment) not in ids[target]:
                            problems.append(f"{page}: link to a missing anchor {href}")
                if page == ".":
                    assert info["maths"] and min(info["maths"]) > 100, info["maths"]
                    driver.save_screenshot(str(shots / "home.png"))
                elif page == "gallery":
                    assert info["images"] >= 5
                    driver.save_screenshot(str(shots / "gallery.png"))
                elif page == "gallery/plot_4peaks":
                    driver.save_screenshot(str(shots / "gallery-plot_4peaks.png"))
    finally:
        driver.quit()
    assert not problems, "\n".join(problems[:40])
    assert len(pages) >= 20 and n_images >= 24 and n_links > 200, (len(pages), n_images,
                                                                   n_links)
    for name in ("home.png", "gallery.png"):
        assert (shots / name).stat().st_size > 10_000, name


def _mathml_hook():
    pytest.importorskip("latex2mathml")
    pytest.importorskip("mkdocs")
    spec = importlib.util.spec_from_file_location("mathml_hook", REPO / "docs/hooks/mathml.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_math_hook_turns_latex_into_mathml():
    hook = _mathml_hook()
    html = ('<p>A <span class="arithmatex">\\(a_i &lt; b\\)</span> and</p>\n'
            '<div class="arithmatex">\\[ \\frac{1}{c} \\]</div>\n'
            "<p>.. math:: f(x) = \\sum_i a_i</p>")
    out = hook.render(html)
    assert out.count("<math ") == 3 and out.count('display="block"') == 2
    assert "\\" not in out and "&lt;" not in out  # the entity was unescaped before converting
    assert "<mo>&#x0003C;</mo>" in out and "<mfrac>" in out and "<munder>" in out
    assert hook.render("<p>no math</p>") == "<p>no math</p>"


@pytest.mark.parametrize("page", ["signal.md", "distributed.md"])
def test_doc_page_sessions_print_what_they_show(page):
    """The ``>>>`` sessions on the pages are doctests: the outputs shown are real outputs."""
    import doctest

    import numpy as np

    import peakfit
    from peakfit.distributed import result_columns

    # a fence closing a session ends its last expected output
    text = re.sub(r"^\s*```.*$", "", (REPO / "docs" / page).read_text(), flags=re.M)
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, {"np": np, "peakfit": peakfit,
                                     "result_columns": result_columns}, page, page, 0)
    assert len(test.examples) >= 1
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0 and runner.tries == len(test.examples)


def test_committed_benchmark_results_name_machine_date_and_commands():
    """The performance page's data: what ran, where and when; GPU not measured."""
    import importlib.util as iu

    spec = iu.spec_from_file_location("collect", REPO / "benchmarks/results/collect.py")
    collect = iu.module_from_spec(spec)
    spec.loader.exec_module(collect)
    for name, commands in collect.COMMANDS.items():
        doc = json.loads((REPO / f"benchmarks/results/{name}.json").read_text())
        assert doc["commands"] == ["python " + " ".join(c) for c in commands], name
        assert doc["machine"]["logical_cpus"] == 2 and "load_average" in doc["machine"]["note"]
        assert isinstance(doc["machine"]["load_average"], float)
        assert 0.0 <= doc["machine"]["load_average"] < 64.0
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", doc["date"])
        assert doc["gpu_measured"] is False and doc["records"], name
        assert not any(str(r.get("device", "")).startswith("gpu") for r in doc["records"])
    batch = json.loads((REPO / "benchmarks/results/batch.json").read_text())
    got = sorted((r["engine"], r["k"]) for r in batch["records"])
    assert got == sorted((e, k) for e in ("numba", "numpy") for k in (100, 300, 1000, 3000))
    assert {r["device"] for r in batch["records"]} == {"cpu"}


def test_nav_hook_adds_pages_that_nav_does_not_list(tmp_path):
    spec = importlib.util.spec_from_file_location("nav_hook", REPO / "docs/hooks/nav.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    for page in ("index.md", "a.md", "sub/b.md", "sub/c.md"):
        (tmp_path / page).parent.mkdir(exist_ok=True)
        (tmp_path / page).write_text("# t\n")
    nav = [{"Home": "index.md"}, {"Section": ["sub/b.md", {"A": "a.md"}]}]
    config = hook.on_config({"nav": list(nav), "docs_dir": str(tmp_path)})
    assert config["nav"] == [*nav, {"More": ["sub/c.md"]}]
    config = hook.on_config({"nav": [*nav, "sub/c.md"], "docs_dir": str(tmp_path)})
    assert config["nav"] == [*nav, "sub/c.md"]
    # the real nav lists every page of docs/ today
    assert hook.unlisted(REPO / "docs", _nav_pages()) == []
