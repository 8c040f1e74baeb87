"""Every error leaves in one shape: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from imagegate.api.responses import JSONResponse
from imagegate.errors import ImagegateError

log = logging.getLogger("imagegate.api")

_HTTP_CODES = {
    404: ("not_found", "invalid_request_error"),
    405: ("method_not_allowed", "invalid_request_error"),
    413: ("payload_too_large", "invalid_request_error"),
}


def error_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def _param(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def exception_response(exc: ImagegateError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The answer for one of our errors; also an ASGI app, for the middlewares."""
    if exc.status_code == 401:
        headers = {"WWW-Authenticate": "Bearer", **(headers or {})}
    if exc.retryable is False:
        headers = {"x-should-retry": "false", **(headers or {})}
    return error_response(exc.status_code, exc.to_body(), headers)


async def _imagegate_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ImagegateError)
    return exception_response(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    param = _param(tuple(first.get("loc", ())))
    message = (
        f"Invalid value for {param!r}: {first.get('msg')}." if param else str(first.get("msg"))
    )
    if first.get("type") == "json_invalid":
        message, param = "The request body is not valid JSON.", None
    body = {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": "invalid_parameter",
        }
    }
    return error_response(400, body)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code, kind = _HTTP_CODES.get(exc.status_code, ("http_error", "invalid_request_error"))
    body = {"error": {"message": str(exc.detail), "type": kind, "param": None, "code": code}}
    return error_response(exc.status_code, body, dict(exc.headers or {}))


async def _busy(request: Request, exc: Exception) -> JSONResponse:
    # Every database connection is in use, or SQLite's write lock stayed taken for its
    # whole timeout: an overload to retry, not a bug.
    log.warning("database busy on %s %s: %s", request.method, request.url.path, exc)
    busy = ImagegateError(
        "The gateway is busy; retry shortly.", code="server_busy", status_code=503
    )
    return exception_response(busy, {"Retry-After": "1"})


async def _operational(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OperationalError)
    if "database is locked" in str(exc.orig):  # SQLite's busy timeout ran out
        return await _busy(request, exc)
    return await _unexpected(request, exc)


async def _client_gone(request: Request, exc: Exception) -> JSONResponse:
    # The client closed its connection before its request was read: nothing was created,
    # and the answer (nginx's 499, in the access log) goes nowhere.
    log.info("client left before its request was read: %s %s", request.method, request.url.path)
    body = {
        "error": {
            "message": "The client closed the connection before its request was read.",
            "type": "invalid_request_error",
            "param": None,
            "code": "client_closed_request",
        }
    }
    return error_response(499, body)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    body = {
        "error": {
            "message": "Internal error.",
            "type": "server_error",
            "param": None,
            "code": "internal_error",
        }
    }
    return error_response(500, body)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ImagegateError, _imagegate_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(PoolTimeout, _busy)
    app.add_exception_handler(OperationalError, _operational)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected)
