"""Signing in and out, and accepting an invite link."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from imagegate.errors import AuthenticationError, ImagegateError
from imagegate.gateway import Gateway
from imagegate.services import accounts
from imagegate.web.render import page
from imagegate.web.session import (
    FORM_COOKIE,
    UserForm,
    checked_form,
    form_token,
    set_cookie,
    set_session_cookie,
    signed_in,
    text,
)

router = APIRouter(include_in_schema=False)


def suggested_login(name: str) -> str:
    """A login to start from: the member's name in lower case, dots for spaces."""
    return ".".join(accounts.normal_login(name).split())


def _local(next_path: str | None) -> str:
    """Only a path of this site to go back to after signing in."""
    if next_path and next_path.startswith("/") and not next_path.startswith(("//", "/\\")):
        return next_path
    return "/"


def _with_form_cookie(request: Request, response: Response, token: str) -> Response:
    set_cookie(request, response, FORM_COOKIE, token, 3600)
    return response


@router.get("/")
async def home(request: Request) -> Response:
    user = await signed_in(request)
    if user is None:
        return RedirectResponse("/sign-in", status_code=303)
    return RedirectResponse("/generate", status_code=303)


def _sign_in_page(
    request: Request, *, error: str | None = None, status_code: int = 200, login: str = ""
) -> Response:
    token = form_token(request)
    response = page(
        request,
        "sign_in.html",
        status_code=status_code,
        csrf_token=token,
        error=error,
        login=login,
        next=_local(request.query_params.get("next")),
        ended=request.query_params.get("ended") == "1",
        signed_out=request.query_params.get("signed_out") == "1",
    )
    return _with_form_cookie(request, response, token)


@router.get("/sign-in")
async def sign_in_form(request: Request) -> Response:
    if await signed_in(request) is not None:
        return RedirectResponse(_local(request.query_params.get("next")), status_code=303)
    return _sign_in_page(request)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await checked_form(request, request.cookies.get(FORM_COOKIE))
    gateway: Gateway = request.app.state.gateway
    login, password, api_key = text(form, "login"), text(form, "password"), text(form, "api_key")
    try:
        async with gateway.db.session() as session:
            if api_key:
                opened: accounts.OpenedSession | ImagegateError = await accounts.sign_in_with_key(
                    session, api_key
                )
            else:
                member = await accounts.check_password_sign_in(session, login, password)
                opened = (
                    member
                    if isinstance(member, AuthenticationError)
                    else await accounts.open_session(session, member)
                )
    except AuthenticationError as exc:
        opened = exc
    if isinstance(opened, ImagegateError):
        return _sign_in_page(
            request, error=opened.message, status_code=opened.status_code, login=login
        )
    response = RedirectResponse(_local(text(form, "next")), status_code=303)
    set_session_cookie(request, response, opened.token)
    response.delete_cookie(FORM_COOKIE, path="/")
    return response


@router.post("/sign-out")
async def sign_out(request: Request, form: UserForm) -> Response:
    gateway: Gateway = request.app.state.gateway
    async with gateway.db.session() as session:
        await accounts.end_session(session, request.cookies[accounts.SESSION_COOKIE])
    response = RedirectResponse("/sign-in?signed_out=1", status_code=303)
    response.delete_cookie(accounts.SESSION_COOKIE, path="/")
    return response


async def _invite_page(
    request: Request,
    token: str,
    *,
    error: str | None = None,
    status_code: int = 200,
    login: str | None = None,
) -> Response:
    gateway: Gateway = request.app.state.gateway
    try:
        async with gateway.db.read_session() as session:
            pending = await accounts.open_invite(session, token)
    except ImagegateError as exc:
        return page(
            request, "message.html", status_code=404, title="Invite link", message=exc.message
        )
    csrf = form_token(request)
    response = page(
        request,
        "invite.html",
        status_code=status_code,
        csrf_token=csrf,
        member=pending.member,
        login=login or pending.login or suggested_login(pending.member.name),
        error=error,
        min_password=accounts.MIN_PASSWORD,
    )
    return _with_form_cookie(request, response, csrf)


@router.get("/invite/{token}")
async def invite_form(request: Request, token: str) -> Response:
    return await _invite_page(request, token)


@router.post("/invite/{token}")
async def accept_invite(request: Request, token: str) -> Response:
    form = await checked_form(request, request.cookies.get(FORM_COOKIE))
    gateway: Gateway = request.app.state.gateway
    password, login = text(form, "password"), text(form, "login")
    if password != text(form, "password_again"):
        return await _invite_page(
            request, token, error="The two passwords differ.", status_code=400, login=login
        )
    try:
        async with gateway.db.session() as session:
            member = await accounts.accept_invite(session, token, login, password)
            opened = await accounts.open_session(session, member)
    except ImagegateError as exc:
        return await _invite_page(
            request, token, error=exc.message, status_code=exc.status_code, login=login
        )
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(request, response, opened.token)
    response.delete_cookie(FORM_COOKIE, path="/")
    return response
