"""Browser tests: headless Chromium (through Playwright) against a real uvicorn process, a real
Celery worker and the gateway simulator. Screenshots of each state land in test-artifacts/.

Chromium: the system's (/usr/bin/chromium, or CHROMIUM_PATH), else Playwright's own build
(`python -m playwright install chromium`). No browser means these tests fail, loudly.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.support import PROJECT_DIR
from tests.workers import ApiServer, CeleryWorker

ARTIFACTS = PROJECT_DIR / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_path() -> str | None:
    candidate = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    return candidate or None


@pytest.fixture(autouse=True)
def _isolated(clean_state: None) -> None:
    """Each browser test leaves the database empty."""


@pytest.fixture(scope="module")
def live(migrated_database: str, run_dir: Path, simulator_url: str) -> Iterator[dict[str, Any]]:
    """API + worker processes wired to the simulator, for one test module."""
    api = ApiServer(run_dir, env={"AAMARPAY_BASE_URL": simulator_url})
    worker = CeleryWorker(run_dir)
    worker.start()
    api.start()
    try:
        worker.wait_ready()
        yield {"api": api, "worker": worker, "url": api.url}
    finally:
        api.stop()
        worker.stop()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        await launched.close()


@pytest.fixture
async def context(browser: Browser, live: dict[str, Any]) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(
        base_url=live["url"], accept_downloads=True, viewport={"width": 1280, "height": 900}
    )
    yield ctx
    await ctx.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    new_page = await context.new_page()
    new_page.set_default_timeout(20_000)
    return new_page


class Shots:
    def __init__(self, page: Page, prefix: str) -> None:
        self.page = page
        self.prefix = prefix
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    async def __call__(self, name: str) -> Path:
        path = ARTIFACTS / f"{self.prefix}-{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def shot(page: Page, request: pytest.FixtureRequest) -> Shots:
    return Shots(page, request.node.name.removeprefix("test_"))
