"""The SSRF-safe fetcher: which addresses are refused, and that a refused URL never opens
a socket to the address it names (each refusal is shown next to the same request
allowed, which does reach the server)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence

import httpx
import pytest

from imagegate.errors import ImagegateError
from imagegate.gateway import Gateway
from imagegate.services import fetcher as fetcher_module
from imagegate.services.fetcher import AddressPolicy, Fetcher, URLRefused, refusal_reason
from tests.loopback import loopback_server

PUBLIC = "93.184.216.34"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.1.2.3",
        "0.0.0.0",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "169.254.170.2",
        "168.63.129.16",  # Azure's host address, public but internal
        "100.100.100.200",
        "100.64.0.1",
        "224.0.0.1",
        "255.255.255.255",
        "240.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "ff02::1",
        "fec0::1",
        "::ffff:127.0.0.1",  # mapped
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # compatible
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1::7f00:1",  # local-use NAT64
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    ],
)
def test_forbidden_addresses_are_refused(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address",
    [PUBLIC, "2606:2800:220:1:248:1893:25c8:1946", "64:ff9b::5db8:d822", "2002:5db8:d822::1"],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


def test_an_allowed_host_may_be_private_but_never_metadata() -> None:
    assert refusal_reason(ipaddress.ip_address("10.1.2.3"), allow_private=True) is None
    assert refusal_reason(ipaddress.ip_address("169.254.169.254"), allow_private=True)
    assert refusal_reason(ipaddress.ip_address("64:ff9b::a9fe:a9fe"), allow_private=True)


def resolver(table: dict[str, list[Sequence[str]]]):  # type: ignore[no-untyped-def]
    """A fake DNS: each name answers its answers in turn (the last one repeats)."""
    calls: dict[str, int] = {}

    async def resolve(host: str, port: int) -> Sequence[str]:
        index = calls.get(host, 0)
        calls[host] = index + 1
        answers = table[host]
        return answers[min(index, len(answers) - 1)]

    return resolve


def fetcher(
    *allowed: str, table: dict[str, list[Sequence[str]]] | None = None, **kw: float
) -> Fetcher:
    policy = AddressPolicy(allowed_hosts=allowed, resolver=resolver(table or {}))
    return Fetcher(
        policy,
        max_bytes=int(kw.get("max_bytes", 1024 * 1024)),
        total_timeout=kw.get("timeout", 5.0),
        max_redirects=3,
    )


async def refused(fetch: Fetcher, url: str) -> ImagegateError:
    with pytest.raises(ImagegateError) as caught:
        await fetch.get(url, param="image_url")
    await fetch.aclose()
    assert caught.value.param == "image_url"
    return caught.value


async def test_loopback_is_refused_before_any_connection() -> None:
    async with loopback_server() as server:
        url = server.serve("/a.png", b"png")
        error = await refused(fetcher(), url)
        assert error.code == "url_not_allowed" and error.status_code == 400
        assert "loopback" in error.message
        assert server.accepted == 0
        # the same URL with its host allowed reaches the server: the count is real
        allowed = fetcher("127.0.0.1")
        assert (await allowed.get(url, param="image_url")).data == b"png"
        await allowed.aclose()
        assert server.accepted == 1


async def test_a_name_is_checked_on_every_address_it_resolves_to() -> None:
    async with loopback_server() as server:
        server.serve("/a.png", b"png")
        table = {"mixed.test": [[PUBLIC, "127.0.0.1"]], "inside.test": [["127.0.0.1"]]}
        for host in ("mixed.test", "inside.test"):
            error = await refused(fetcher(table=table), server.url("/a.png", host))
            assert error.code == "url_not_allowed"
        assert server.accepted == 0
        # an operator-allowed name reaches its private address, Host header intact
        allowed = fetcher("inside.test", table=table)
        assert (await allowed.get(server.url("/a.png", "inside.test"), param="p")).data == b"png"
        await allowed.aclose()
        assert server.hosts == [f"inside.test:{server.port}"]


async def test_dns_rebinding_meets_the_check_at_connect_time() -> None:
    async with loopback_server() as server:
        url = server.serve("/a.png", b"png").replace("127.0.0.1", "rebind.test")
        table = {"rebind.test": [[PUBLIC], ["127.0.0.1"]]}
        fetch = fetcher(table=table)
        # the first answer (public) passes a check made ahead of time ...
        assert await fetch.policy.check_url(url, param="image_url") == url
        # ... the connection resolves again and is refused for the address it would use
        error = await refused(fetch, url)
        assert "127.0.0.1" in error.message
        assert server.accepted == 0


async def test_each_redirect_is_checked_again() -> None:
    async with loopback_server() as allowed_server, loopback_server() as target:
        target.serve("/secret", b"metadata")
        hop = allowed_server.url(
            "/redirect?to=" + target.url("/secret", "localhost").replace(":", "%3A", 1)
        )
        table = {"localhost": [["127.0.0.1"]]}
        error = await refused(fetcher("127.0.0.1", table=table), hop)
        assert error.code == "url_not_allowed"
        assert allowed_server.accepted == 1 and target.accepted == 0
        loop = await refused(fetcher("127.0.0.1"), allowed_server.url("/loop"))
        assert "redirects" in loop.message
        scheme = await refused(
            fetcher("127.0.0.1"), allowed_server.url("/redirect?to=file%3A///etc/passwd")
        )
        assert scheme.code == "url_not_allowed"


async def test_only_http_and_https() -> None:
    for url in ("file:///etc/passwd", "ftp://example.com/a.png", "gopher://x", "http://"):
        error = await refused(fetcher(), url)
        assert error.code == "url_not_allowed"


async def test_size_cap_time_limit_and_status() -> None:
    async with loopback_server() as server:
        server.serve("/big.png", b"x" * 4096)
        big = await refused(fetcher("127.0.0.1", max_bytes=1000), server.url("/big.png"))
        assert (big.code, big.status_code) == ("file_too_large", 413)
        chunked = await refused(
            fetcher("127.0.0.1", max_bytes=100_000), server.url("/chunked?bytes=300000")
        )
        assert chunked.code == "file_too_large"
        slow = await refused(fetcher("127.0.0.1", timeout=0.3), server.url("/slow?seconds=3"))
        assert slow.code == "fetch_failed" and "0.3s" in slow.message
        missing = await refused(fetcher("127.0.0.1"), server.url("/nothing"))
        assert missing.code == "fetch_failed" and "404" in missing.message


async def test_check_url_refuses_what_the_connection_would() -> None:
    policy = AddressPolicy(resolver=resolver({"meta.test": [["169.254.169.254"]]}))
    for url in (
        "http://meta.test/latest",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[2002:7f00:1::1]/",
    ):
        with pytest.raises(URLRefused):
            await policy.check_url(url, param="webhook_url")


async def test_webhooks_are_sent_through_the_pinned_connection(
    client: httpx.AsyncClient, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with loopback_server() as receiver:
        # public for the check at submit and the one before sending, loopback after that
        rebinding = resolver({"hooks.test": [[PUBLIC], [PUBLIC], ["127.0.0.1"]]})
        monkeypatch.setattr(fetcher_module, "system_resolver", rebinding)
        gateway.webhooks.policy.resolver = rebinding
        response = await client.post(
            "/v1/jobs/mock-image",
            json={"prompt": "a heron", "webhook_url": receiver.url("/hook", "hooks.test")},
            headers={"Prefer": "wait=10"},
        )
        assert response.status_code == 200, response.text
        for _ in range(100):  # this call, or the gateway's own sender, makes the attempt
            await gateway.webhooks.deliver_due()
            log = (await client.get(f"/v1/jobs/{response.json()['id']}/webhooks")).json()["data"]
            if log and log[0]["attempts"] >= 1:
                break
            await asyncio.sleep(0.05)
        assert "127.0.0.1" in log[0]["last_error"]
        assert log[0]["status"] == "pending" and log[0]["last_status_code"] is None
        assert receiver.accepted == 0


async def test_webhook_urls_in_ipv6_forms_of_forbidden_addresses_are_refused(
    client: httpx.AsyncClient,
) -> None:
    for host in ("[64:ff9b::7f00:1]", "[2002:a9fe:a9fe::1]", "[::ffff:169.254.169.254]"):
        response = await client.post(
            "/v1/jobs/mock-image",
            json={"prompt": "a heron", "webhook_url": f"http://{host}/hook"},
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == "webhook_url"
