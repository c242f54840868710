"""`pci-explorer serve`: the same app in a web page, opened by headless Chromium.

Chromium loads the page; the page's websocket makes textual-serve start the app, which
(through Textual's own TEXTUAL_SCREENSHOT hook) saves what it shows; the tree must be there.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytest.importorskip("textual_serve")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_served_app_shows_the_tree_in_chromium(tmp_path, unpacked):
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TEXTUAL_SCREENSHOT": "3",
        "TEXTUAL_SCREENSHOT_LOCATION": str(tmp_path),
        "TEXTUAL_SCREENSHOT_FILENAME": "served.svg",
    }
    source = str(unpacked("switch"))
    server = subprocess.Popen(
        [sys.executable, "-m", "explorer", "serve", source, "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    browser = None
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.time() + 30
        while True:
            try:
                page = urllib.request.urlopen(url, timeout=2).read().decode()
                break
            except OSError:
                assert time.time() < deadline, "server did not come up"
                assert server.poll() is None, server.stderr.read().decode()
                time.sleep(0.3)
        assert "textual" in page.lower()
        browser = subprocess.Popen(
            [
                CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,900", "--remote-debugging-port=0", url,
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        shot = tmp_path / "served.svg"
        deadline = time.time() + 60
        while not shot.exists() and time.time() < deadline:
            time.sleep(0.5)
        assert shot.exists(), "the app never started behind the page"
        time.sleep(0.5)
        svg = shot.read_text()
        for text in ("pci0000:00", "0000:00:02.0", "0000:00:1f.2"):
            assert text.replace(" ", "&#160;") in svg or text in svg, text
    finally:
        for proc in (browser, server):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, 15)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)


def test_served_page_loads_nothing_from_the_internet():
    """Offline, the page must still be whole: every stylesheet, script and font comes from the server."""
    import re

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "explorer", "serve", "builtin:example-small", "--port", str(port)],
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.time() + 30
        while True:
            try:
                page = urllib.request.urlopen(url, timeout=2).read().decode()
                break
            except OSError:
                assert time.time() < deadline, "server did not come up"
                assert server.poll() is None, server.stderr.read().decode()
                time.sleep(0.3)
        refs = re.findall(r"""(?:href|src)\s*=\s*["']([^"']+)["']""", page) + re.findall(r"""url\(["']?([^"')]+)""", page)
        assert refs
        remote = [r for r in refs if re.match(r"(https?:)?//", r) and not r.startswith(f"http://127.0.0.1:{port}/")
                  and "w3.org" not in r]
        assert not remote, remote
        fonts = [r for r in refs if r.endswith(".ttf")]
        assert fonts, "the page names a local font"
        for ref in refs:
            if ref.endswith((".ttf", ".css", ".js", ".png")):
                full = ref if ref.startswith("http") else f"http://127.0.0.1:{port}{ref}"
                assert urllib.request.urlopen(full, timeout=5).status == 200, full
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 15)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, 9)
