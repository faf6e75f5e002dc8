"""The HTML reports of `search --out` and `evaluate --out` in a real browser.

Playwright drives the installed headless Chromium (the shared set-up of
:mod:`tests._playwright`): the page must load without console errors, failed requests
or script exceptions, every <img> must have rendered (naturalWidth > 0), and a
laptop-sized screenshot is taken. Skips only where no Chromium binary is installed
(`.ci/run` installs Debian's `chromium`).
"""

import os
from pathlib import Path

import pytest

from galaxysim.cli import main
from tests import _playwright
from tests._playwright import (
    LAYOUT_JS,
    open_page,
    rendered_images,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SIZE = {"width": 1366, "height": 900}

browser = _playwright.browser  # the shared fixture


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    search = root / "search"
    evaluate = root / "evaluate"
    # two queries, one a catalogue galaxy: one section each
    args = ["search", "--n-catalog", "150", "-q", "-k", "6", "--out", str(search)]
    assert main([*args, "--query", "milkyway", "--query", "index:3"]) == 0
    code = main(
        [
            "evaluate",
            "--n-catalog",
            "100",
            "--image-size",
            "32",
            "--folds",
            "2",
            "--k",
            "5",
            "--method",
            "mse,vae",
            "--epochs",
            "1",
            "-q",
            "--out",
            str(evaluate),
        ]
    )
    assert code == 0
    return {"search": search, "evaluate": evaluate}


@pytest.mark.parametrize("kind", ["search", "evaluate"])
def test_report_renders_in_chromium(reports, browser, kind, tmp_path):
    page = open_page(browser)
    page.set_viewport_size(SIZE)
    page.goto((reports[kind] / "index.html").as_uri())
    images = rendered_images(page)
    assert page.problems == [], f"{kind} report: {page.problems}"
    expected = sorted(p.name for p in reports[kind].glob("*.png"))
    assert sorted(img["src"] for img in images) == expected
    for img in images:
        assert img["complete"], img
        assert img["width"] > 0 and img["height"] > 0, f"not rendered: {img}"
        assert img["shown"] > 0, f"laid out with no width: {img}"
    layout = page.evaluate(LAYOUT_JS)
    # readable on a laptop: no horizontal scrolling, body text not tiny, nav anchors exist
    assert layout["scrollWidth"] <= layout["clientWidth"], layout
    assert layout["fontSize"] >= 14, layout
    assert layout["brokenLinks"] == 0, layout
    # a section per query (each with a montage per method), or per figure
    assert layout["sections"] == 2 if kind == "search" else layout["sections"] >= len(expected)
    shot = tmp_path / f"{kind}.png"
    page.screenshot(path=str(shot))
    data = shot.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (SIZE["width"], SIZE["height"])
        # not a blank page: many distinct colours in the first screen
        assert len(img.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50
    if os.environ.get("GALAXYSIM_SHOT_DIR"):  # to look at the report by eye
        out = Path(os.environ["GALAXYSIM_SHOT_DIR"])
        page.screenshot(path=str(out / f"report_{kind}.png"))
        page.screenshot(path=str(out / f"report_{kind}_full.png"), full_page=True)
    page.context.close()
