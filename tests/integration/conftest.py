"""Fixtures of the integration tests: a real PostgreSQL, in databases of their own (never skipped)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.postgres import NoPostgres, databases


@pytest.fixture(scope="module")
def postgres_databases() -> Iterator[Callable[[], str]]:
    """Makes fresh databases with random names on the PostgreSQL at BOXCUT_TEST_POSTGRES_URL, each returned as
    its `postgresql://` URL, and drops every one of them after the test module.

    A test that needs PostgreSQL fails (never skips) when none answers there: run scripts/ensure-postgres.
    """
    with databases() as supply:

        def make() -> str:
            try:
                return next(supply)
            except NoPostgres as missing:
                pytest.fail(str(missing))

        yield make


@pytest.fixture(scope="module")
def postgres_url(postgres_databases: Callable[[], str]) -> str:
    """A fresh PostgreSQL database of this test module's own (dropped after it), as a `postgresql://` URL."""
    return postgres_databases()


# --- Browser tests: a real OpenID Connect provider, Debian's Chromium through Playwright (tests/browser.py) ---------

from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

from tests.browser import MissingTool, Provider, launch_chromium, save_screenshots, start_oidc_provider  # noqa: E402

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture(scope="module")
def oidc_provider() -> Iterator[Callable[..., Provider]]:
    """A factory: `oidc_provider(redirect_uri, **options)` starts tests/oidc/provider.mjs (panva's oidc-provider)
    with one confidential client redirecting to `redirect_uri`, and returns its Provider (issuer, client_id,
    client_secret, process); every provider started is stopped after the test module. Fails (never skips) without
    Node.js or tests/oidc/node_modules: run scripts/ensure-node-deps."""
    started: list[Provider] = []

    def start(redirect_uri: str | Sequence[str], **options: Any) -> Provider:
        try:
            provider = start_oidc_provider(redirect_uri, **options)
        except MissingTool as missing:
            pytest.fail(str(missing))
        started.append(provider)
        return provider

    yield start
    for provider in started:
        provider.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium launched by Playwright from its path (never a downloaded browser). Fails (never skips)
    without it: run scripts/ensure-chromium."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("no Playwright for Python: pip install -e '.[dev]' (make test does)")
    with sync_playwright() as playwright:
        try:
            launched = launch_chromium(playwright)
        except MissingTool as missing:
            pytest.fail(str(missing))
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Page]:
    """A page in a fresh browser context (no cookies from other tests). At the end of the test, pass or fail, a
    full-page screenshot goes to `tmp_path/<test name>.png` and `build/screenshots/<test name>.png`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    try:
        yield opened
    finally:
        try:
            if not opened.is_closed():
                save_screenshots(opened, request.node.name, tmp_path)
        finally:
            context.close()
