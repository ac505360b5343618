"""Debian's Chromium, headless, driven by Playwright (pinned in setup.py; no browser download):
what a person sees of the report and of TensorBoard. Every request the page makes is recorded
so that a test can assert that nothing left the machine."""
import contextlib
import os
import shutil
import tempfile

from tests.conftest import require

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def require_chromium() -> None:
    reason = ""
    if not os.path.exists(CHROMIUM):
        reason = f"{CHROMIUM} missing (.ci/system-deps.sh installs Debian's chromium)"
    else:
        import importlib.util

        if importlib.util.find_spec("playwright") is None:
            reason = "playwright missing (pip install -e '.[dev]')"
    require(reason)


@contextlib.contextmanager
def page(width: int = 1300, height: int = 900):
    """A fresh browser (its own profile folder) and page; yields (page, console, requests)."""
    from playwright.sync_api import sync_playwright

    require_chromium()
    profile = tempfile.mkdtemp(prefix="mma-dfer-chromium-")
    console, requests = [], []
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=ARGS,
                                                           headless=True, viewport={"width": width, "height": height})
            try:
                pg = context.new_page()
                pg.on("console", lambda m: console.append((m.type, m.text)))
                pg.on("pageerror", lambda err: console.append(("pageerror", str(err))))
                pg.on("request", lambda r: requests.append(r.url))
                yield pg, console, requests
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
