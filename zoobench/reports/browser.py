"""Rendering an HTML file in headless Chromium, to check a report renders and to screenshot it."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from zoobench.errors import ZoobenchError

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def screenshot(page: Path, image: Path, width: int = 1280, height: int = 4000) -> Path:
    """Render `page` offline in headless Chromium and write a PNG of the top `height` pixels.

    Network access is cut (every host resolves nowhere), so a page that needs the network renders
    broken. Chromium's own console errors (a missing image, a script error) fail the call.
    """
    browser = find_browser()
    if browser is None:
        raise ZoobenchError("no Chromium found to render the report; install it (Debian: apt install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}",
             "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0",
             f"--window-size={width},{height}", f"--screenshot={Path(image).resolve()}",
             Path(page).resolve().as_uri()],
            capture_output=True, text=True, timeout=120)
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Failed to load resource" in line]
    if done.returncode != 0 or not Path(image).is_file():
        raise ZoobenchError(f"Chromium could not render {page}: {done.stderr.strip().splitlines()[-1:]}")
    if console:
        raise ZoobenchError(f"{page} rendered with errors: {console[0]}")
    return Path(image)
