"""Rendering console pages: templates, the security headers every page carries, and the
signed-in member's context."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from imagegate import __version__
from imagegate.gateway import Gateway
from imagegate.services.accounts import SignedIn

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


def _when(value: datetime | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        value = datetime.fromtimestamp(value, UTC)
    return value.strftime("%Y-%m-%d %H:%M UTC")


templates.env.filters["when"] = _when


def content_security_policy(gateway: Gateway) -> str:
    """Only the gateway's own scripts and styles; no inline script, no framing."""
    images = "'self' data: blob:"
    if gateway.settings.public_url:
        parts = urlsplit(gateway.settings.public_url)
        images += f" {parts.scheme}://{parts.netloc}"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src {images}; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )


def security_headers(gateway: Gateway) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(gateway),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
    }


def page(
    request: Request,
    template: str,
    user: SignedIn | None = None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    gateway: Gateway = request.app.state.gateway
    context = {
        "user": user,
        "is_admin": user is not None and user.principal.is_admin,
        "csrf_token": user.csrf_token if user else context.pop("csrf_token", ""),
        "version": __version__,
        "path": request.url.path,
        **context,
    }
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    response.headers.update(security_headers(gateway))
    return response
