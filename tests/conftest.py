"""Fixtures: a gateway per test on a fresh database (SQLite, or PostgreSQL when
``IMAGEGATE_DATABASE_URL`` points at one), and an HTTP client as a user would hold it."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from imagegate.app import create_app
from imagegate.config import Settings
from imagegate.gateway import Gateway

POSTGRES_URL = os.environ.get("IMAGEGATE_DATABASE_URL", "")


def on_postgres() -> bool:
    return POSTGRES_URL.startswith("postgresql")


async def _admin(sql: str) -> None:
    url = make_url(POSTGRES_URL)
    conn = await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database=url.database,
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
async def database_url(tmp_path: Path) -> AsyncIterator[str]:
    """A database of this test's own: a new PostgreSQL database, or a SQLite file."""
    if not on_postgres():
        yield f"sqlite+aiosqlite:///{tmp_path / 'imagegate.db'}"
        return
    name = f"imagegate_test_{secrets.token_hex(6)}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        environment="test",
        data_dir=tmp_path / "data",
        database_url=database_url,
        lease_seconds=5,
    )


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    gateway = Gateway(settings)
    app = create_app(settings, gateway=gateway)
    async with app.router.lifespan_context(app):
        yield gateway


@pytest.fixture
def admin_key(gateway: Gateway) -> str:
    assert gateway.first_admin_key is not None
    return gateway.first_admin_key


@pytest.fixture
async def client(gateway: Gateway, admin_key: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(gateway.settings, gateway=gateway)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=headers
    ) as c:
        yield c


@pytest.fixture
def anyio_backend() -> Iterator[str]:
    yield "asyncio"
