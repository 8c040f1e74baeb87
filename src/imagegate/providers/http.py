"""What every HTTP adapter shares: one client, retries, error mapping and capped downloads.

Retries inside an adapter cover one HTTP call (a submit, a poll, a download): 429, 5xx,
connection failures and timeouts are tried again ``attempts`` times with full-jitter
exponential backoff, never sooner than the upstream's ``Retry-After`` (or OpenAI's
``retry-after-ms``). A ``Retry-After`` longer than ``max_retry_after_s`` is not waited
out here: the error goes up with its delay and the job runner re-queues the job (or
moves to the model's next route). Everything else becomes one of our errors at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import email.utils
import http.cookiejar
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pybase64
from cachetools import LRUCache
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from imagegate.errors import ImagegateError, TransientUpstreamError, UpstreamError
from imagegate.providers.transport import AiohttpTransport

log = logging.getLogger("imagegate.providers")

ErrorMapper = Callable[[httpx.Response], ImagegateError]
Sleep = Callable[[float], Awaitable[None]]

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0
    max_retry_after_s: float = 30.0


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def sniff_content_type(data: bytes, fallback: str | None = None) -> str:
    """The image type of ``data`` from its first bytes; ``fallback`` when unknown."""
    for magic, content_type in _MAGIC:
        if data.startswith(magic):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    head = data[:512].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096].lower()):
        return "image/svg+xml"
    return fallback or "application/octet-stream"


def decode_b64(text: str | memoryview) -> bytes:
    """Base64 text's bytes, with SIMD: a 1.7 MB image in a fifth of a millisecond."""
    return decode_b64_checked(text)[0]


def decode_b64_checked(text: str | memoryview) -> tuple[bytes, bool]:
    """Base64 text's bytes, and whether the text was canonical base64 (nothing but the
    alphabet and its padding, so it can go into JSON as it is).

    Strict decoding takes pybase64's fast path (five times its lenient one); text with
    line breaks or other characters to skip, which some upstreams send, is decoded
    leniently, as the standard library would. Text that does not decode either way is a
    bad upstream answer (502), not a crash of the gateway.
    """
    try:
        return pybase64.b64decode(text, validate=True), True
    except ValueError:  # binascii.Error, or a str that is not ASCII
        pass
    try:
        return pybase64.b64decode(text), False
    except ValueError:
        raise UpstreamError(
            "The provider answered with an image in base64 that does not decode.",
            code="upstream_bad_response",
        ) from None


def decode_data_uri(uri: str) -> tuple[bytes, str | None]:
    """The bytes and declared type of a ``data:`` URI (fal's and Replicate's inline outputs)."""
    header, _, payload = uri.partition(",")
    content_type = header[5:].split(";")[0] or None
    if ";base64" in header:
        return decode_b64(payload), content_type
    from urllib.parse import unquote_to_bytes

    return unquote_to_bytes(payload), content_type


_LARGE_BODY = 64 * 1024
_SKIPPED = b" \t\r\n"


def json_body(response: httpx.Response, images: str | None = None) -> Any:
    """The answer's JSON, or None when it is not JSON.

    ``images``: the key under which the answer carries whole images as base64 strings
    (``b64_json``); a large answer is then parsed with those strings set aside, and they
    come back as memoryviews of the answer's bytes instead of strings (no copy).
    """
    content = response.content
    try:
        if images is not None and len(content) >= _LARGE_BODY:
            parsed = _with_images_set_aside(content, f'"{images}"'.encode())
            if parsed is not None:
                return parsed
        return orjson.loads(content)  # faster than json on multi-MB base64 bodies
    except ValueError:
        return None


def _image_spans(content: bytes, key: bytes) -> list[tuple[int, int]] | None:
    """Where the string values of ``key`` lie (their quotes included), in order; None
    when one has an escape in it (those are left to the parser)."""
    spans = []
    at = content.find(key)
    while at != -1:
        start = at + len(key)
        while start < len(content) and content[start] in _SKIPPED:
            start += 1
        if content[start : start + 1] == b":":
            start += 1
            while start < len(content) and content[start] in _SKIPPED:
                start += 1
            if content[start : start + 1] == b'"':
                end = content.find(b'"', start + 1)
                if end == -1 or content.find(b"\\", start, end) != -1:
                    return None
                spans.append((start, end + 1))
                start = end + 1
        at = content.find(key, start)
    return spans


def _with_images_set_aside(content: bytes, key: bytes) -> Any:
    """Parse an answer that carries images in base64 without running the parser over them.

    The parser would check and copy every character of a 2.3 MB string (about 0.7 ms);
    here the strings are cut out, the rest is parsed, and each string is put back where
    its stand-in landed, as a memoryview of its bytes in ``content``: neither copied nor
    decoded, since a base64 decoder reads the bytes and a gateway answer can pass them on
    as they are. None (parse it whole) unless every stand-in came back as a whole string
    value: a cut that was not exactly one string literal cannot pass that. Unlike the
    parser, raw control characters and bytes that are not UTF-8 inside those strings are
    let through (the base64 decoder then rejects or skips them).
    """
    spans = _image_spans(content, key)
    if not spans:
        return None
    pieces, last = [], 0
    for index, (start, end) in enumerate(spans):
        if start < last:
            return None
        pieces += [content[last:start], b'"\\u0000%d"' % index]
        last = end
    pieces.append(content[last:])
    try:
        skeleton = orjson.loads(b"".join(pieces))
    except ValueError:
        return None
    if not isinstance(skeleton, dict | list):
        return None
    found: list[int] = []
    try:
        _put_back(skeleton, memoryview(content), spans, found)
    except LookupError:
        return None
    return skeleton if sorted(found) == list(range(len(spans))) else None


def _put_back(
    node: dict[Any, Any] | list[Any],
    view: memoryview,
    spans: list[tuple[int, int]],
    found: list[int],
) -> None:
    """Replace each stand-in under ``node`` by its string's bytes, noting its index.

    A function of the module, not a closure calling itself: such a closure is a reference
    cycle holding the view, and with it the whole answer, until the cycle collector runs.
    """
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        if isinstance(value, str) and value[:1] == "\0" and value[1:].isdigit():
            index = int(value[1:])
            if index >= len(spans):
                raise LookupError
            start, end = spans[index]
            node[key] = view[start + 1 : end - 1]
            found.append(index)
        elif isinstance(value, dict | list):
            _put_back(value, view, spans, found)


def transient_for(response: httpx.Response, provider: str) -> TransientUpstreamError | None:
    """The retryable error a response stands for, or None when it is not retryable."""
    status = response.status_code
    if status == 429:
        return TransientUpstreamError(
            f"{provider} is rate limiting requests (HTTP 429).",
            code="upstream_rate_limited",
            retry_after=parse_retry_after(response.headers),
            extra={"provider": provider},
        )
    if status in (408, 409) or status >= 500:
        return TransientUpstreamError(
            f"{provider} failed with HTTP {status}.",
            code="upstream_unavailable",
            retry_after=parse_retry_after(response.headers),
            extra={"provider": provider},
        )
    return None


def auth_error(provider: str, setting: str, response: httpx.Response) -> UpstreamError:
    return UpstreamError(
        f"{provider} rejected the gateway's credentials "
        f"(HTTP {response.status_code}); check {setting}.",
        code="upstream_auth_failed",
        status_code=502,
        extra={"provider": provider},
    )


def generic_error(
    provider: str, response: httpx.Response, message: str | None = None
) -> UpstreamError:
    if response.status_code == 402:
        return UpstreamError(
            f"{provider} refused the request: the gateway's account is out of credit (HTTP 402).",
            code="upstream_payment_required",
            extra={"provider": provider},
        )
    detail = f": {message}" if message else ""
    return UpstreamError(
        f"{provider} answered HTTP {response.status_code}{detail}",
        code="upstream_error",
        extra={"provider": provider},
    )


# Bodies above this size (or of unknown size) take a read slot; status polls and other small
# answers never wait for one.
LARGE_BODY_BYTES = 256 * 1024

# The read slot the current job attempt holds (see ReadLimit.attempt), if it runs in one.
_ATTEMPT_SLOTS: contextvars.ContextVar[list[asyncio.Semaphore] | None] = contextvars.ContextVar(
    "imagegate_attempt_slots", default=None
)


# An answer may carry this many outputs as base64 (OpenAI's largest n).
ANSWER_OUTPUTS = 10


@contextlib.asynccontextmanager
async def streaming(
    client: httpx.AsyncClient, request: httpx.Request
) -> AsyncIterator[httpx.Response]:
    """``request`` sent, its response's body left to read; closed on the way out.

    httpx binds a streamed response and its stream to each other (the stream records the
    response's elapsed time when it is closed): a reference cycle, with the transport's
    response, buffers and headers hanging from it, that only the cycle collector frees.
    Once the response is closed its stream is dropped, so all of it is freed at once.
    """
    response = await client.send(request, stream=True)
    try:
        yield response
    finally:
        try:
            await response.aclose()
        finally:
            response.stream = httpx.ByteStream(b"")


def detached(streamed: httpx.Response, body: bytes) -> httpx.Response:
    """A plain response with ``body`` (already decoded) in place of a streamed one.

    The copy keeps no reference to the connection's objects, so a body is freed as soon
    as it is parsed.
    """
    headers = [
        (name, value)
        for name, value in streamed.headers.multi_items()
        if name.lower() not in ("content-encoding", "transfer-encoding")
    ]
    return httpx.Response(
        streamed.status_code, headers=headers, content=body, request=streamed.request
    )


class ReadLimit:
    """At most ``limit`` large upstream bodies in memory at once, process-wide.

    When hundreds of slow jobs finish together, each answering with megabytes of
    ``b64_json``, the answers wait in their sockets, not in memory. Inside
    :meth:`attempt` (the job runner's scope for one attempt) the slot taken by the first
    large body is kept until the attempt ends, that is until its outputs are stored,
    since the decoded images live that long; later bodies of the same attempt reuse it.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._semaphores: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()  # a semaphore serves one event loop
        semaphore = self._semaphores.get(loop)
        if semaphore is None:
            semaphore = asyncio.Semaphore(self.limit)
            self._semaphores = {loop: semaphore}  # a closed loop's is dropped
        return semaphore

    @contextlib.asynccontextmanager
    async def body(self) -> AsyncIterator[None]:
        """Hold a slot while a large body is read (and, in an attempt, until it ends)."""
        held = _ATTEMPT_SLOTS.get()
        if held:
            yield  # this attempt has its slot already
            return
        semaphore = self._semaphore()
        await semaphore.acquire()
        if held is not None:
            held.append(semaphore)  # released when the attempt ends
            yield
            return
        try:
            yield
        finally:
            semaphore.release()

    @staticmethod
    @contextlib.asynccontextmanager
    async def attempt() -> AsyncIterator[None]:
        """The scope of one job attempt: a slot taken inside is kept until it closes."""
        held: list[asyncio.Semaphore] = []
        token = _ATTEMPT_SLOTS.set(held)
        try:
            yield
        finally:
            _ATTEMPT_SLOTS.reset(token)
            for semaphore in held:
                semaphore.release()


def _no_cookies() -> http.cookiejar.CookieJar:
    """A cookie jar that keeps nothing: a provider's cookies (a load balancer's, a bot
    check's) set in the answer to one workspace's call are not sent with the next call,
    which may be another workspace's."""
    return http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


class UpstreamHTTP:
    """An adapter's HTTP client: retried calls, mapped errors, capped downloads."""

    def __init__(
        self,
        provider: str,
        *,
        headers: dict[str, str],
        policy: RetryPolicy,
        connect_timeout: float,
        max_output_bytes: int,
        body_reads: ReadLimit,
        sleep: Sleep = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.body_reads = body_reads
        self.provider = provider
        self.headers = headers
        self.policy = policy
        self.connect_timeout = connect_timeout
        self.max_output_bytes = max_output_bytes
        self.sleep = sleep
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Endpoints parsed once: httpx parses a URL given as text on every request.
        self._urls: LRUCache[str, httpx.URL] = LRUCache(256)

    @property
    def client(self) -> httpx.AsyncClient:
        # A pooled client belongs to one event loop; a CLI run or a test may bring another.
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # The runner's per-provider limit bounds concurrent calls: the aiohttp transport has
            # no pool limit, and neither have the httpx transports of proxies from the
            # environment (httpx's default pool of 100 would queue a slow upstream's calls).
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
            self._client = httpx.AsyncClient(
                transport=self._transport or AiohttpTransport(),
                follow_redirects=True,
                limits=limits,
                cookies=_no_cookies(),
            )
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = None

    def timeout(self, seconds: float) -> httpx.Timeout:
        return httpx.Timeout(
            max(seconds, 0.001), connect=min(self.connect_timeout, max(seconds, 0.001))
        )

    def _wait(self, state: RetryCallState) -> float:
        jitter = wait_random_exponential(
            multiplier=self.policy.backoff_s, max=self.policy.backoff_max_s
        )(state)
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None) or 0.0
        return max(jitter, retry_after)

    def _stop(self, state: RetryCallState) -> bool:
        if stop_after_attempt(self.policy.attempts)(state):
            return True
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        return retry_after is not None and retry_after > self.policy.max_retry_after_s

    async def retrying(self, call: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
        """Run ``call`` until it succeeds or retries are spent; transient errors re-raised.

        The first try runs on its own: tenacity's bookkeeping costs about 0.1 ms a call,
        and almost every call succeeds at once. A transient failure is then handed to
        tenacity as its first attempt, so waits, stops and logs are as if it had run it.
        """
        try:
            return await call()
        except TransientUpstreamError as error:
            first: TransientUpstreamError | None = error
        retryer = AsyncRetrying(
            stop=self._stop,
            wait=self._wait,
            retry=retry_if_exception_type(TransientUpstreamError),
            sleep=self.sleep,
            reraise=True,
            before_sleep=self._log_retry,
        )
        # tenacity's state forms reference cycles that hold whatever the call returned
        # until the cycle collector runs: the response (megabytes of body) is handed out
        # through this list, emptied before returning, so the cycle holds nothing large.
        received: list[httpx.Response] = []

        async def attempt() -> None:
            nonlocal first
            if first is not None:
                failed, first = first, None
                raise failed
            received.append(await call())

        await retryer(attempt)
        return received.pop()

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.info(
            "%s: try %s failed (%s); retrying in %.2fs",
            self.provider,
            state.attempt_number,
            error,
            state.next_action.sleep if state.next_action else 0.0,
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        map_error: ErrorMapper,
        within: float,
        retry: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        """One upstream call with the adapter's auth headers; a 2xx response or our error."""
        headers = {**self.headers, **kwargs.pop("headers", {})}

        parsed = self._urls.get(url)
        if parsed is None:
            parsed = self._urls[url] = httpx.URL(url)

        async def once() -> httpx.Response:
            client = self.client
            outgoing = client.build_request(
                method, parsed, headers=headers, timeout=self.timeout(within), **kwargs
            )
            try:
                async with streaming(client, outgoing) as streamed:
                    declared = streamed.headers.get("content-length", "")
                    small = declared.isdigit() and int(declared) <= LARGE_BODY_BYTES
                    async with contextlib.nullcontext() if small else self.body_reads.body():
                        body = await self._read(streamed, self.max_answer_bytes, "an answer")
                    response = detached(streamed, body)
            except httpx.TimeoutException as exc:
                raise TransientUpstreamError(
                    f"{self.provider} did not answer in time ({type(exc).__name__}).",
                    code="upstream_timeout",
                    extra={"provider": self.provider},
                ) from exc
            except httpx.TransportError as exc:
                raise TransientUpstreamError(
                    f"{self.provider} could not be reached: {exc}.",
                    code="upstream_unavailable",
                    extra={"provider": self.provider},
                ) from exc
            if response.is_success:
                return response
            transient = transient_for(response, self.provider)
            mapped = map_error(response)
            if transient is not None:
                # An adapter may know better (Google's RetryInfo gives the delay in the body).
                if isinstance(mapped, TransientUpstreamError):
                    mapped.retry_after = mapped.retry_after or transient.retry_after
                    raise mapped
                raise transient
            raise mapped

        if not retry:
            return await once()
        return await self.retrying(once)

    async def download(self, url: str, *, within: float) -> tuple[bytes, str]:
        """An output's bytes and content type, fetched now (provider URLs expire), capped."""
        if url.startswith("data:"):
            data, declared = decode_data_uri(url)
            self.check_size(len(data))
            return data, sniff_content_type(data, declared)

        async def once() -> httpx.Response:
            try:
                outgoing = self.client.build_request("GET", url, timeout=self.timeout(within))
                async with streaming(self.client, outgoing) as response:
                    if not response.is_success:
                        transient = transient_for(response, self.provider)
                        if transient is not None:
                            raise transient
                        raise UpstreamError(
                            f"{self.provider}: download failed: HTTP {response.status_code}.",
                            code="upstream_download_failed",
                            extra={"provider": self.provider},
                        )
                    async with self.body_reads.body():
                        body = await self._read(response, self.max_output_bytes, "an output")
                    return detached(response, body)
            except httpx.TimeoutException as exc:
                raise TransientUpstreamError(
                    f"{self.provider}: downloading an output timed out.",
                    code="upstream_timeout",
                    extra={"provider": self.provider},
                ) from exc
            except httpx.TransportError as exc:
                raise TransientUpstreamError(
                    f"{self.provider}: downloading an output failed: {exc}.",
                    code="upstream_unavailable",
                    extra={"provider": self.provider},
                ) from exc

        response = await self.retrying(once)
        declared_type = response.headers.get("content-type", "").split(";")[0].strip() or None
        return response.content, sniff_content_type(response.content, declared_type)

    @property
    def max_answer_bytes(self) -> int:
        """The largest answer read from the provider (decoded): ``ANSWER_OUTPUTS`` outputs
        of the largest size as base64, and a megabyte for the rest."""
        return self.max_output_bytes * 4 // 3 * ANSWER_OUTPUTS + 1024 * 1024

    async def _read(self, response: httpx.Response, limit: int, what: str) -> bytes:
        """A streamed body, decoded, capped at ``limit`` bytes: refused on a larger declared
        length before any of it is read, else cut off as soon as it passes the cap."""
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise self._too_large(what, limit)
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise self._too_large(what, limit)
            chunks.append(chunk)
        return b"".join(chunks)

    def check_size(self, size: int) -> None:
        if size > self.max_output_bytes:
            raise self._too_large("an output", self.max_output_bytes)

    def _too_large(self, what: str, limit: int) -> UpstreamError:
        return UpstreamError(
            f"{self.provider} returned {what} larger than {limit} bytes.",
            code="upstream_output_too_large",
            extra={"provider": self.provider},
        )


class Deadline:
    """Time left of a model's timeout, shared by the calls of one generation."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    @property
    def remaining(self) -> float:
        return max(0.001, self.end - time.monotonic())
