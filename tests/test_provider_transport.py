"""The providers' transport (httpx over aiohttp), against real sockets: what goes out is
what httpx built, what comes back is an httpx response, and every failure of the
connection is an httpx error that the adapters already map."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from imagegate.errors import TransientUpstreamError, UpstreamError
from imagegate.providers.http import ReadLimit, RetryPolicy, UpstreamHTTP
from imagegate.providers.transport import AiohttpTransport

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A TCP server that answers with whatever bytes a test writes."""

    def __init__(self, serve: Serve) -> None:
        self.serve = serve
        self.requests: list[bytes] = []
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


def answer(status: str, body: bytes, *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked_answer(status: str, body: bytes, chunk: int = 65536) -> bytes:
    """An answer of undeclared length, sent in chunks of ``chunk`` bytes."""
    head = f"HTTP/1.1 {status}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    pieces = [body[at : at + chunk] for at in range(0, len(body), chunk)]
    framed = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    return head + framed + b"0\r\n\r\n"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=AiohttpTransport(), follow_redirects=True) as c:
        yield c


async def test_the_request_goes_out_as_httpx_built_it(client: httpx.AsyncClient) -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(answer("201 Created", b'{"ok":true}', "Content-Type: application/json"))
        await writer.drain()

    async with RawServer(serve) as url:
        response = await client.post(
            f"{url}/v1/a%2Fb?x=1", content=b"raw bytes", headers={"Authorization": "Bearer k"}
        )
    assert response.status_code == 201
    assert response.reason_phrase == "Created"
    assert response.json() == {"ok": True}
    head, body = seen[0]
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/a%2Fb?x=1 HTTP/1.1"  # the path is not re-quoted
    names = [line.split(":")[0].lower() for line in lines[1:] if line]
    assert "authorization: bearer k" in head.decode().lower()
    # httpx's own headers, once each; aiohttp adds no Content-Type to raw bytes.
    assert sorted(names) == sorted(set(names))
    assert "content-type" not in names
    assert body == b"raw bytes"


async def test_a_multipart_upload_arrives_whole(client: httpx.AsyncClient) -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(answer("200 OK", b"{}"))
        await writer.drain()

    image = bytes(range(256)) * 400
    async with RawServer(serve) as url:
        await client.post(f"{url}/edit", data={"prompt": "p"}, files={"image": ("a.png", image)})
    head, body = seen[0]
    assert b"multipart/form-data; boundary=" in head
    assert image in body and b'name="prompt"' in body


async def test_a_gzipped_body_is_decoded_once(client: httpx.AsyncClient) -> None:
    payload = b'{"data":"' + b"z" * 300_000 + b'"}'

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer("200 OK", gzip.compress(payload), "Content-Encoding: gzip"))
        await writer.drain()

    async with RawServer(serve) as url:
        response = await client.get(f"{url}/x")
    assert response.content == payload


async def test_a_connection_is_reused_after_a_full_read_and_not_after_a_partial_one(
    client: httpx.AsyncClient,
) -> None:
    large = b"y" * 1_000_000

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await read_request(reader)
            # Of undeclared length, so that it comes up in chunks and can be left unread.
            writer.write(
                chunked_answer("200 OK", large) if b"/large" in head else answer("200 OK", b"small")
            )
            await writer.drain()

    server = RawServer(serve)
    async with server as url:
        for _ in range(3):
            assert (await client.get(f"{url}/small")).content == b"small"
        assert server.connections == 1
        async with client.stream("GET", f"{url}/large") as response:
            async for _chunk in response.aiter_bytes():
                break  # the rest of the body is never read
        assert (await client.get(f"{url}/small")).content == b"small"
    assert server.connections == 2


async def test_a_body_of_declared_length_comes_up_whole(client: httpx.AsyncClient) -> None:
    large = bytes(range(256)) * 4000  # about 1 MB: many socket reads

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await read_request(reader)
            declared = b"/declared" in head
            writer.write(answer("200 OK", large) if declared else chunked_answer("200 OK", large))
            await writer.drain()

    async with RawServer(serve) as url:
        async with client.stream("GET", f"{url}/declared") as response:
            whole = [chunk async for chunk in response.aiter_raw()]
        async with client.stream("GET", f"{url}/chunked") as response:
            streamed = [chunk async for chunk in response.aiter_raw()]
    assert whole == [large]
    assert len(streamed) > 1 and b"".join(streamed) == large


async def test_redirects_are_followed_by_httpx(client: httpx.AsyncClient) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, _ = await read_request(reader)
        if b"GET /old" in head:
            writer.write(answer("302 Found", b"", "Location: /new"))
        else:
            writer.write(answer("200 OK", b"new"))
        await writer.drain()

    async with RawServer(serve) as url:
        response = await client.get(f"{url}/old")
    assert response.content == b"new"
    assert [str(r.url).rsplit("/", 1)[1] for r in response.history] == ["old"]


def _http(transport: httpx.AsyncBaseTransport | None = None) -> UpstreamHTTP:
    return UpstreamHTTP(
        "acme",
        headers={},
        policy=RetryPolicy(attempts=1),
        connect_timeout=2,
        max_output_bytes=10_000_000,
        body_reads=ReadLimit(4),
        transport=transport,
    )


async def _call(http: UpstreamHTTP, url: str, within: float = 5) -> httpx.Response:
    try:
        return await http.request(
            "POST", url, map_error=lambda r: UpstreamError(f"HTTP {r.status_code}"), within=within
        )
    finally:
        await http.aclose()


async def test_an_adapter_reads_a_large_answer_through_the_default_transport() -> None:
    body = b'{"data":[{"b64_json":"' + b"A" * 2_300_000 + b'"}]}'

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer("200 OK", body, "Content-Type: application/json"))
        await writer.drain()

    async with RawServer(serve) as url:
        response = await _call(_http(), f"{url}/v1/images/generations")
    assert response.content == body
    assert response.json()["data"][0]["b64_json"] == "A" * 2_300_000


async def _refused_url() -> str:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return f"http://127.0.0.1:{port}/x"


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    await reader.read()  # no answer; ends when the client gives up and hangs up


async def _cut_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    await writer.drain()


async def _stall_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    await writer.drain()
    await reader.read()  # the rest never comes; ends when the client gives up and hangs up


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"this is not HTTP\r\n\r\n")
    await writer.drain()


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)


@pytest.mark.parametrize(
    ("serve", "code", "words"),
    [
        (None, "upstream_unavailable", "could not be reached"),
        (_silent, "upstream_timeout", "ReadTimeout"),
        (_cut_mid_body, "upstream_unavailable", "could not be reached"),
        (_stall_mid_body, "upstream_timeout", "ReadTimeout"),
        (_garbage, "upstream_unavailable", "could not be reached"),
        (_hang_up, "upstream_unavailable", "could not be reached"),
    ],
    ids=["refused", "silent", "cut-mid-body", "stall-mid-body", "not-http", "hang-up"],
)
async def test_every_connection_failure_is_a_retryable_upstream_error(
    serve: Serve | None, code: str, words: str
) -> None:
    if serve is None:
        with pytest.raises(TransientUpstreamError) as caught:
            await _call(_http(), await _refused_url())
    else:
        async with RawServer(serve) as url:
            with pytest.raises(TransientUpstreamError) as caught:
                await _call(_http(), f"{url}/x", within=0.5)
    assert caught.value.code == code
    assert words in caught.value.message
    assert caught.value.extra["provider"] == "acme"


async def test_httpx_errors_carry_the_request(client: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.ConnectError) as caught:
        await client.get(await _refused_url())
    assert caught.value.request.url.path == "/x"
