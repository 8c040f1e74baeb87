"""A one-line notice carried to the next page after a form's redirect (post/redirect/get)."""

from __future__ import annotations

from urllib.parse import quote, unquote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from imagegate.web.session import set_cookie

FLASH_COOKIE = "imagegate_flash"


def redirect(request: Request, to: str, notice: str | None = None) -> RedirectResponse:
    response = RedirectResponse(to, status_code=303)
    if notice:
        set_cookie(request, response, FLASH_COOKIE, quote(notice[:500]), 60)
    return response


def take(request: Request, response: Response) -> None:
    """Forget the notice once the page that shows it is rendered."""
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/")


def notice(request: Request) -> str | None:
    value = request.cookies.get(FLASH_COOKIE)
    return unquote(value) if value else None
