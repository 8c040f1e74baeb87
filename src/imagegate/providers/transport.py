"""httpx's client over aiohttp's connections: the transport of every provider call.

Adapters build httpx requests and read httpx responses (redirects, cookies, content
decoding and the errors they map stay httpx's); only the connection layer is aiohttp's.
httpx reads a body through anyio 64 KB at a time, each read passing through half a dozen
layers of Python and, over TLS, returning one 16 KB record; aiohttp's protocol parses in
C and hands over whatever the socket or the TLS layer holds. For a 2.3 MB ``b64_json``
answer that is about a third of the CPU of a fetch (docs/performance-history.md). What
one connection buffers while nobody reads it stays bounded by ``READ_BUFSIZE`` (aiohttp
pauses the socket at twice that), so bodies waiting for a read slot wait in the kernel.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx
from yarl import URL

# Most specific first: the first class an error is an instance of decides.
_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (TimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.ClientConnectionError, httpx.NetworkError),
    (aiohttp.ClientError, httpx.TransportError),
)

KEEPALIVE_SECONDS = 5.0  # httpx's default for idle pooled connections
# aiohttp's default; larger buffers bought no CPU and cost memory per waiting answer.
READ_BUFSIZE = 2**16

# aiohttp fills in these when a request lacks them; httpx's request says what is meant.
_NO_DEFAULT_HEADERS = ("Accept", "Accept-Encoding", "Content-Type", "User-Agent")


@contextlib.contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except (TimeoutError, aiohttp.ClientError) as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(str(exc) or type(exc).__name__, request=request) from exc
        raise  # pragma: no cover - ClientError is the last entry


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors(self._request):
            if self._response.content_length is not None:
                # A body of declared length is read whole, in one chunk: its size is
                # known before the first byte (a reader refuses one too large then), and
                # each chunk handed up costs a pass through httpx's stream layers.
                yield await self._response.content.read()
                return
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()  # the connection goes back to the pool
        else:
            self._response.close()  # a body left unread: the connection cannot be reused


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session, opened on first use in the running event loop."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0,  # the runner's per-provider limit bounds calls, as with httpx
                keepalive_timeout=KEEPALIVE_SECONDS,
                ssl=httpx.create_ssl_context(),  # certifi, as httpx
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps the cookies
                auto_decompress=False,  # httpx decodes Content-Encoding
                read_bufsize=READ_BUFSIZE,
                skip_auto_headers=_NO_DEFAULT_HEADERS,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        content = await request.aread()
        with _as_httpx_errors(request):
            response = await self._client().request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=request.headers.multi_items(),
                data=content or None,
                allow_redirects=False,  # httpx follows them, with its own rules
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            )
        extensions = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("latin-1", "replace")
        return httpx.Response(
            response.status,
            headers=list(response.raw_headers),
            stream=_Body(response, request),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
