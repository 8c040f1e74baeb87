"""JSON answers: base64 text goes into an answer byte for byte, and the answer is the
JSON a user's parser reads, whatever else the answer's strings hold."""

from __future__ import annotations

import base64
import os

import orjson
from hypothesis import given
from hypothesis import strategies as st

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
    body = JSONResponse(payload).body
    parsed = orjson.loads(body)
    assert parsed["note"] == prompt + '\x00"\\'
    assert [base64.b64decode(item["b64_json"]) for item in parsed["data"]] == [IMAGE] * count
    assert [item["revised"] for item in parsed["data"]] == [prompt] * count


def test_the_text_is_copied_in_once_as_it_is() -> None:
    upstream = b'{"b64_json":"' + TEXT + b'"}'
    view = memoryview(upstream)[13:-2]
    body = JSONResponse({"data": [{"b64_json": Base64Text(view)}], "created": 1}).body
    assert body == b'{"data":[{"b64_json":"' + TEXT + b'"}],"created":1}'
    assert int(JSONResponse({"x": Base64Text(TEXT)}).headers["content-length"]) == len(TEXT) + 8
