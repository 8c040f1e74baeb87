"""The one way the gateway reaches a URL that a caller gave it: image sources and webhooks.

Safe on the public internet:

- only ``http`` and ``https``;
- every address a host name resolves to is checked, and the connection goes to an address
  that was checked (the check runs inside the connect, on the addresses it connects to, so
  a name cannot resolve to a public address for the check and a private one for the
  connection);
- refused: loopback, private, link-local, unique-local, multicast, reserved, the cloud
  metadata addresses, and IPv4 addresses embedded in IPv6 (mapped, compatible, NAT64
  ``64:ff9b::/96`` and ``64:ff9b:1::/48``, 6to4 ``2002::/16``, Teredo ``2001::/32``) whose
  IPv4 address would be refused;
- each redirect (a few at most) is checked again, on its own connection;
- size cap, connect and total timeouts.

An operator may allow named hosts on private addresses (an internal asset server) with
``IMAGEGATE_FETCH_ALLOWED_HOSTS``; metadata addresses stay refused even then.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from imagegate.errors import InvalidParameter

# Resolves a host name to its addresses (tests replace it to play DNS).
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud instance metadata and host services: refused whatever else is allowed.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.253",  # AWS DNS
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure host (wireserver), a public address
        "192.0.0.192",  # Oracle Cloud
    )
)
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class URLRefused(InvalidParameter):
    """A URL the gateway will not fetch (scheme, address, redirect)."""

    code = "url_not_allowed"


class FetchFailed(InvalidParameter):
    """The URL was allowed but did not give what was asked (status, size, time)."""

    code = "fetch_failed"


class _AddressRefused(Exception):
    """Raised inside a connect; turned into :class:`URLRefused` with the parameter's name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4, Teredo)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client's address
    if ip in NAT64_WELL_KNOWN or ip in IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refusal_reason(ip: IPAddress, *, allow_private: bool = False) -> str | None:
    """Why the gateway will not connect to ``ip`` (None: it may).

    ``allow_private``: the operator allowed this host; only metadata addresses and
    unusable ones (unspecified, multicast) stay refused.
    """
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_unspecified or ip.is_multicast:
        return "not a unicast address"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in NAT64_LOCAL:
            return "a local-use NAT64 address"
        inner = embedded_ipv4(ip)
        if inner is not None:
            why = refusal_reason(inner, allow_private=allow_private)
            if why is not None:
                return f"an IPv6 form of {inner} ({why})"
            if ip in NAT64_WELL_KNOWN:
                return None  # DNS64 on an IPv6-only network: a public IPv4 host
    if allow_private:
        return None
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private or ip.is_reserved or not ip.is_global:
        return "a private or reserved address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "a site-local address"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class AddressPolicy:
    """Which hosts and addresses may be reached, and the resolution that decides it."""

    def __init__(
        self,
        *,
        allowed_hosts: Iterable[str] = (),
        allow_loopback: bool = False,
        resolver: Resolver | None = None,
    ) -> None:
        self.allowed_hosts = frozenset(h.strip().lower().rstrip(".") for h in allowed_hosts if h)
        self.allow_loopback = allow_loopback
        self.resolver: Resolver = resolver or system_resolver

    def _reason(self, host: str, ip: IPAddress) -> str | None:
        allowed = host.lower().rstrip(".") in self.allowed_hosts
        reason = refusal_reason(ip, allow_private=allowed)
        if reason is not None and self.allow_loopback and ip.is_loopback:
            return None
        return reason

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses of ``host``, every one checked; refused if any one is refused."""
        host = host.strip("[]")
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            found = [str(literal)]
        else:
            try:
                found = list(await self.resolver(host, port))
            except (OSError, UnicodeError, ValueError):
                raise _AddressRefused(f"the host {host!r} does not resolve") from None
        if not found:
            raise _AddressRefused(f"the host {host!r} does not resolve")
        for address in found:
            reason = self._reason(host, ipaddress.ip_address(address))
            if reason is not None:
                raise _AddressRefused(f"{host!r} resolves to {address}, {reason}")
        return found

    async def check_url(self, url: Any, *, param: str) -> str:
        """``url`` if it is an http(s) URL whose host resolves only to allowed addresses."""
        host, port = split_url(url, param=param)
        try:
            await self.addresses(host, port)
        except _AddressRefused as exc:
            raise URLRefused(
                f"Invalid value for {param!r}: {exc.reason}; the gateway reaches only "
                "public addresses.",
                param=param,
            ) from None
        assert isinstance(url, str)
        return url


def split_url(url: Any, *, param: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL, or a 400 naming ``param``."""
    if not isinstance(url, str) or len(url) > 4096:
        raise URLRefused(f"Invalid value for {param!r}: expected an http(s) URL.", param=param)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a malformed host or port ("http://[::1", ":99999")
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        shown = url if len(url) <= 80 else url[:77] + "..."
        raise URLRefused(
            f"Invalid value for {param!r}: {shown!r} is not an http(s) URL.", param=param
        )
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the policy checked, resolved once per connection."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self.policy.addresses(host, port)
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise _AddressRefused("unix sockets are not reachable")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def pinned_client(
    policy: AddressPolicy, *, connect_timeout: float, timeout: float
) -> httpx.AsyncClient:
    """An httpx client whose every connection goes through ``policy``; no proxies, no
    redirects followed by itself (the caller checks each one)."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx builds its pool without a way to pass a network backend: put ours in its place.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl.create_default_context(),
        max_connections=100,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=_PinnedBackend(policy),
    )
    return httpx.AsyncClient(
        transport=transport,
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
    )


@dataclass(frozen=True, slots=True)
class Fetched:
    data: bytes
    content_type: str | None
    url: str


class Fetcher:
    """GETs of caller-given URLs (bounded) and POSTs of webhooks, through one policy."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        max_bytes: int,
        connect_timeout: float = 5.0,
        total_timeout: float = 30.0,
        max_redirects: int = 3,
    ) -> None:
        self.policy = policy
        self.max_bytes = max_bytes
        self.connect_timeout = connect_timeout
        self.total_timeout = total_timeout
        self.max_redirects = max_redirects
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = pinned_client(
                self.policy, connect_timeout=self.connect_timeout, timeout=self.total_timeout
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _refused(self, param: str, reason: str) -> URLRefused:
        return URLRefused(
            f"Invalid value for {param!r}: {reason}; the gateway fetches only from public "
            "addresses.",
            param=param,
        )

    def _failed(self, param: str, reason: str) -> FetchFailed:
        return FetchFailed(f"Invalid value for {param!r}: {reason}.", param=param)

    async def get(self, url: str, *, param: str, max_bytes: int | None = None) -> Fetched:
        """The body at ``url`` (following a few checked redirects), at most ``max_bytes``."""
        limit = max_bytes or self.max_bytes
        split_url(url, param=param)
        try:
            async with asyncio.timeout(self.total_timeout):
                return await self._get(url, param, limit)
        except TimeoutError:
            raise self._failed(
                param, f"the image did not arrive within {self.total_timeout:g}s"
            ) from None
        except _AddressRefused as exc:
            raise self._refused(param, exc.reason) from None

    async def _get(self, url: str, param: str, limit: int) -> Fetched:
        # identity: the size cap counts the bytes as they arrive, never an inflated body.
        headers = {
            "user-agent": "imagegate-fetch",
            "accept": "image/*",
            "accept-encoding": "identity",
        }
        for _ in range(self.max_redirects + 1):
            split_url(url, param=param)
            try:
                async with self.client.stream("GET", url, headers=headers) as response:
                    if response.status_code in REDIRECTS and "location" in response.headers:
                        url = str(response.url.join(response.headers["location"]))
                        continue
                    if response.status_code != 200:
                        raise self._failed(
                            param, f"fetching {url!r} answered HTTP {response.status_code}"
                        )
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > limit:
                        raise self._too_big(param, limit)
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in response.aiter_raw():
                        size += len(chunk)
                        if size > limit:
                            raise self._too_big(param, limit)
                        chunks.append(chunk)
                    return Fetched(b"".join(chunks), response.headers.get("content-type"), url)
            except httpx.TimeoutException:
                raise self._failed(param, f"fetching {url!r} timed out") from None
            except httpx.HTTPError as exc:
                raise self._failed(
                    param, f"fetching {url!r} failed ({type(exc).__name__})"
                ) from None
        raise self._refused(param, f"more than {self.max_redirects} redirects")

    def _too_big(self, param: str, limit: int) -> FetchFailed:
        return FetchFailed(
            f"Invalid value for {param!r}: the image is larger than {limit:,} bytes.",
            code="file_too_large",
            param=param,
            status_code=413,
        )

    async def post(
        self, url: str, *, content: str | bytes, headers: dict[str, str], timeout: float
    ) -> httpx.Response:
        """POST (a webhook): no redirects, the address checked on the connection itself."""
        try:
            return await self.client.post(url, content=content, headers=headers, timeout=timeout)
        except _AddressRefused as exc:
            raise URLRefused(
                f"webhooks go only to public addresses: {exc.reason}.", param="webhook_url"
            ) from None
