"""Debian's Chromium under Playwright, for the tests that drive a real page (the Gradio chat,
the research service's page). Playwright cannot download its own browsers here: `.ci/run`
installs Debian's `chromium`; without it (or without playwright) a developer's run skips these
tests, and CI fails them."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
from typing import Any, Iterator

import pytest

CHROMIUM = "/usr/bin/chromium"
# as root, without a sandbox; no background traffic (this machine's network is closed)
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def executable() -> str:
    """Where Chromium is; skip (fail in CI) when it is not installed."""
    found = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium); CI runs these")
    return found


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (a Playwright Browser), closed at the end of the block."""
    path = executable()
    if os.environ.get("CI"):
        sync_api: Any = importlib.import_module("playwright.sync_api")
    else:
        sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()
