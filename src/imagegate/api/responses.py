"""JSON responses rendered with orjson (fast, and exact for our integer amounts)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.types import Receive, Scope, Send


class Base64Text:
    """Canonical base64 to put in an answer as a JSON string, byte for byte.

    Its characters need no escaping in JSON, so the answer is written around it and the
    text is copied in once: an image of a few megabytes is neither decoded into a Python
    string nor checked character by character by the JSON writer.
    """

    __slots__ = ("text",)

    def __init__(self, text: bytes | memoryview) -> None:
        self.text = text


# orjson never writes a raw NUL byte (it escapes control characters inside strings), so
# this stand-in's NUL marks exactly where a text goes.
_STAND_IN = orjson.Fragment(b'"\x00"')


class JSONResponse(StarletteJSONResponse):
    """An orjson answer (a JSON response to FastAPI, which then describes routes' answers
    by their models rather than as strings). One that carries :class:`Base64Text` goes out
    in parts (the JSON around each text, and the texts) so that a text is never copied
    into a whole body; its ``body`` is then empty and ``parts`` holds the answer.
    """

    media_type = "application/json"
    parts: tuple[bytes | memoryview, ...] | None = None

    def render(self, content: Any) -> bytes:
        texts: list[bytes | memoryview] = []

        def stand_in(value: Any) -> orjson.Fragment:
            if isinstance(value, Base64Text):
                texts.append(value.text)
                return _STAND_IN
            raise TypeError(f"{type(value).__name__} is not JSON serializable")

        rendered = orjson.dumps(content, default=stand_in)
        if not texts:
            return rendered
        pieces = rendered.split(b"\x00")
        if len(pieces) != len(texts) + 1:  # cannot happen; never send a broken answer
            raise ValueError("a stand-in for base64 text went missing")
        parts: list[bytes | memoryview] = [pieces[0]]
        for text, piece in zip(texts, pieces[1:], strict=True):
            parts += (text, piece)
        self.parts = tuple(parts)
        return b""

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        super().init_headers(headers)
        if self.parts is not None:
            self.headers["content-length"] = str(sum(len(part) for part in self.parts))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.parts is None:
            await super().__call__(scope, receive, send)
            return
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        # ASGI bodies are bytes; uvicorn, which ``imagegate serve`` runs, writes any buffer
        # to the socket as it is, so a view into the upstream's answer need not be copied.
        views = takes_views(scope)
        last = len(self.parts) - 1
        for index, part in enumerate(self.parts):
            body = part if views or isinstance(part, bytes) else bytes(part)
            await send({"type": "http.response.body", "body": body, "more_body": index < last})
        if self.background is not None:
            await self.background()


def takes_views(scope: Scope) -> bool:
    """Whether the server of this app writes memoryviews as response bodies (see
    :func:`imagegate.app.served_by_uvicorn`)."""
    app = scope.get("app")
    return bool(getattr(getattr(app, "state", None), "server_takes_views", False))
