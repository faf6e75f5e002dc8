"""Playwright driving Debian's Chromium, shared by the browser tests.

No browser can be downloaded here (``playwright install`` is never run): Playwright
launches the installed ``chromium`` by ``executable_path`` (``.ci/run`` installs it;
``GALAXYSIM_CHROMIUM`` names another). Tests using :func:`browser` skip, saying why,
only where no Chromium binary or no Playwright is installed.

A page from :func:`open_page` records what a user would call broken: console errors,
uncaught exceptions, failed requests, HTTP errors and JavaScript dialogs (an
``alert`` would mean injected script ran).
"""

import os
import shutil

import pytest

VIEWPORT = {"width": 1280, "height": 800}
"""A laptop screen: every page must be readable at this size."""

CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")

IMAGES_JS = """
() => Promise.all(Array.from(document.images).map(img => img.decode().catch(() => null)))
  .then(() => Array.from(document.images).map(img => ({
      src: img.getAttribute('src'), complete: img.complete,
      width: img.naturalWidth, height: img.naturalHeight,
      shown: img.getBoundingClientRect().width})))
"""

LAYOUT_JS = """() => ({
  scrollWidth: document.documentElement.scrollWidth,
  clientWidth: document.documentElement.clientWidth,
  fontSize: parseFloat(getComputedStyle(document.body).fontSize),
  sections: document.querySelectorAll('section').length,
  brokenLinks: Array.from(document.querySelectorAll('a[href^="#"]'))
      .filter(a => !document.getElementById(a.getAttribute('href').slice(1))).length,
})"""


def find_chromium():
    explicit = os.environ.get("GALAXYSIM_CHROMIUM")
    if explicit:
        return explicit
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = find_chromium()


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium of Playwright's sync API (one per test module)."""
    if CHROMIUM is None:
        pytest.skip(
            "no Chromium binary found (install Debian's `chromium`, as .ci/run does, or "
            "set GALAXYSIM_CHROMIUM)"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def open_page(browser, **context):
    """A new page at :data:`VIEWPORT` whose ``page.problems`` lists what went wrong."""
    ctx = browser.new_context(viewport=VIEWPORT, accept_downloads=True, **context)
    page = ctx.new_page()
    problems = []
    page.on(
        "console",
        lambda m: (
            problems.append(f"console.{m.type}: {m.text}")
            if m.type in ("error", "assert")
            else None
        ),
    )
    page.on("pageerror", lambda exc: problems.append(f"exception: {exc}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
    page.on(
        "response",
        lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None,
    )

    def dialog(d):
        problems.append(f"dialog: {d.message}")
        d.dismiss()

    page.on("dialog", dialog)
    page.problems = problems
    return page


def rendered_images(page):
    """Every ``<img>`` of the page once decoded: its src, size and laid-out width."""
    return page.evaluate(IMAGES_JS)


def assert_images_rendered(page):
    images = rendered_images(page)
    assert images, "no images on the page"
    for img in images:
        assert img["complete"], img
        assert img["width"] > 0 and img["height"] > 0, f"not rendered: {img}"
        assert img["shown"] > 0, f"laid out with no width: {img}"
    return images


def assert_readable(page):
    """No horizontal scrolling, body text not tiny, in-page links that exist."""
    layout = page.evaluate(LAYOUT_JS)
    assert layout["scrollWidth"] <= layout["clientWidth"], layout
    assert layout["fontSize"] >= 14, layout
    assert layout["brokenLinks"] == 0, layout
    return layout


def save_shot(page, path, name):
    """A screenshot at ``path``, copied to ``$GALAXYSIM_SHOT_DIR`` when set (to look at
    the pages by eye, and for the docs)."""
    page.screenshot(path=str(path))
    out = os.environ.get("GALAXYSIM_SHOT_DIR")
    if out:
        page.screenshot(path=os.path.join(out, f"{name}.png"))
    return path
