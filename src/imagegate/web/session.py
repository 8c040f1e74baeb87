"""Who is signed in to the console, what they may open, and the CSRF checks on forms."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from imagegate.gateway import Gateway
from imagegate.services import accounts
from imagegate.services.accounts import SignedIn

# The pre-session forms (sign-in, invite) use a double-submit token in this cookie.
FORM_COOKIE = "imagegate_form"
CSRF_FIELD = "csrf_token"


class SignInRequired(Exception):
    """No valid session: the page redirects to the sign-in form."""

    def __init__(self, next_path: str, ended: bool) -> None:
        self.next_path, self.ended = next_path, ended


class NotAllowed(Exception):
    """The page or form is refused: a 403 page with the reason."""

    def __init__(self, message: str, status_code: int = 403) -> None:
        super().__init__(message)
        self.message, self.status_code = message, status_code


def is_https(request: Request, gateway: Gateway) -> bool:
    public = gateway.settings.public_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    gateway: Gateway = request.app.state.gateway
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=is_https(request, gateway),
    )


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    set_cookie(
        request, response, accounts.SESSION_COOKIE, token, int(accounts.SESSION_MAX.total_seconds())
    )


def form_token(request: Request) -> str:
    """The double-submit token of a pre-session form (set as a cookie by the page)."""
    return request.cookies.get(FORM_COOKIE) or secrets.token_urlsafe(32)


async def signed_in(request: Request) -> SignedIn | None:
    token = request.cookies.get(accounts.SESSION_COOKIE)
    if not token:
        return None
    gateway: Gateway = request.app.state.gateway
    return await accounts.signed_in(gateway.db, token)


async def current_user(request: Request) -> SignedIn:
    user = await signed_in(request)
    if user is None:
        ended = accounts.SESSION_COOKIE in request.cookies
        raise SignInRequired(request.url.path, ended)
    return user


User = Annotated[SignedIn, Depends(current_user)]


async def current_admin(user: User) -> SignedIn:
    if not user.principal.is_admin:
        raise NotAllowed("This page is for workspace admins. Ask an admin if you need access.")
    return user


Admin = Annotated[SignedIn, Depends(current_admin)]


def _same_origin(request: Request) -> bool:
    """A browser names the page a form came from; another site's page is refused."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def checked_form(request: Request, expected: str | None) -> FormData:
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    if (
        expected is None
        or not isinstance(sent, str)
        or not hmac.compare_digest(sent.encode(), expected.encode())
        or not _same_origin(request)
    ):
        raise NotAllowed(
            "This form could not be accepted: its security token is missing or wrong "
            "(it may come from another site, or the page is too old). Reload the page "
            "and try again.",
        )
    return form


async def user_form(request: Request, user: User) -> FormData:
    return await checked_form(request, user.csrf_token)


async def admin_form(request: Request, user: Admin) -> FormData:
    return await checked_form(request, user.csrf_token)


UserForm = Annotated[FormData, Depends(user_form)]
AdminForm = Annotated[FormData, Depends(admin_form)]


def sign_in_url(next_path: str) -> str:
    return "/sign-in?next=" + quote(next_path, safe="/")


def text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""
