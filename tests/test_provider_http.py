"""The adapters' HTTP client: large upstream bodies are read a few at a time, a job
attempt keeps its read slot until it ends, responses come back decoded, and answers that
carry images parse as the JSON parser would parse them."""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import sys
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagegate.errors import ImagegateError, UpstreamError
from imagegate.providers.http import (
    LARGE_BODY_BYTES,
    ReadLimit,
    RetryPolicy,
    UpstreamHTTP,
    _with_images_set_aside,
    json_body,
)

LARGE = LARGE_BODY_BYTES * 4


class Readers:
    """Counts the bodies being read at once."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0

    def body(self, size: int, pause: float = 0.01) -> httpx.AsyncByteStream:
        readers = self

        class Body(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                readers.now += 1
                readers.most = max(readers.most, readers.now)
                try:
                    for start in range(0, size, 65536):
                        await asyncio.sleep(pause)
                        yield b"x" * min(65536, size - start)
                finally:
                    readers.now -= 1

        return Body()


def _client(limit: ReadLimit, handler: httpx.MockTransport) -> UpstreamHTTP:
    return UpstreamHTTP(
        "test",
        headers={},
        policy=RetryPolicy(attempts=1),
        connect_timeout=5,
        max_output_bytes=50 * 1024 * 1024,
        body_reads=limit,
        transport=handler,
    )


def _map(response: httpx.Response) -> ImagegateError:
    return UpstreamError(f"HTTP {response.status_code}")


def _sized(readers: Readers) -> httpx.MockTransport:
    """Answers /large with LARGE bytes and /small with a short JSON body."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/small":
            return httpx.Response(200, json={"ok": True})
        return httpx.Response(
            200, headers={"content-length": str(LARGE)}, stream=readers.body(LARGE)
        )

    return httpx.MockTransport(handle)


async def test_large_bodies_are_read_a_few_at_a_time() -> None:
    readers = Readers()
    http = _client(ReadLimit(2), _sized(readers))
    responses = await asyncio.gather(
        *(http.request("GET", "http://up/large", map_error=_map, within=10) for _ in range(6))
    )
    assert readers.most == 2
    assert all(len(response.content) == LARGE for response in responses)
    await http.aclose()


async def test_an_attempt_keeps_its_slot_until_it_ends_and_reuses_it() -> None:
    readers = Readers()
    http = _client(ReadLimit(1), _sized(readers))
    first_read = asyncio.Event()
    release_first = asyncio.Event()
    order: list[str] = []

    async def first() -> None:
        async with ReadLimit.attempt():
            await http.request("GET", "http://up/large", map_error=_map, within=10)
            # A second large body of the same attempt reuses its slot: no deadlock.
            await http.request("GET", "http://up/large", map_error=_map, within=10)
            first_read.set()
            await release_first.wait()
            order.append("first done")

    async def second() -> None:
        await first_read.wait()
        async with ReadLimit.attempt():
            await http.request("GET", "http://up/large", map_error=_map, within=10)
            order.append("second read")

    async def small_meanwhile() -> None:
        await first_read.wait()
        # Small answers never wait for a slot, even while every slot is held.
        response = await http.request("GET", "http://up/small", map_error=_map, within=10)
        assert response.json() == {"ok": True}
        order.append("small read")
        await asyncio.sleep(0.05)
        release_first.set()

    await asyncio.wait_for(asyncio.gather(first(), second(), small_meanwhile()), 10)
    assert order == ["small read", "first done", "second read"]
    await http.aclose()


async def test_bodies_come_back_decoded_and_without_their_encoding_header() -> None:
    payload = {"data": [{"b64_json": "aGVsbG8="}]}

    def handle(request: httpx.Request) -> httpx.Response:
        body = gzip.compress(orjson.dumps(payload))
        return httpx.Response(200, headers={"content-encoding": "gzip"}, content=body)

    http = _client(ReadLimit(1), httpx.MockTransport(handle))
    response = await http.request("POST", "http://up/images", map_error=_map, within=10)
    assert response.json() == payload
    assert "content-encoding" not in response.headers
    await http.aclose()


class _Endless(httpx.AsyncByteStream):
    """A body that never ends, counting what was read of it."""

    def __init__(self) -> None:
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            self.sent += 65536
            yield b"x" * 65536


async def test_an_answer_past_the_cap_is_refused_while_it_is_read() -> None:
    endless = _Endless()
    gzipped = gzip.compress(b"\0" * 4 * 1024 * 1024)  # 4 MB once decoded: a small bomb

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/declared":
            return httpx.Response(200, headers={"content-length": str(10**12)}, stream=endless)
        if request.url.path == "/gzip":
            return httpx.Response(200, headers={"content-encoding": "gzip"}, content=gzipped)
        return httpx.Response(200, stream=endless)  # chunked: no length said

    http = UpstreamHTTP(
        "test",
        headers={},
        policy=RetryPolicy(attempts=1),
        connect_timeout=5,
        max_output_bytes=64 * 1024,
        body_reads=ReadLimit(1),
        transport=httpx.MockTransport(handle),
    )
    cap = http.max_answer_bytes
    assert cap == 64 * 1024 * 4 // 3 * 10 + 1024 * 1024
    for path in ("/declared", "/chunked", "/gzip"):
        with pytest.raises(UpstreamError) as refused:
            await http.request("GET", f"http://up{path}", map_error=_map, within=10)
        assert refused.value.code == "upstream_output_too_large", path
        if path == "/declared":
            assert endless.sent == 0  # refused on its declared length, unread
        if path == "/chunked":
            assert cap < endless.sent <= cap + 65536  # read no further than the cap
    await http.aclose()


# ---- answers that carry images as base64 strings ----------------------------------------

IMAGE_TEXT = "QUJD" * 20_000  # 80 KB of base64: over the size that takes the quick path
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["b64_json", "x", 'a"b64_json', "b64_json\\"]), inner)
    ),
    max_leaves=12,
)
# Strings that look like the structure around an image: quotes, escapes, the key itself.
_tricky = st.sampled_from(
    ['"b64_json": "', '\\"b64_json\\": \\"', "\\", '"', "\x00", "\x000", "é✓", IMAGE_TEXT[:8]]
)


def _as_parsed(value: object) -> object:
    """``value`` with the image texts json_body leaves as views turned into strings."""
    if isinstance(value, memoryview):
        return bytes(value).decode()
    if isinstance(value, dict):
        return {key: _as_parsed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_parsed(item) for item in value]
    return value


def _answer(value: object) -> httpx.Response:
    return httpx.Response(200, content=orjson.dumps(value))


@given(
    extra=_values,
    tricky=st.lists(_tricky, max_size=3),
    images=st.integers(min_value=1, max_value=3),
    indent=st.booleans(),
)
def test_an_answer_with_images_parses_as_the_parser_would(
    extra: object, tricky: list[str], images: int, indent: bool
) -> None:
    value = {
        "created": 1,
        "data": [
            {"b64_json": IMAGE_TEXT[: 70_000 + i], "revised_prompt": "".join(tricky)}
            for i in range(images)
        ],
        "extra": extra,
        "".join(tricky) or "k": "".join(tricky),
    }
    content = (
        json.dumps(value, indent=2, ensure_ascii=False).encode() if indent else orjson.dumps(value)
    )
    parsed = json_body(httpx.Response(200, content=content), images="b64_json")
    assert _as_parsed(parsed) == value


def test_a_typical_answer_takes_the_quick_path() -> None:
    value = {"created": 1, "data": [{"b64_json": IMAGE_TEXT}, {"b64_json": IMAGE_TEXT[4:]}]}
    content = orjson.dumps(value)
    parsed = _with_images_set_aside(content, b'"b64_json"')
    assert _as_parsed(parsed) == value
    # The image texts are views into the answer's bytes: not copied, not decoded.
    texts = [item["b64_json"] for item in parsed["data"]]
    assert all(isinstance(text, memoryview) and text.obj is content for text in texts)
    # An escape inside the image text (a JSON-escaped line break) leaves it to the parser.
    escaped = orjson.dumps({"data": [{"b64_json": IMAGE_TEXT[:40] + "\n" + IMAGE_TEXT}]})
    assert _with_images_set_aside(escaped, b'"b64_json"') is None
    assert (
        json_body(httpx.Response(200, content=escaped), images="b64_json")["data"][0][
            "b64_json"
        ].count("\n")
        == 1
    )


def test_parsing_leaves_no_cycle_holding_the_answer() -> None:
    # A cycle holding a view of the answer keeps all of its megabytes until the cycle
    # collector runs; the parse must leave the views to the parsed value alone.
    content = orjson.dumps({"created": 1, "data": [{"b64_json": IMAGE_TEXT}]})
    before = sys.getrefcount(content)
    parsed = _with_images_set_aside(content, b'"b64_json"')
    assert isinstance(parsed["data"][0]["b64_json"], memoryview)
    del parsed
    assert sys.getrefcount(content) == before


async def test_a_call_leaves_nothing_for_the_cycle_collector() -> None:
    """httpx binds a streamed response and its stream to each other; a call must not
    leave that pair (and the connection's objects hanging from it) to the collector."""

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"ok": True})

    http = _client(ReadLimit(1), httpx.MockTransport(handle))
    await http.request("POST", "http://up/images", map_error=_map, within=10)  # warm
    gc.collect()
    gc.disable()
    try:
        response = await http.request("POST", "http://up/images", map_error=_map, within=10)
        assert response.json() == {"ok": True}
        del response
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [type(o).__name__ for o in gc.garbage if isinstance(o, httpx.Response)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []
    await http.aclose()


def test_answers_that_are_not_json_are_none_either_way() -> None:
    for content in (
        b'{"data": [{"b64_json": "' + IMAGE_TEXT.encode() + b'"}',  # cut short
        b'{"data": [{"b64_json": "' + IMAGE_TEXT.encode(),
        b"[" + b'"b64_json": "' + IMAGE_TEXT.encode() + b'"]',
        IMAGE_TEXT.encode(),
    ):
        assert json_body(httpx.Response(200, content=content), images="b64_json") is None


async def test_a_providers_cookies_are_not_sent_with_the_next_call() -> None:
    """One workspace's call must not carry what the provider set in answer to another's."""
    seen: list[str | None] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(
            200, headers={"set-cookie": "__cf_bm=abc; Path=/; HttpOnly"}, json={"ok": True}
        )

    http = _client(ReadLimit(1), httpx.MockTransport(handle))
    for _ in range(2):
        response = await http.request("POST", "http://up/images", map_error=_map, within=10)
        assert response.headers["set-cookie"].startswith("__cf_bm=")  # still readable
    assert seen == [None, None]
    assert list(http.client.cookies.jar) == []
    await http.aclose()


async def test_the_same_endpoint_is_parsed_once_and_reached_every_time() -> None:
    paths: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        paths.append(f"{request.url.path}?{request.url.query.decode()}")
        return httpx.Response(200, json={"ok": True})

    http = _client(ReadLimit(1), httpx.MockTransport(handle))
    await http.request("GET", "http://up/a?x=1", map_error=_map, within=10)
    await http.request("GET", "http://up/a?x=1", map_error=_map, within=10)
    await http.request("GET", "http://up/b", map_error=_map, within=10, params={"y": "2"})
    assert paths == ["/a?x=1", "/a?x=1", "/b?y=2"]
    assert len(http._urls) == 2
    await http.aclose()
