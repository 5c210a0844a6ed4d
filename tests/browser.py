"""A real browser for the status page's tests: Debian's Chromium driven by Playwright.

PyPI's `playwright` brings only its driver; `playwright install` would download browsers, which
this machine (and a production VM) cannot. So the browser is the distribution's Chromium at
/usr/bin/chromium (`.ci/run` installs Debian's `chromium` package when it is missing), started
with flags that keep it from dialling out: without them it keeps trying Google's hosts and a
closed network refuses each attempt.

In CI (CI=true, set by .ci/run) a missing Chromium or driver is a failure; elsewhere the tests
that need it skip with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Playwright

CHROMIUM = Path(os.environ.get("TFOPS_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",  # tests run as root in a container; Chromium's sandbox needs user namespaces
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT = {"width": 1280, "height": 800}
# How long Playwright's assertions wait for a page to get there: generous, because the tests must
# pass while other CPU-heavy work shares the machine (they wait for a condition, never a time).
EXPECT_TIMEOUT_MS = 30_000


def unavailable() -> str | None:
    """Why no browser test can run here, or None when Chromium and the driver are present."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (Debian's `chromium` package; .ci/run installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"Playwright for Python is not installed (the `test` extra): {exc}"
    return None


def require_browser() -> None:
    """Skip outside CI, fail in CI: CI never skips the browser tests."""
    reason = unavailable()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tests: {reason}")
    pytest.skip(reason)


@contextmanager
def chromium() -> Iterator[Browser]:
    """One headless Chromium for as long as the block lasts."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            yield browser
        finally:
            browser.close()


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))


class RequestLog:
    """Every URL a page asks for (documents, scripts, styles, images, event streams, fetches), and
    every error it reports (console errors, such as a CSP violation, and uncaught exceptions)."""

    def __init__(self, page: Page) -> None:
        self.urls: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda request: self.urls.append(request.url))
        page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def origins(self) -> set[str]:
        return {f"{part.scheme}://{part.netloc}" for part in map(urlsplit, self.urls)}


def log_in(page: Page, base: str, token: str, *, next_path: str = "/") -> None:
    """Open a page as a person would: the login form, the token typed in, sent."""
    page.goto(f"{base}/login?next={next_path}")
    page.fill("input[name=token]", token)
    with page.expect_navigation():
        page.press("input[name=token]", "Enter")
