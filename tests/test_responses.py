"""JSON answers: base64 text goes into an answer byte for byte, and the answer is the
JSON a user's parser reads, whatever else the answer's strings hold."""

from __future__ import annotations

import base64
import os
from types import SimpleNamespace

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.types import Message

from imagegate.api.responses import Base64Text, JSONResponse

IMAGE = os.urandom(3000)
TEXT = base64.b64encode(IMAGE)


@given(
    prompt=st.text(max_size=40),
    count=st.integers(min_value=0, max_value=3),
    as_view=st.booleans(),
)
def test_an_answer_with_base64_texts_parses_back_to_the_images(
    prompt: str, count: int, as_view: bool
) -> None:
    # Strings with NUL characters, quotes and backslashes around the stand-ins.
    payload = {
        "data": [
            {"b64_json": Base64Text(memoryview(TEXT) if as_view else TEXT), "revised": prompt}
            for _ in range(count)
        ],
        "note": prompt + '\x00"\\',
    }
    response = JSONResponse(payload)
    body = b"".join(response.parts) if response.parts is not None else response.body
    assert int(response.headers["content-length"]) == len(body)
    parsed = orjson.loads(body)
    assert parsed["note"] == prompt + '\x00"\\'
    assert [base64.b64decode(item["b64_json"]) for item in parsed["data"]] == [IMAGE] * count
    assert [item["revised"] for item in parsed["data"]] == [prompt] * count


async def _sent(response: JSONResponse, takes_views: bool) -> list[Message]:
    app = SimpleNamespace(state=SimpleNamespace(server_takes_views=takes_views))
    scope = {"type": "http", "method": "GET", "app": app}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    await response(scope, receive, send)
    return sent


@pytest.mark.parametrize("takes_views", [True, False])
async def test_the_text_goes_out_as_it_came_in(takes_views: bool) -> None:
    upstream = b'{"b64_json":"' + TEXT + b'"}'
    view = memoryview(upstream)[13:-2]
    response = JSONResponse({"data": [{"b64_json": Base64Text(view)}], "created": 1})
    sent = await _sent(response, takes_views)
    bodies = [message["body"] for message in sent[1:]]
    assert b"".join(bodies) == b'{"data":[{"b64_json":"' + TEXT + b'"}],"created":1}'
    headers = dict(sent[0]["headers"])
    assert int(headers[b"content-length"]) == len(b"".join(bodies))
    assert [message["more_body"] for message in sent[1:]] == [True, True, False]
    # A server that writes buffers gets the view itself; any other server gets bytes.
    assert (bodies[1] is view) is takes_views
    assert all(isinstance(body, bytes) for body in bodies) is not takes_views


async def test_an_answer_without_base64_text_is_one_body() -> None:
    sent = await _sent(JSONResponse({"id": "job_1"}), takes_views=True)
    assert [message.get("body") for message in sent[1:]] == [b'{"id":"job_1"}']
