"""The HTML reports of `search --out` and `evaluate --out` in a real browser.

Headless Chromium is driven over the DevTools protocol (one websocket, websocket-client):
the page must load without console errors, failed requests or script exceptions, every
<img> must have rendered (naturalWidth > 0), and a laptop-sized screenshot is taken.
Skips only where no Chromium binary is installed (`.ci/run` installs Debian's `chromium`).
"""

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from galaxysim.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


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
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium binary found (install Debian's `chromium`, as .ci/run does, "
    "or set GALAXYSIM_CHROMIUM)",
)


class Browser:
    """Just enough of the Chrome DevTools protocol: one page, its console and images."""

    def __init__(self, tmp_path, width=1366, height=900):
        import websocket  # websocket-client, from the dev extra

        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                f"--window-size={width},{height}",
                f"--user-data-dir={tmp_path / 'chromium-profile'}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            url = self._devtools_url(deadline=time.monotonic() + 60)
            self.ws = websocket.create_connection(url, timeout=60, suppress_origin=True)
            self.ids = itertools.count(1)
            self.events = []
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
                "sessionId"
            ]
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.call(f"{domain}.enable", session=True)
            self.call(
                "Emulation.setDeviceMetricsOverride",
                session=True,
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
        except BaseException:
            self.close()
            raise

    def _devtools_url(self, deadline):
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                if self.proc.poll() is not None:
                    break
                continue
            lines.append(line)
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            if m:
                return m[1]
        raise RuntimeError("Chromium did not start its DevTools server:\n" + "".join(lines))

    def call(self, method, session=False, **params):
        msg_id = next(self.ids)
        msg = {"id": msg_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, event, timeout=60):
        deadline = time.monotonic() + timeout
        seen = len(self.events)
        while time.monotonic() < deadline:
            for ev in self.events[seen:]:
                if ev.get("method") == event:
                    return ev
            seen = len(self.events)
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(f"no {event} within {timeout} s")

    def open(self, url):
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression):
        result = self.call(
            "Runtime.evaluate",
            session=True,
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"]["value"]

    def errors(self):
        """Console errors, uncaught exceptions and failed requests since the last open."""
        found = []
        for ev in self.events:
            method, params = ev.get("method"), ev.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                entry = params["entry"]
                found.append(f"log: {entry.get('text')} {entry.get('url', '')}")
            elif method == "Network.loadingFailed":
                found.append(f"request failed: {params.get('errorText')}")
        return found

    def screenshot(self, path, full_page=False):
        params = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            height = self.evaluate("document.documentElement.scrollHeight")
            width = self.evaluate("document.documentElement.scrollWidth")
            params["clip"] = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
        data = self.call("Page.captureScreenshot", session=True, **params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self):
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stderr:
            self.proc.stderr.close()


IMAGES_JS = """
Promise.all(Array.from(document.images).map(img => img.decode().catch(() => null)))
  .then(() => Array.from(document.images).map(img => ({
      src: img.getAttribute('src'), complete: img.complete,
      width: img.naturalWidth, height: img.naturalHeight,
      shown: img.getBoundingClientRect().width})))
"""

LAYOUT_JS = """({
  scrollWidth: document.documentElement.scrollWidth,
  clientWidth: document.documentElement.clientWidth,
  fontSize: parseFloat(getComputedStyle(document.body).fontSize),
  sections: document.querySelectorAll('section').length,
  brokenLinks: Array.from(document.querySelectorAll('a[href^="#"]'))
      .filter(a => !document.getElementById(a.getAttribute('href').slice(1))).length,
})"""


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


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(tmp_path_factory.mktemp("browser"))
    yield b
    b.close()


@pytest.mark.parametrize("kind", ["search", "evaluate"])
def test_report_renders_in_chromium(reports, browser, kind, tmp_path):
    index = reports[kind] / "index.html"
    browser.open(index.as_uri())
    images = browser.evaluate(IMAGES_JS)
    errors = browser.errors()
    assert errors == [], f"{kind} report: {errors}"
    expected = sorted(p.name for p in reports[kind].glob("*.png"))
    assert sorted(img["src"] for img in images) == expected
    for img in images:
        assert img["complete"], img
        assert img["width"] > 0 and img["height"] > 0, f"not rendered: {img}"
        assert img["shown"] > 0, f"laid out with no width: {img}"
    layout = browser.evaluate(LAYOUT_JS)
    # readable on a laptop: no horizontal scrolling, body text not tiny, nav anchors exist
    assert layout["scrollWidth"] <= layout["clientWidth"], layout
    assert layout["fontSize"] >= 14, layout
    assert layout["brokenLinks"] == 0, layout
    # a section per query (each with a montage per method), or per figure
    assert layout["sections"] == 2 if kind == "search" else layout["sections"] >= len(expected)
    shot = browser.screenshot(tmp_path / f"{kind}.png")
    data = shot.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1366, 900)
        # not a blank page: many distinct colours in the first screen
        assert len(img.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50
    if os.environ.get("GALAXYSIM_SHOT_DIR"):  # to look at the report by eye
        out = os.environ["GALAXYSIM_SHOT_DIR"]
        browser.screenshot(Path(out) / f"report_{kind}.png")
        browser.screenshot(Path(out) / f"report_{kind}_full.png", full_page=True)
