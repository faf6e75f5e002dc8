"""The explorer in a real browser (Playwright driving Chromium) against ``galaxysim
serve`` run as a command: open the grid, click a galaxy, see its neighbours, click a
neighbour, switch method, download the CSV, upload an image; no console errors, no
failed requests, every image rendered, readable at 1280x800, no injected script run."""

import csv
import re
import subprocess
import sys
import time

import pytest
from PIL import Image

from tests import _playwright
from tests._playwright import (
    VIEWPORT,
    assert_images_rendered,
    assert_readable,
    open_page,
    save_shot,
)
from tests.serve.conftest import FORMULA_LABEL, LABELS, SCRIPT_LABEL, SIZE

browser = _playwright.browser  # the shared fixture


@pytest.fixture(scope="module")
def server(folder):
    """``galaxysim serve`` on the folder catalogue at a free port; its address."""
    cmd = [sys.executable, "-m", "galaxysim.cli", "serve", "--catalog", str(folder)]
    cmd += ["--image-size", str(SIZE), "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, address = time.monotonic() + 60, None
        while address is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                pytest.fail(f"galaxysim serve exited {proc.returncode}: {proc.stderr.read()}")
            m = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
            address = m[1] if m else None
        assert address, "galaxysim serve printed no address"
        yield address
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        err = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert "serve: mse ready" in err and "query matched to the catalogue" in err, err
    assert "Traceback" not in err, err


def check_page(page, tmp_path, name):
    images = assert_images_rendered(page)
    assert_readable(page)
    shot = save_shot(page, tmp_path / f"{name}.png", f"serve_{name}")
    with Image.open(shot) as im:
        assert im.size == (VIEWPORT["width"], VIEWPORT["height"])
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50  # not blank
    return images


def read_download(download):
    with open(download.path(), encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_explore_by_clicking(browser, server, tmp_path):
    page = open_page(browser)
    page.goto(server)
    grid = check_page(page, tmp_path, "grid")
    assert len(grid) == 40
    labels = page.locator(".grid .label").all_text_contents()
    assert SCRIPT_LABEL in labels  # shown as text, never run (no dialog below)

    page.locator(".galaxy a").nth(4).click()  # galaxy 4
    page.wait_for_url(re.compile(r"/galaxy/4$"))
    assert page.locator("h1").text_content() == "Galaxy 4"
    assert page.locator("section.method").count() == 2
    assert page.locator("section.method[data-method=mse] li").count() == 10
    check_page(page, tmp_path, "galaxy")

    first = page.locator("section.method[data-method=mse] li a").first
    j = re.search(r"/galaxy/(\d+)", first.get_attribute("href"))[1]
    first.click()  # the neighbour becomes the query
    page.wait_for_url(re.compile(rf"/galaxy/{j}\?"))
    assert page.locator("h1").text_content() == f"Galaxy {j}"

    page.locator("input[name=method][value=mse]").uncheck()  # switch method
    page.locator("input[name=k]").fill("5")
    page.locator("form.controls button[type=submit]").click()
    page.wait_for_url(re.compile(r"method=maxabs&k=5"))
    assert page.locator("section.method").count() == 1
    assert page.locator("section.method[data-method=maxabs] li").count() == 5
    check_page(page, tmp_path, "galaxy_maxabs")

    with page.expect_download() as info:
        page.locator("a.csv").click()
    rows = read_download(info.value)
    assert len(rows) == 5 and {r["method"] for r in rows} == {"maxabs"}
    assert {r["label"] for r in rows} <= {"Spiral", SCRIPT_LABEL, "'" + FORMULA_LABEL}

    page.goto(server + "query?q=milkyway")
    assert "Milky Way model" in page.locator("h1").text_content()
    assert page.locator("figure").count() == 2  # before and after matching
    check_page(page, tmp_path, "milkyway")
    assert page.problems == [], page.problems
    page.context.close()


def test_upload_an_image(browser, server, tmp_path, images):
    X, _ = images
    query = tmp_path / "my galaxy.png"
    Image.fromarray(X[10]).resize((96, 96)).save(query)
    page = open_page(browser)
    page.goto(server + "upload")
    page.locator("#file").set_input_files(str(query))
    page.locator("section.method").nth(1).wait_for()
    assert page.locator("#query h1").text_content().startswith("upload my galaxy.png")
    assert page.locator("section.method li").count() == 20
    assert set(page.locator("#results .label").all_text_contents()) <= set(LABELS)
    check_page(page, tmp_path, "upload")

    page.locator("input[name=per_class]").check()
    page.locator("input[name=k]").fill("1")
    page.locator("#update").click()
    page.wait_for_function("document.querySelectorAll('section.method li').length == 6")
    with page.expect_download() as info:
        page.locator("#csv").click()
    rows = read_download(info.value)
    assert len(rows) == 6 and [r["rank"] for r in rows] == ["1"] * 6

    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not an image at all")
    page.locator("#file").set_input_files(str(bad))
    page.locator(".error").wait_for()
    assert "cannot read image upload notes.png" in page.locator(".error").text_content()
    # the refused upload is the only problem: its 422 answers
    assert page.problems and all("422" in p or "status of 422" in p for p in page.problems)
    page.goto(server)
    assert page.locator(".galaxy").count() == 40  # still serving
    page.context.close()
