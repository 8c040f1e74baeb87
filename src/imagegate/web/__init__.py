"""The web console: server-rendered pages over the same services as the HTTP API.

``install(app)`` adds its routes at ``/`` and its static files (vendored, no CDN) at
``/static/console``. Pages are for people signed in with a console session; the image
generator's script calls the HTTP API with that session (see ``api/deps.py``).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from imagegate.web import admin_pages, auth_pages, generator_page, models_page
from imagegate.web.render import HERE, page
from imagegate.web.session import NotAllowed, SignInRequired, sign_in_url, signed_in


class _Static(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers.setdefault("Cache-Control", "public, max-age=3600")
        return response


async def _sign_in_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    to = sign_in_url(exc.next_path) + ("&ended=1" if exc.ended else "")
    response = RedirectResponse(to, status_code=303)
    if exc.ended:
        response.delete_cookie("imagegate_session", path="/")
    return response


async def _not_allowed(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NotAllowed)
    user = await signed_in(request)
    return page(
        request,
        "message.html",
        user,
        status_code=exc.status_code,
        title="Not allowed",
        message=exc.message,
    )


def install(app: FastAPI) -> None:
    """Serve the console from ``app``."""
    for module in (auth_pages, generator_page, models_page, admin_pages):
        app.include_router(module.router)
    app.mount("/static/console", _Static(directory=HERE / "static"), name="console-static")
    app.add_exception_handler(SignInRequired, _sign_in_required)
    app.add_exception_handler(NotAllowed, _not_allowed)
