"""A server process freezes what it holds at start and collects its young objects less
often; an app built any other way (tests, an embedding program) leaves the collector be."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from fastapi import FastAPI

from imagegate.app import create_app, served_by_uvicorn
from imagegate.collector import YOUNG_THRESHOLD
from imagegate.config import Settings


@pytest.fixture
def collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


async def _start_and_stop(app: FastAPI) -> tuple[int, int]:
    async with app.router.lifespan_context(app):
        return gc.get_freeze_count(), gc.get_threshold()[0]


async def test_a_served_app_freezes_its_startup_objects(
    settings: Settings, collector: None
) -> None:
    frozen, young = await _start_and_stop(served_by_uvicorn(create_app(settings)))
    assert frozen > 10_000  # modules, classes, the catalog, the routes
    assert young == YOUNG_THRESHOLD


async def test_an_app_built_otherwise_leaves_the_collector_alone(
    settings: Settings, collector: None
) -> None:
    before = gc.get_threshold()
    frozen, _ = await _start_and_stop(create_app(settings))
    assert frozen == 0
    assert gc.get_threshold() == before
