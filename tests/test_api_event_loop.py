"""Every endpoint and dependency runs on the event loop: FastAPI runs a plain ``def``
in a worker thread, a thread hop per request (and a slot of a pool of 40)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi.dependencies.models import Dependant

from imagegate.app import create_app
from imagegate.config import Settings
from tests.helpers import api_routes


def _calls(dependant: Dependant) -> Iterator[Any]:
    if dependant.call is not None:
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def _runs_on_the_loop(call: Any) -> bool:
    target = call if inspect.isfunction(call) or inspect.ismethod(call) else call.__call__
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


def test_no_endpoint_or_dependency_runs_in_a_thread(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    routes = api_routes(app.routes)
    assert len(routes) > 30
    threaded = sorted(
        {
            f"{route.path}: {getattr(call, '__qualname__', call)}"
            for route in routes
            for call in _calls(route.dependant)
            if not _runs_on_the_loop(call)
        }
    )
    assert not threaded, threaded
