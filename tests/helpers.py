"""Small helpers the tests share."""

from __future__ import annotations

import base64
import copy
import io
from collections.abc import Sequence
from typing import Any

import httpx
from fastapi.routing import APIRoute
from PIL import Image
from starlette.routing import BaseRoute


def decode_image(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def assert_error(
    response: httpx.Response, status: int, code: str, param: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error
    assert error["message"]
    return error


async def enable_models(gateway: Any, *slugs: str) -> None:
    """Turn models on in the first workspace, as an admin would."""
    from sqlalchemy import select

    from imagegate.store.tables import Workspace, WorkspaceModel

    async with gateway.db.session() as session:
        workspace = (await session.execute(select(Workspace).limit(1))).scalar_one()
        for slug in slugs:
            row = (
                await session.execute(
                    select(WorkspaceModel).where(
                        WorkspaceModel.workspace_id == workspace.id, WorkspaceModel.model == slug
                    )
                )
            ).scalar_one_or_none()
            if row is None:  # the first start may have enabled it already
                session.add(WorkspaceModel(workspace_id=workspace.id, model=slug, enabled=True))
            else:
                row.enabled = True


def api_routes(routes: Sequence[BaseRoute], prefix: str = "") -> list[APIRoute]:
    """Every API route of an app, with its full path.

    FastAPI keeps an included router as one entry of ``app.routes`` that wraps the
    router (``original_router``), so the routes are looked for inside it.
    """
    found: list[APIRoute] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            found += api_routes(inner.routes, prefix + getattr(context, "prefix", ""))
        elif isinstance(route, APIRoute):
            if prefix or route.path != route.path_format:
                route = copy.copy(route)
                # the path as documented: /v1/jobs/{model}, not /v1/jobs/{model:model_slug}
                route.path = prefix + route.path_format
            found.append(route)
    return found
