"""JSON responses rendered with orjson (fast, and exact for our integer amounts)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


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


class JSONResponse(Response):
    media_type = "application/json"

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
        return b"".join(parts)
