"""The published book as a reader meets it: built fresh, served locally, opened in
headless Chromium.

The book is built here with README's flags (``jupyter-book build -W --keep-going``,
warnings as errors) into a temporary folder, so a stale ``_build`` can never pass for
the current sources; that build is the test command's check that the book builds, and
needs no browser. Pages are served on 127.0.0.1 and
loaded in Debian's Chromium driven by Playwright. The pages load MathJax from a CDN; CI
has no network, so the browser is handed a copy of the same MathJax release from the npm
registry (.ci/run fetches it) and every other outside request is refused and reported.
Screenshots go to ``_build/screenshots/`` for a human to look at.

The training page (book/04b_training_in_the_browser.md) is driven like a reader drives
it: it trains microgpt under Pyodide, from the copy the build bundled into the site (as
CI and the published book do: offline), and must print every digit CPython prints on the
page's C math library (musl's functions preloaded: tests/musl_libm.py, which needs gcc
and musl-dev) and, to the command line's four decimals, what this CPython prints. A book
built without Pyodide fetched loads it from Pyodide's CDN instead; the tests at the end
build the training page alone both ways (no browser needed) and train on the CDN build
in Chromium, the CDN's requests answered from the fetched package.

Set ``CHROMIUM`` to use another Chromium or Chrome, ``MICROGPT_MATHJAX`` to point at
MathJax's ``es5`` folder. Outside CI (``CI`` unset) the browser tests skip, with one
line saying what to install, when Chromium, Playwright or MathJax is missing; the
training page's also when Pyodide was not fetched for bundling, and the training test
when gcc or musl-dev is.
"""

import contextlib
import functools
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from microgpt import cli

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "book" / "_ext"))
# the book's Sphinx extension: the pinned Pyodide and what it copies
import browser_site  # noqa: E402

import musl_libm  # noqa: E402  (tests/musl_libm.py: musl's math functions, to preload)

CONFIG = yaml.safe_load((REPO / "_config.yml").read_text())
TOC = yaml.safe_load((REPO / "_toc.yml").read_text())
SCREENSHOTS = REPO / "_build" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
MATHJAX = Path(
    os.environ.get("MICROGPT_MATHJAX", REPO / "_build" / "mathjax" / "package" / "es5")
)
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/"
CONTENT_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".wasm": "application/wasm",
}
# Playwright adds a fresh --user-data-dir of its own for every launch
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
CHAPTER = "book/01_data_and_tokenizer.html"
SETUP = "book/00b_setup.html"
TRAINING = "book/04b_training_in_the_browser.html"
# Console errors every reader's browser logs on Jupyter Book 1.0.4's pages, harmless and
# not ours to fix: sphinx-thebe's settings script is included twice (thebe itself is
# off), and pydata-sphinx-theme finds no stored light/dark choice on a first visit and
# falls back to "auto". Any other error fails the test.
KNOWN_CONSOLE_ERRORS = {
    "Identifier 'THEBE_JS_URL' has already been declared",
    "Got invalid theme mode: . Resetting to auto.",
}


def missing(*needs: str | None) -> None:
    """What this test needs and lacks (None: has it), in one line: in CI a failure, on a
    reader's machine a skip that says what to install.
    """
    line = "; ".join(need for need in needs if need)
    if not line:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{line} (CI must install it: see .ci/run)")
    pytest.skip(line)


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    """The book, built now from the working tree with README's flags, into a temporary
    folder.
    """
    out = tmp_path_factory.mktemp("book")
    build = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()"]
    result = subprocess.run(
        build + ["build", "-W", "--keep-going", "--path-output", str(out), str(REPO)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, (
        f"the book does not build:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return out / "_build" / "html"


def test_the_book_builds_with_warnings_as_errors(html):
    """Every page builds, with no warning (``html`` fails on the first)."""
    assert (html / "index.html").is_file()
    assert (html / "book" / "13_performance.html").is_file()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serving(folder: Path):
    """``folder`` on http://127.0.0.1:PORT/, as a static host such as GitHub Pages
    serves it.
    """
    handler = functools.partial(QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def server(html):
    """The built book, served."""
    with serving(html) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    missing(
        None
        if os.access(CHROMIUM, os.X_OK)
        else (
            f"needs Chromium (none at {CHROMIUM}): "
            "apt-get install chromium, or set CHROMIUM"
        ),
        None
        if (MATHJAX / "tex-mml-chtml.js").is_file()
        else (
            f"needs MathJax 3 (none at {MATHJAX}): with Node's npm, "
            "mkdir -p _build/mathjax && (cd _build/mathjax && "
            "npm pack -q mathjax@3.2.2 && tar xzf mathjax-3.2.2.tgz)"
        ),
        None
        if sync_playwright
        else "needs the playwright package: pip install -r requirements.txt",
    )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS
        )
        yield chromium
        chromium.close()


class Visit:
    """One page opened in a fresh browser context; what it asked of the outside world
    and what it logged.
    """

    def __init__(
        self, browser, server: str, path: str, cdns: dict[str, Path] | None = None
    ):
        self.server, self.outside, self.errors, self.local, self.from_cdn = (
            server,
            [],
            [],
            [],
            [],
        )
        # a CDN's URL and the local copy that answers it
        self.cdns = {
            MATHJAX_CDN: MATHJAX,
            **(cdns or {}),
        }
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.route("**/*", self.route)
        self.page = self.context.new_page()
        self.page.on(
            "console", lambda msg: msg.type == "error" and self.error(msg.text)
        )
        self.page.on("pageerror", lambda exc: self.error(str(exc)))
        self.page.goto(server + path, wait_until="load")
        self.page.wait_for_load_state("networkidle")

    def error(self, text: str) -> None:
        if text not in KNOWN_CONSOLE_ERRORS:
            self.errors.append(text)

    def route(self, route) -> None:
        """Local pages pass; a CDN's files (MathJax's) are answered from the local copy;
        anything else is refused.
        """
        url = route.request.url
        if url.startswith(self.server):
            self.local.append(url[len(self.server) :])
            return route.continue_()
        for cdn, copy in self.cdns.items():
            if url.startswith(cdn):
                if cdn != MATHJAX_CDN:
                    self.from_cdn.append(url)
                file = copy / urllib.parse.urlsplit(url[len(cdn) :]).path
                # as the CDNs answer
                return route.fulfill(
                    path=str(file),
                    content_type=CONTENT_TYPES.get(file.suffix),
                    headers={"access-control-allow-origin": "*"},
                )
        self.outside.append(url)
        route.abort()

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def bundled(html) -> Path:
    """The training page's tests need Pyodide bundled with the book: offline, every
    request is local.
    """
    if not (REPO / browser_site.PYODIDE_DIR / "package.json").is_file():
        missing(
            f"needs Pyodide {browser_site.PYODIDE_VERSION} fetched "
            f"to bundle with the book: {browser_site.FETCH}"
        )
    manifest = json.loads((html / "browser" / "manifest.json").read_text())
    assert manifest["pyodide_url"] == "pyodide/", (
        f"the build did not bundle Pyodide: {manifest}"
    )
    return html / "browser" / "pyodide"


@pytest.fixture
def visit(browser, server):
    opened = []

    def open_page(path: str) -> Visit:
        opened.append(Visit(browser, server, path))
        return opened[-1]

    yield open_page
    for v in opened:
        v.close()


def wait_for_images(page) -> list[dict]:
    """Every <img> once it has loaded or failed: its src and natural width (0 for a
    broken image).
    """
    return page.evaluate(
        """async () => {
            const imgs = [...document.images];
            imgs.forEach(i => i.scrollIntoView());
            await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => {
                i.onload = i.onerror = r;
            })));
            window.scrollTo(0, 0);
            return imgs.map(i => ({src: i.currentSrc || i.src, width: i.naturalWidth}));
        }"""
    )


def wait_for_math(page) -> dict:
    """How many math nodes the page has and how MathJax typeset them (after its startup
    promise).
    """
    return page.evaluate(
        """async () => {
            const nodes = document.querySelectorAll('span.math, div.math');
            if (nodes.length && window.MathJax && MathJax.startup)
                await MathJax.startup.promise;
            return {
                nodes: nodes.length,
                typeset: [...nodes]
                    .filter(n => n.querySelector('mjx-container')).length,
                errors: document.querySelectorAll('mjx-merror').length,
            };
        }"""
    )


def internal_links(page, server: str) -> set[str]:
    """Absolute URLs of every link on the page that points into the book."""
    hrefs = page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)")
    return {h for h in hrefs if h.startswith(server)}


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, ""


def assert_links_resolve(links: set[str]) -> None:
    """Each internal link returns 200, and a #fragment names an id on the page it points
    to.
    """
    pages: dict[str, tuple[int, str]] = {}
    broken = []
    for link in sorted(links):
        url, _, fragment = link.partition("#")
        if url not in pages:
            pages[url] = fetch(url)
        status, body = pages[url]
        if status != 200:
            broken.append(f"{link}: HTTP {status}")
        elif fragment and not re.search(
            rf'\bid="{re.escape(urllib.parse.unquote(fragment))}"', body
        ):
            broken.append(f"{link}: no element with that id")
    assert not broken, "broken links:\n" + "\n".join(broken)


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def test_the_landing_page(visit, server):
    # index.html: a redirect to the root chapter, as GitHub Pages serves it
    v = visit("")
    page = v.page
    assert page.url == f"{server}{TOC['root']}.html", (
        f"the landing page redirects to {page.url}"
    )
    assert page.title().startswith("microgpt"), page.title()
    assert page.locator("article h1").count() == 1
    images = wait_for_images(page)
    assert all(i["width"] > 0 for i in images), f"images that did not load: {images}"
    nav = {
        urllib.parse.urlsplit(h).path
        for h in page.eval_on_selector_all(
            "nav.bd-docs-nav a[href]", "as => as.map(a => a.href)"
        )
    }
    chapters = [e["file"] for part in TOC["parts"] for e in part["chapters"]]
    for chapter in chapters:
        assert f"/{chapter}.html" in nav, f"the sidebar has no link to {chapter}"
    assert page.locator("a.right-next").count() == 1, "no 'next' button to chapter 1"
    assert_links_resolve(internal_links(page, server))
    screenshot(page, "landing")
    assert not v.outside, f"the landing page asked for outside resources: {v.outside}"
    assert not v.errors, f"console errors: {v.errors}"


def test_a_chapter_page(visit, server):
    v = visit(CHAPTER)
    page = v.page
    images = wait_for_images(page)
    assert images, f"{CHAPTER} shows no figure"
    assert all(i["width"] > 0 for i in images), f"images that did not load: {images}"
    math = wait_for_math(page)
    assert math["nodes"] > 0, f"{CHAPTER} has no math to check"
    assert math["typeset"] == math["nodes"] and not math["errors"], (
        f"MathJax did not typeset every formula: {math}"
    )
    assert (
        page.locator("a.left-prev").count() == 1
        and page.locator("a.right-next").count() == 1
    )
    owner_repo = urllib.parse.urlsplit(CONFIG["repository"]["url"]).path.strip("/")
    colab = (
        f"{CONFIG['launch_buttons']['colab_url']}/github/{owner_repo}/blob/"
        f"{CONFIG['repository']['branch']}/{CHAPTER.removesuffix('.html')}.ipynb"
    )
    assert page.locator(f'a[href="{colab}"]').count() == 1, (
        f"no Colab launch link {colab}"
    )
    assert_links_resolve(internal_links(page, server))
    screenshot(page, "chapter_top")
    page.locator("span.math").first.scroll_into_view_if_needed()
    screenshot(page, "chapter_math")
    page.locator("article img").first.scroll_into_view_if_needed()
    screenshot(page, "chapter_figure")
    assert v.outside == [], (
        f"{CHAPTER} asked for outside resources besides MathJax: {v.outside}"
    )
    assert not v.errors, f"console errors: {v.errors}"


def test_the_setup_page(visit, server):
    v = visit(SETUP)
    page = v.page
    assert page.locator("article h1").count() == 1
    assert page.locator("article h2", has_text="Colab, step by step").count() == 1
    images = wait_for_images(page)
    assert images and all(i["width"] > 0 for i in images), (
        f"{SETUP}: figures that did not load: {images}"
    )
    assert page.locator("article table").count() >= 1, f"{SETUP} lost its table of GPUs"
    assert (
        page.locator("a.left-prev").count() == 1
        and page.locator("a.right-next").count() == 1
    )
    assert_links_resolve(internal_links(page, server))
    screenshot(page, "setup")
    assert v.outside == [], (
        f"{SETUP} asked for outside resources besides MathJax: {v.outside}"
    )
    assert not v.errors, f"console errors: {v.errors}"


def test_the_api_reference(visit, server):
    v = visit("book/api.html")
    page = v.page
    documented = set(
        page.eval_on_selector_all(
            "dl.py.function > dt, dl.py.class > dt", "ds => ds.map(d => d.id)"
        )
    )
    assert (
        "microgpt.config.GPTConfig" in documented
        and "microgpt.autograd.Value" in documented
    ), sorted(documented)
    assert_links_resolve(internal_links(page, server))
    screenshot(page, "api")
    assert not v.outside and not v.errors, (v.outside, v.errors)


def cli_output(argv: list[str]) -> list[str]:
    """What ``microgpt <argv>`` prints in this CPython, stdout and stderr in order."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        assert cli.main(argv) == 0, out.getvalue()
    return out.getvalue().splitlines()


def untimed(lines: list[str]) -> list[str]:
    """The lines without the timing summary, the one line two runs never share."""
    return [line for line in lines if not line.startswith("trained ")]


def train_in_page(
    page, steps: str, seed: str, engine: str, temperature: str, exact: bool = False
) -> None:
    """Fill the controls, press Train and wait until the run ends, one way or
    another.
    """
    page.fill("#mgpt-steps", steps)
    page.fill("#mgpt-seed", seed)
    page.select_option("#mgpt-engine", engine)
    page.fill("#mgpt-temperature", temperature)
    page.set_checked("#mgpt-exact", exact)
    page.click("#mgpt-train")
    page.wait_for_function(
        "!document.getElementById('mgpt-train').disabled", timeout=300_000
    )


def page_output(page) -> tuple[str, list[str]]:
    """The command the page ran and the lines it printed."""
    command, *lines = page.inner_text("#mgpt-log").splitlines()
    return command, lines


@pytest.fixture(scope="session")
def musl_library(tmp_path_factory) -> Path:
    """musl's exp, log, pow, sin and cos, built to preload in front of glibc's
    (tests/musl_libm.py).
    """
    if musl_libm.unsupported():
        pytest.skip(f"preloading musl's math {musl_libm.unsupported()}")
    missing(musl_libm.missing())
    return musl_libm.build(tmp_path_factory.mktemp("musl"))


def four_decimals(lines: list[str]) -> list[str]:
    """Step lines printed with --exact-loss as the command line prints them
    without it.
    """
    return [
        re.sub(r"loss ([\d.]+)$", lambda m: f"loss {float(m.group(1)):.4f}", line)
        if line.startswith("step ")
        else line
        for line in lines
    ]


@pytest.mark.parametrize("engine", ["scalar-fused", "scalar"])
def test_training_in_the_browser_prints_what_cpython_prints(
    visit, engine, bundled, request
):
    """Every digit: equal to CPython on musl's math library (the page's); four decimals:
    to this CPython.
    """
    # after the browser's needs, which skip first
    musl_library = request.getfixturevalue("musl_library")
    v = visit(TRAINING)
    page = v.page
    says = (
        f"Python on this page: Pyodide {browser_site.PYODIDE_VERSION}, "
        "bundled with this book."
    )
    assert says in page.inner_text("article"), (
        "the page does not say its Pyodide is bundled"
    )
    train_in_page(page, "20", "42", engine, "0.5", exact=True)
    assert page.inner_text("#mgpt-message") == "", page.inner_text("#mgpt-message")
    assert page.inner_text("#mgpt-status") == "Done: 20 steps.", page.inner_text(
        "#mgpt-log"
    )
    command, lines = page_output(page)
    argv = command.removeprefix("$ microgpt ").split()
    assert argv == [
        "train",
        "names",
        "--engine",
        engine,
        "--steps",
        "20",
        "--seed",
        "42",
        "--temperature",
        "0.5",
        "--log-every",
        "1",
        "--exact-loss",
    ]
    on_musl = subprocess.run(
        [sys.executable, "-m", "microgpt", *argv],
        env=musl_libm.environ(musl_library),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    lines, expected = untimed(lines), untimed(on_musl)
    assert lines == expected, (
        "the page's run differs from CPython's on musl's math:\n" + "\n".join(lines)
    )
    assert four_decimals(lines) == untimed(cli_output(argv[:-1])), (
        "the page's run differs from this CPython's"
    )
    assert sum(line.startswith("step ") for line in lines) == 20
    samples = page.eval_on_selector_all(
        "#mgpt-samples li", "lis => lis.map(li => li.textContent)"
    )
    assert samples == [
        line.split(": ", 1)[1] for line in expected if line.startswith("sample ")
    ]
    assert len(samples) == 20 and all(samples), samples
    assert page.inner_text("#mgpt-ms").endswith("ms (median of the last 20)")
    for name in ("pyodide/pyodide.asm.wasm", "microgpt/scalar.py", "names.txt"):
        assert f"browser/{name}" in v.local, (
            f"the worker did not load browser/{name} from the book: {v.local}"
        )
    page.locator("#mgpt-curve").scroll_into_view_if_needed()
    screenshot(page, f"training_{engine}")
    assert not v.outside, f"the training page asked for outside resources: {v.outside}"
    assert not v.errors, f"console errors: {v.errors}"


def test_the_training_page_refuses_bad_input_and_stops(visit, bundled):
    v = visit(TRAINING)
    page = v.page
    refused = {
        ("0", "42", "0.5"): "Steps must be a whole number from 1 to 100,000",
        ("100001", "42", "0.5"): "Steps must be a whole number from 1 to 100,000",
        ("ten", "42", "0.5"): "Steps must be a whole number from 1 to 100,000",
        ("20", "forty", "0.5"): "The seed must be a whole number",
        ("20", "4.2", "0.5"): "The seed must be a whole number",
        ("20", "42", "0"): "The temperature must be a number above 0",
        ("20", "42", "-1"): "The temperature must be a number above 0",
        ("20", "42", "hot"): "The temperature must be a number above 0",
    }
    for (steps, seed, temperature), message in refused.items():
        train_in_page(page, steps, seed, "scalar-fused", temperature)
        assert page.inner_text("#mgpt-message").startswith(message), (
            steps,
            seed,
            temperature,
        )
    assert not any("pyodide" in url for url in v.local), "bad input started Python"
    page.locator("#mgpt-form").evaluate("form => form.scrollIntoView()")
    screenshot(page, "training_refused")
    page.fill("#mgpt-steps", "1000")
    page.fill("#mgpt-temperature", "0.5")
    page.fill("#mgpt-seed", "42")
    page.click("#mgpt-train")
    assert page.inner_text("#mgpt-message") == ""
    page.wait_for_function(
        "document.getElementById('mgpt-log').textContent.includes('step    3 / 1000')",
        timeout=300_000,
    )
    page.click("#mgpt-stop")
    status = page.inner_text("#mgpt-status")
    assert re.fullmatch(r"Stopped after \d+ of 1,000 steps\.", status), status
    page.wait_for_timeout(1000)
    assert page.inner_text("#mgpt-status") == status, "training went on after Stop"
    assert page.is_enabled("#mgpt-train") and not page.is_enabled("#mgpt-stop")
    assert not v.outside and not v.errors, (v.outside, v.errors)


def test_a_failed_python_load_says_so_in_one_line(visit, bundled):
    v = visit(TRAINING)
    page = v.page
    page.route("**/pyodide.asm.wasm", lambda route: route.abort())
    train_in_page(page, "20", "42", "scalar-fused", "0.5")
    message = page.inner_text("#mgpt-message")
    assert message.startswith(
        "Python could not be loaded in this browser (Pyodide failed to start: "
    ), message
    assert message.endswith("reload the page to try again.") and "\n" not in message, (
        message
    )
    assert "pyodide.asm.wasm" in message, message
    page.locator("#mgpt-form").evaluate("form => form.scrollIntoView()")
    screenshot(page, "training_load_failed")
    assert not v.outside, v.outside


def test_everything_that_builds_the_book_fetches_the_pinned_pyodide():
    for path in (REPO / ".ci" / "run", REPO / "README.md"):
        assert f"pyodide@{browser_site.PYODIDE_VERSION}" in path.read_text(), (
            f"{path.name} fetches another Pyodide"
        )


# Without a browser: where the page's Pyodide comes from, bundled or not, on a one-page
# build.

# Pyodide's documented CDN
PINNED_CDN = f"https://cdn.jsdelivr.net/pyodide/v{browser_site.PYODIDE_VERSION}/full/"


def book_root(folder: Path, fetched: str | None) -> Path:
    """A book's root in ``folder``: the repository's package and book, and a stand-in
    for the npm package of Pyodide release ``fetched`` (None: Pyodide was not fetched).
    """
    for name in ("microgpt", "book"):
        (folder / name).symlink_to(REPO / name)
    if fetched is not None:
        package = folder / browser_site.PYODIDE_DIR
        package.mkdir(parents=True)
        (package / "package.json").write_text(
            json.dumps({"name": "pyodide", "version": fetched})
        )
        for name in browser_site.PYODIDE_FILES:
            (package / name).write_text(f"stands for {name}")
    return folder


def build_training_page(root: Path) -> tuple[Path, str]:
    """The training page alone, built by Sphinx with MyST and the book's extension,
    warnings as errors (the book's own flags, -W --keep-going); the built site and the
    page's HTML.
    """
    shutil.copy2(REPO / "book" / "04b_training_in_the_browser.md", root / "index.md")
    (root / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(REPO / 'book' / '_ext')!r})\n"
        "extensions = ['myst_parser', 'browser_site']\n"
        "myst_enable_extensions = ['substitution', 'dollarmath']\n"
        "exclude_patterns = ['_build', 'book', 'microgpt']\n"
    )
    out = root / "_build" / "html"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            str(root),
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, (
        f"the page does not build:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    # Sphinx's smart quotes
    return out, (out / "index.html").read_text().replace("\u2019", "'")


def test_without_pyodide_fetched_the_book_builds_and_its_page_loads_pyodide_from_the_cdn(  # noqa: E501  (renaming would change the test's ID)
    tmp_path, data_dir
):
    out, page = build_training_page(book_root(tmp_path, fetched=None))
    manifest = json.loads((out / "browser" / "manifest.json").read_text())
    assert manifest["pyodide_url"] == browser_site.PYODIDE_CDN == PINNED_CDN, manifest
    assert manifest["pyodide"] == browser_site.PYODIDE_VERSION
    assert not (out / "browser" / "pyodide").exists(), (
        "a build without Pyodide bundled a copy of it"
    )
    assert (
        "Python on this page: loaded from Pyodide's CDN, "
        f"version {browser_site.PYODIDE_VERSION}."
    ) in page
    assert PINNED_CDN in page and "bundled with this book" not in page
    worker = (out / "browser" / "worker.js").read_text()
    assert (
        "new URL(manifest.pyodide_url, here)" in worker and "./pyodide/" not in worker
    )
    assert (out / "browser" / "names.txt").is_file() and (
        out / "browser" / "microgpt" / "cli.py"
    ).is_file()


def test_with_pyodide_fetched_the_book_bundles_it(tmp_path, data_dir):
    out, page = build_training_page(
        book_root(tmp_path, fetched=browser_site.PYODIDE_VERSION)
    )
    manifest = json.loads((out / "browser" / "manifest.json").read_text())
    assert manifest["pyodide_url"] == "pyodide/", manifest
    for name in browser_site.PYODIDE_FILES:
        assert (out / "browser" / "pyodide" / name).read_text() == f"stands for {name}"
    assert (
        f"Python on this page: Pyodide {browser_site.PYODIDE_VERSION}, "
        "bundled with this book."
    ) in page
    assert "cdn.jsdelivr.net/pyodide" not in page


def test_a_fetched_pyodide_of_another_release_fails_the_build(tmp_path):
    from sphinx.errors import ExtensionError

    root = book_root(tmp_path, fetched="0.27.0")
    with pytest.raises(
        ExtensionError,
        match=f"holds Pyodide 0.27.0, the book pins {browser_site.PYODIDE_VERSION}",
    ):
        browser_site.bundled_pyodide(root)


def test_the_download_the_page_states_is_the_pinned_releases():
    package = REPO / browser_site.PYODIDE_DIR
    if not (package / "package.json").is_file():
        missing(
            f"needs Pyodide {browser_site.PYODIDE_VERSION} fetched to measure: "
            f"{browser_site.FETCH}"
        )
    assert (
        sum((package / name).stat().st_size for name in browser_site.PYODIDE_FILES)
        == browser_site.PYODIDE_BYTES
    )
    lock = json.loads((package / "pyodide-lock.json").read_text())
    assert lock["info"]["python"] == browser_site.PYODIDE_PYTHON, (
        "the page names another Python"
    )


def test_without_pyodide_bundled_the_page_trains_on_pyodide_from_the_cdn(
    browser, tmp_path, data_dir
):
    """The one-page build without Pyodide, in Chromium: the worker loads the pinned
    release from Pyodide's CDN, answered here, offline, from the fetched npm package
    (the same files).
    """
    package = REPO / browser_site.PYODIDE_DIR
    if not (package / "package.json").is_file():
        missing(
            f"needs Pyodide {browser_site.PYODIDE_VERSION} fetched "
            f"to stand for its CDN: {browser_site.FETCH}"
        )
    out, _ = build_training_page(book_root(tmp_path, fetched=None))
    with serving(out) as site:
        v = Visit(browser, site, "index.html", cdns={PINNED_CDN: package})
        try:
            page = v.page
            says = (
                "Python on this page: loaded from Pyodide's CDN, "
                f"version {browser_site.PYODIDE_VERSION}."
            )
            assert says in page.inner_text("body").replace("\u2019", "'")
            train_in_page(page, "3", "42", "scalar-fused", "0.5")
            assert page.inner_text("#mgpt-status") == "Done: 3 steps.", page.inner_text(
                "#mgpt-log"
            )
        finally:
            v.close()
    for name in ("pyodide.mjs", "pyodide.asm.wasm", "python_stdlib.zip"):
        assert PINNED_CDN + name in v.from_cdn, (
            f"the worker did not load {name} from the CDN: {v.from_cdn}"
        )
    assert not any("/pyodide/" in url for url in v.local), v.local
    assert not v.outside and not v.errors, (v.outside, v.errors)
