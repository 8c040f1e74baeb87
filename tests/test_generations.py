"""POST /v1/images/generations as an app sees it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import sqlite3
import time

import httpx
import pytest
from PIL import Image

from imagegate.app import create_app
from imagegate.config import Settings
from imagegate.gateway import Gateway
from tests.billing_support import credits, grant, running_gateway
from tests.conftest import on_postgres
from tests.helpers import assert_error, decode_image

GEN = "/v1/images/generations"


async def test_default_model_makes_a_1024_png(client: httpx.AsyncClient) -> None:
    response = await client.post(GEN, json={"prompt": "a lighthouse at dusk"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "mock-image"
    assert (body["width"], body["height"]) == (1024, 1024)
    assert body["job_id"].startswith("job_")
    assert isinstance(body["created"], int)
    [item] = body["data"]
    image = decode_image(item["b64_json"])
    assert image.format == "PNG"
    assert image.size == (1024, 1024)
    assert item["revised_prompt"] == "a lighthouse at dusk"


@pytest.mark.parametrize(
    ("size", "expected"),
    [("256x256", (256, 256)), ("1536x1024", (1536, 1024)), ("1024x1792", (1024, 1792))],
)
async def test_size_is_honoured(
    client: httpx.AsyncClient, size: str, expected: tuple[int, int]
) -> None:
    response = await client.post(GEN, json={"prompt": "p", "size": size, "model": "mock-image"})
    assert response.status_code == 200, response.text
    assert decode_image(response.json()["data"][0]["b64_json"]).size == expected


@pytest.mark.parametrize(("fmt", "pil"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
async def test_output_format_is_honoured(client: httpx.AsyncClient, fmt: str, pil: str) -> None:
    response = await client.post(GEN, json={"prompt": "p", "output_format": fmt, "size": "512x512"})
    assert response.status_code == 200, response.text
    item = response.json()["data"][0]
    assert decode_image(item["b64_json"]).format == pil
    assert item["content_type"] == f"image/{fmt}"


async def test_n_images_differ_from_each_other(client: httpx.AsyncClient) -> None:
    response = await client.post(GEN, json={"prompt": "p", "n": 3, "size": "256x256"})
    data = response.json()["data"]
    assert len(data) == 3
    assert len({item["b64_json"] for item in data}) == 3


async def test_same_prompt_and_seed_give_the_same_bytes(client: httpx.AsyncClient) -> None:
    body = {"prompt": "a red fox", "seed": 42, "size": "512x512"}
    first = (await client.post(GEN, json=body)).json()["data"][0]["b64_json"]
    second = (await client.post(GEN, json=body)).json()["data"][0]["b64_json"]
    other = (await client.post(GEN, json={**body, "seed": 43})).json()["data"][0]["b64_json"]
    assert first == second
    assert first != other


async def test_url_is_signed_and_fetchable_without_a_key(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    response = await client.post(
        GEN, json={"prompt": "p", "response_format": "url", "size": "512x512"}
    )
    assert response.status_code == 200, response.text
    url = response.json()["data"][0]["url"]
    assert "b64_json" not in response.json()["data"][0]
    anonymous = httpx.AsyncClient(transport=client._transport, base_url="http://testserver")
    async with anonymous:
        fetched = await anonymous.get(url)
        assert fetched.status_code == 200
        assert fetched.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(fetched.content)).size == (512, 512)
        tampered = url.replace("signature=", "signature=A")
        assert_error(await anonymous.get(tampered), 403, "invalid_signature")
        other_file = await client.post(
            GEN, json={"prompt": "q", "response_format": "url", "size": "256x256"}
        )
        other_id = other_file.json()["data"][0]["file_id"]
        first_id = response.json()["data"][0]["file_id"]
        assert_error(await anonymous.get(url.replace(first_id, other_id)), 403, "invalid_signature")


async def test_url_expires(client: httpx.AsyncClient, gateway: Gateway) -> None:
    response = await client.post(
        GEN, json={"prompt": "p", "response_format": "url", "size": "256x256"}
    )
    url = response.json()["data"][0]["url"]
    assert (await client.get(url)).status_code == 200
    gateway.signer.clock = lambda: time.time() + 3500  # later within the hour
    assert (await client.get(url)).status_code == 200
    gateway.signer.clock = lambda: time.time() + 3601  # past the hour
    assert_error(await client.get(url), 403, "link_expired")


async def test_vector_model_returns_svg(client: httpx.AsyncClient) -> None:
    response = await client.post(
        GEN, json={"prompt": "a logo", "model": "mock-vector", "response_format": "url"}
    )
    assert response.status_code == 200, response.text
    fetched = await client.get(response.json()["data"][0]["url"])
    assert fetched.headers["content-type"].startswith("image/svg+xml")
    assert fetched.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in fetched.headers["content-security-policy"]
    assert fetched.headers["content-disposition"] == "attachment"
    assert fetched.content.startswith(b"<svg")
    b64 = await client.post(
        GEN, json={"prompt": "a logo", "model": "mock-svg", "size": "1820x1024"}
    )
    svg = base64.b64decode(b64.json()["data"][0]["b64_json"])
    assert b'width="1820" height="1024"' in svg


async def test_the_generation_is_a_persisted_job(client: httpx.AsyncClient) -> None:
    response = await client.post(GEN, json={"prompt": "p", "size": "256x256", "n": 2})
    job = (await client.get(f"/v1/jobs/{response.json()['job_id']}")).json()
    assert job["status"] == "succeeded"
    assert job["attempt"] == 1
    assert [o["width"] for o in job["outputs"]] == [256, 256]
    assert all(o["url"].startswith("http://testserver/v1/files/") for o in job["outputs"])


async def test_prefer_respond_async_returns_202_and_a_job(client: httpx.AsyncClient) -> None:
    response = await client.post(
        GEN, json={"prompt": "p", "size": "256x256"}, headers={"Prefer": "respond-async"}
    )
    assert response.status_code == 202
    job = response.json()
    assert job["status"] in ("queued", "running", "succeeded")
    for _ in range(100):
        job = (await client.get(f"/v1/jobs/{job['id']}")).json()
        if job["status"] == "succeeded":
            break
        await asyncio.sleep(0.05)
    assert job["status"] == "succeeded"


# --- bad input: a clear 4xx in the one error shape, never a 500 ---------------------------


async def test_unknown_model_is_404(client: httpx.AsyncClient) -> None:
    assert_error(
        await client.post(GEN, json={"prompt": "p", "model": "dall-e-9"}),
        404,
        "model_not_found",
        "model",
    )


async def test_unsupported_size_names_size_and_lists_the_supported(
    client: httpx.AsyncClient,
) -> None:
    error = assert_error(
        await client.post(GEN, json={"prompt": "p", "size": "13x7"}),
        400,
        "invalid_parameter",
        "size",
    )
    assert "1024x1024" in error["message"]
    assert "1024x1024" in error["supported_sizes"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({}, "prompt"),
        ({"prompt": 5}, "prompt"),
        ({"prompt": "p", "n": 0}, "n"),
        ({"prompt": "p", "n": 11}, "n"),
        ({"prompt": "p", "n": "2"}, "n"),
        ({"prompt": "p", "n": 1.5}, "n"),
        ({"prompt": "p", "size": "big"}, "size"),
        ({"prompt": "p", "size": 1024}, "size"),
        ({"prompt": "p", "output_format": "gif"}, "output_format"),
        ({"prompt": "p", "quality": "ultra"}, "quality"),
        ({"prompt": "p", "seed": "abc"}, "seed"),
        ({"prompt": "p", "response_format": "png"}, "response_format"),
        ({"prompt": "p", "colour": "red"}, "colour"),
        ({"prompt": "p", "style": "vivid"}, "style"),
        ({"prompt": "p", "model": 7}, "model"),
        ({"prompt": "p", "mock": "yes"}, "mock"),
        ({"prompt": "p", "format": "square"}, "format"),
        ({"prompt": "x" * 32001}, "prompt"),
    ],
)
async def test_bad_parameters_are_400_naming_the_param(
    client: httpx.AsyncClient, body: dict[str, object], param: str
) -> None:
    assert_error(await client.post(GEN, json=body), 400, "invalid_parameter", param)


async def test_n_above_the_maximum_says_what_is_allowed(client: httpx.AsyncClient) -> None:
    error = assert_error(
        await client.post(GEN, json={"prompt": "p", "n": 11}), 400, "invalid_parameter", "n"
    )
    assert "10" in error["message"]


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"prompt"', b""])
async def test_a_body_that_is_not_a_json_object_is_400(
    client: httpx.AsyncClient, raw: bytes
) -> None:
    response = await client.post(GEN, content=raw, headers={"content-type": "application/json"})
    assert_error(response, 400, "invalid_json")


async def test_an_oversized_body_is_413(client: httpx.AsyncClient, gateway: Gateway) -> None:
    big = b'{"prompt": "' + b"x" * (gateway.settings.max_body_bytes + 10) + b'"}'
    assert_error(await client.post(GEN, content=big), 413, "payload_too_large")


async def test_an_oversized_chunked_body_is_413(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"prompt": "'
        for _ in range(gateway.settings.max_body_bytes // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    assert_error(await client.post(GEN, content=chunks()), 413, "payload_too_large")


async def test_a_client_that_leaves_before_its_body_is_read_is_no_server_error(
    client: httpx.AsyncClient, gateway: Gateway, admin_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(gateway.settings, gateway=gateway)
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": GEN, "raw_path": GEN.encode(), "query_string": b"",
        "root_path": "", "server": ("testserver", 80), "client": ("127.0.0.1", 50000),
        "headers": [
            (b"authorization", f"Bearer {admin_key}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", b"40"),
        ],
    }  # fmt: skip
    with caplog.at_level("INFO"):
        await app(scope, receive, send)  # nothing escapes to the server
    assert sent[0]["status"] == 499
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert any("client left" in r.getMessage() for r in caplog.records)
    listed = await client.get("/v1/jobs")
    assert listed.json()["data"] == []


async def test_a_model_that_is_not_enabled_is_403(client: httpx.AsyncClient) -> None:
    error = assert_error(
        await client.post(GEN, json={"prompt": "p", "model": "flux_schnell"}),
        403,
        "model_not_enabled",
        "model",
    )
    assert "mock-image" in error["enabled_models"]


@pytest.mark.parametrize("header", [None, "Bearer ig_wrong", "Basic abc", "Bearer "])
async def test_without_a_valid_key_every_endpoint_is_401(
    client: httpx.AsyncClient, header: str | None
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    bare = httpx.AsyncClient(
        transport=client._transport, base_url="http://testserver", headers=headers
    )
    async with bare:
        for method, path in [
            ("POST", GEN),
            ("GET", "/v1/models"),
            ("GET", "/v1/models/mock-image"),
            ("GET", "/v1/jobs/job_x"),
            ("GET", "/v1/files/file_x/content"),
        ]:
            response = await bare.request(
                method, path, json={"prompt": "p"} if method == "POST" else None
            )
            assert response.status_code == 401, (path, response.text)
            assert response.json()["error"]["type"] == "authentication_error"


async def test_unknown_paths_and_methods_keep_the_error_shape(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v1/nothing-here"), 404, "not_found")
    assert_error(await client.get(GEN), 405, "method_not_allowed")


async def test_job_of_unknown_id_is_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v1/jobs/job_nope"), 404, "job_not_found")


async def test_an_exhausted_database_pool_is_503_not_500(settings: Settings) -> None:
    settings.database_pool_size = 1
    settings.database_pool_timeout_seconds = 0.2
    gateway = Gateway(settings, run_workers=False)
    app = create_app(settings, gateway=gateway)
    async with app.router.lifespan_context(app):
        headers = {"Authorization": f"Bearer {gateway.first_admin_key}"}
        transport = httpx.ASGITransport(app=app)
        # take every reader connection: one on SQLite, pool plus overflow on PostgreSQL
        holders = 1 if gateway.db.is_sqlite else 2
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(holders):
                held = await stack.enter_async_context(gateway.db.read_session())
                await held.connection()
            async with httpx.AsyncClient(
                transport=transport, base_url="http://t", headers=headers
            ) as c:
                response = await c.get("/v1/models")
        error = assert_error(response, 503, "server_busy")
        assert error["type"] == "server_error"
        assert response.headers["retry-after"] == "1"


@pytest.mark.skipif(on_postgres(), reason="SQLite's write lock")
async def test_a_sqlite_write_lock_that_stays_taken_is_503_and_charges_nothing(
    settings: Settings,
) -> None:
    async with running_gateway(settings, run_workers=False) as (c, gateway):
        await grant(c, 10)
        before = await credits(c)
        assert gateway.db.writer is not None
        gateway.db.writer.lock_timeout = 0.2
        holder = sqlite3.connect(gateway.db.writer.path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process writing, and writing on
        try:
            response = await c.post(GEN, json={"model": "paid-image", "prompt": "p"})
        finally:
            holder.close()
        error = assert_error(response, 503, "server_busy")
        assert response.headers["retry-after"] == "1"
        assert "locked" not in error["message"]  # no internals in the answer
        assert await credits(c) == before
        assert (await c.get("/v1/jobs")).json()["data"] == []


@pytest.mark.parametrize(
    ("method", "path", "body", "param"),
    [
        ("POST", GEN, {"prompt": "a\u0000b"}, "prompt"),
        (
            "POST",
            "/v1/jobs/mock-image",
            {"prompt": "p", "idempotency_key": "k\u0000"},
            "idempotency_key",
        ),
        ("POST", "/v1/admin/members", {"name": "a\u0000"}, "name"),
        ("POST", GEN, {"prompt": "p", "reference_files": ["file_\u0000"]}, "reference_files[0]"),
        ("GET", "/v1/jobs?after=%00", None, None),
        ("GET", "/v1/jobs/%00", None, None),
        ("GET", "/v1/files/x%00/content?expires=1&kid=a&signature=b", None, None),
    ],
)
async def test_nul_characters_are_400_on_every_database(
    client: httpx.AsyncClient, method: str, path: str, body: object, param: str | None
) -> None:
    response = await client.request(method, path, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
