"""Debian's Chromium, driven by Playwright, for the tests that look at built pages."""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(os.environ.get("GALLERY_SHOTS", "/nonexistent"))
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists() and shutil.which("chromium") is None,
                                    reason="Debian's chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")),
                                     args=["--no-sandbox", "--disable-gpu"])
        yield instance
        instance.close()


def shot(page, name: str) -> None:
    """Keep a picture of ``page`` in $GALLERY_SHOTS, when that folder exists."""
    if SHOTS.is_dir():
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
