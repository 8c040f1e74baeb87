"""The console in a real browser: the gateway under uvicorn on a free port, and Debian's
Chromium driven by Playwright (its own browser download is not used)."""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from argon2 import PasswordHasher, profiles
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from imagegate.app import create_app
from imagegate.config import Settings
from imagegate.gateway import Gateway
from imagegate.services import accounts
from tests.billing_support import write_paid_catalog
from tests.conftest import POSTGRES_URL, _admin, on_postgres

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).parent.parent / "docs" / "console"
# Generous waits: CI machines are shared and a page can take a while under load.
expect.set_options(timeout=15_000)


@dataclass
class Console:
    url: str
    admin_key: str
    database_url: str
    gateway: Gateway

    def sql(self, statement: str, **params: Any) -> list[Any]:
        """Run one statement on the gateway's database (for setting up a state)."""

        async def run() -> list[Any]:
            engine = create_async_engine(self.database_url)
            try:
                async with engine.begin() as conn:
                    result = await conn.execute(text(statement), params)
                    return list(result.all()) if result.returns_rows else []
            finally:
                await engine.dispose()

        return in_thread(run())


def in_thread(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end on a thread of its own: Playwright's sync API keeps an
    event loop running in the test's thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def console(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Console]:
    """The gateway of one test module; with ``PAID_CATALOG = True`` in the module, the
    priced mock models of tests/billing_support.py are in the catalog too (turned off)."""
    tmp = tmp_path_factory.mktemp("console")
    paid = getattr(request.module, "PAID_CATALOG", False)
    # Argon2's cheapest parameters: the tests check the sign-in rules, not the hash's cost
    # (about a second per hash with the default parameters on a busy CI machine).
    patch = pytest.MonkeyPatch()
    cheap = PasswordHasher.from_parameters(profiles.CHEAPEST)
    patch.setattr(accounts, "_hasher", cheap)
    patch.setattr(accounts, "_DUMMY_HASH", cheap.hash("not a password"))
    if on_postgres():
        name = f"imagegate_console_{secrets.token_hex(6)}"
        in_thread(_admin(f'CREATE DATABASE "{name}"'))
        url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    else:
        name, url = "", f"sqlite+aiosqlite:///{tmp / 'imagegate.db'}"
    settings = Settings(
        environment="test",
        data_dir=tmp / "data",
        database_url=url,
        catalog_dirs=[write_paid_catalog(tmp / "catalog")] if paid else [],
    )
    gateway = Gateway(settings)
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings, gateway=gateway),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws="none",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    assert gateway.first_admin_key is not None
    for slug in ("paid-image", "premium-image") if paid else ():
        off = httpx.patch(
            f"{base}/v1/admin/image-models/{slug}",
            json={"enabled": False},
            headers={"Authorization": f"Bearer {gateway.first_admin_key}"},
        )
        assert off.status_code == 200, off.text
    try:
        yield Console(base, gateway.first_admin_key, url, gateway)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        patch.undo()
        if name:
            in_thread(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def new_context(browser: Browser, **options: Any) -> BrowserContext:
    options.setdefault("viewport", {"width": 1280, "height": 860})
    context = browser.new_context(**options)
    context.set_default_timeout(20_000)
    return context


def sign_in_with_key(page: Page, console: Console) -> None:
    page.goto(console.url + "/sign-in")
    page.get_by_text("Sign in with an API key").click()
    page.get_by_label("API key").fill(console.admin_key)
    page.get_by_role("button", name="Sign in with the key").click()
    page.wait_for_url("**/generate")


def sign_in(page: Page, console: Console, login: str, password: str) -> None:
    page.goto(console.url + "/sign-in")
    page.get_by_label("Login").fill(login)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def screenshot(page: Page, name: str, *, full_page: bool = False) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def csrf(page: Page) -> str:
    value = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert value
    return value
