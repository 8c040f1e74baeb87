"""The Files API and output retention, as a user sees them, on both blob stores."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from PIL import Image
from sqlalchemy import select, update

from imagegate.blobs import BlobNotFound
from imagegate.config import Settings
from imagegate.gateway import Gateway
from imagegate.services import files
from imagegate.store.tables import File, utcnow
from tests.blob_fixtures import BACKENDS, backend_settings, create_bucket, s3_endpoint  # noqa: F401
from tests.files_helpers import anonymous, image_bytes, other_workspace
from tests.helpers import assert_error, decode_image

GEN = "/v1/images/generations"


@pytest.fixture(params=BACKENDS)
async def settings(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> Settings:
    settings = backend_settings(request, tmp_path, database_url)
    await create_bucket(settings)
    return settings


async def generate_url(client: httpx.AsyncClient, n: int = 1) -> dict[str, object]:
    response = await client.post(
        GEN, json={"prompt": "a kite", "size": "256x256", "response_format": "url", "n": n}
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def upload(
    client: httpx.AsyncClient,
    data: bytes,
    name: str = "photo.png",
    content_type: str | None = "image/png",
    purpose: str = "user_data",
) -> httpx.Response:
    part = (name, data, content_type) if content_type else (name, data)
    return await client.post("/v1/files", files={"file": part}, data={"purpose": purpose})


# --- outputs: signed URLs, expiry, fresh links ------------------------------------------


async def test_a_url_expires_and_the_job_gives_a_fresh_one(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    gateway.settings.url_ttl_seconds = 1
    body = await generate_url(client)
    item = body["data"][0]  # type: ignore[index]
    async with anonymous(client) as bare:
        first = await bare.get(item["url"])
        assert first.status_code == 200
        assert Image.open(io.BytesIO(first.content)).size == (256, 256)
        expires = int(item["url"].split("expires=")[1].split("&")[0])
        await asyncio.sleep(max(0.0, expires + 1 - time.time()))  # just past the link's life
        assert_error(await bare.get(item["url"]), 403, "link_expired")
        job = (await client.get(f"/v1/jobs/{body['job_id']}")).json()
        [output] = job["outputs"]
        assert output["file_id"] == item["file_id"]
        assert output["url"] != item["url"]
        fresh = await bare.get(output["url"])
        assert fresh.status_code == 200
        assert fresh.content == first.content


async def test_outputs_are_files_with_metadata_and_a_retention(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    body = await generate_url(client)
    item = body["data"][0]  # type: ignore[index]
    meta = (await client.get(f"/v1/files/{item['file_id']}")).json()
    content = (await client.get(f"/v1/files/{item['file_id']}/content")).content
    assert meta["id"] == item["file_id"]
    assert meta["object"] == "file"
    assert meta["purpose"] == "output"
    assert meta["job_id"] == body["job_id"]
    assert (meta["width"], meta["height"]) == (256, 256)
    assert meta["content_type"] == "image/png"
    assert meta["bytes"] == len(content)
    assert meta["sha256"] == hashlib.sha256(content).hexdigest()
    retention = gateway.settings.output_retention_seconds
    assert abs(meta["expires_at"] - meta["created_at"] - retention) <= 2
    assert meta["url_expires_at"] <= meta["expires_at"]


async def test_retention_purges_outputs_and_their_blobs_but_not_kept_files(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    body = await generate_url(client, n=2)
    kept_id, dropped_id = (item["file_id"] for item in body["data"])  # type: ignore[attr-defined]
    kept = await client.post("/v1/files", json={"file_id": kept_id})
    assert kept.status_code == 200, kept.text
    assert kept.json()["id"] == kept_id
    assert kept.json()["expires_at"] is None
    assert kept.json()["purpose"] == "user_data"
    async with gateway.db.read_session() as session:
        dropped_key = (
            await session.execute(select(File.blob_key).where(File.id == dropped_id))
        ).scalar_one()

    later = utcnow() + timedelta(seconds=gateway.settings.output_retention_seconds + 1)
    assert await files.purge_expired(gateway.db, gateway.blobs, now=later) == 1

    assert_error(await client.get(f"/v1/files/{dropped_id}"), 404, "file_not_found")
    assert_error(await client.get(f"/v1/files/{dropped_id}/content"), 404, "file_not_found")
    with pytest.raises(BlobNotFound):
        await gateway.blobs.read(dropped_key)
    job = (await client.get(f"/v1/jobs/{body['job_id']}")).json()
    assert [o["file_id"] for o in job["outputs"]] == [kept_id]
    fetched = await client.get(f"/v1/files/{kept_id}/content")
    assert fetched.status_code == 200
    assert Image.open(io.BytesIO(fetched.content)).size == (256, 256)


async def test_an_expired_output_is_gone_before_the_sweep_runs(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    body = await generate_url(client)
    file_id = body["data"][0]["file_id"]  # type: ignore[index]
    async with gateway.db.session() as session:
        file = await session.get(File, file_id)
        assert file is not None
        file.expires_at = utcnow() - timedelta(seconds=1)
    assert_error(await client.get(f"/v1/files/{file_id}"), 404, "file_not_found")
    assert_error(await client.post("/v1/files", json={"file_id": file_id}), 404, "file_not_found")
    assert file_id not in [f["id"] for f in (await client.get("/v1/files")).json()["data"]]


async def test_the_background_sweep_runs_on_its_own(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    body = await generate_url(client)
    file_id = body["data"][0]["file_id"]  # type: ignore[index]
    async with gateway.db.session() as session:
        file = await session.get(File, file_id)
        assert file is not None
        file.expires_at = utcnow() - timedelta(seconds=1)
    gateway.settings.retention_sweep_seconds = 0.05
    await gateway.stop_maintenance()
    gateway.start_maintenance()
    for _ in range(200):
        async with gateway.db.read_session() as session:
            if await session.get(File, file_id) is None:
                break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the sweep did not purge the expired output")


# --- uploads, metadata, listing, deletion -----------------------------------------------


async def test_upload_then_fetch_list_reference_and_delete(client: httpx.AsyncClient) -> None:
    data = image_bytes("PNG", (64, 48), "red")
    response = await upload(client, data, purpose="reference")
    assert response.status_code == 201, response.text
    meta = response.json()
    assert meta["id"].startswith("file_")
    assert meta["purpose"] == "reference"
    assert meta["filename"] == "photo.png"
    assert (meta["width"], meta["height"], meta["bytes"]) == (64, 48, len(data))
    assert meta["content_type"] == "image/png"
    assert meta["sha256"] == hashlib.sha256(data).hexdigest()
    assert meta["expires_at"] is None

    assert (await client.get(f"/v1/files/{meta['id']}")).json()["sha256"] == meta["sha256"]
    content = await client.get(f"/v1/files/{meta['id']}/content")
    assert content.content == data
    assert content.headers["content-type"] == "image/png"
    async with anonymous(client) as bare:
        assert (await bare.get(meta["url"])).content == data
    listed = (await client.get("/v1/files", params={"purpose": "reference"})).json()
    assert [f["id"] for f in listed["data"]] == [meta["id"]]

    generated = await client.post(
        GEN, json={"prompt": "p", "size": "512x512", "reference_files": [meta["id"]]}
    )
    assert generated.status_code == 200, generated.text
    image = decode_image(generated.json()["data"][0]["b64_json"]).convert("RGB")
    # The mock provider pastes the reference in the top right corner.
    assert image.getpixel((512 - 20, 20)) == (255, 0, 0)

    deleted = await client.delete(f"/v1/files/{meta['id']}")
    assert deleted.json() == {"id": meta["id"], "object": "file", "deleted": True}
    assert_error(await client.get(f"/v1/files/{meta['id']}"), 404, "file_not_found")
    assert_error(await client.get(f"/v1/files/{meta['id']}/content"), 404, "file_not_found")
    assert_error(await client.delete(f"/v1/files/{meta['id']}"), 404, "file_not_found")
    assert_error(
        await client.post(GEN, json={"prompt": "p", "reference_files": [meta["id"]]}),
        404,
        "file_not_found",
        "reference_files",
    )


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"prompt": "p", "reference_files": "file_x"}, 400, "invalid_parameter", "reference_files"),
        (
            {"prompt": "p", "reference_files": [1]},
            400,
            "invalid_image_source",
            "reference_files[0]",
        ),
        (
            {"prompt": "p", "reference_files": ["file_nope"]},
            404,
            "file_not_found",
            "reference_files",
        ),
        (
            {"prompt": "p", "model": "mock-vector", "reference_files": ["file_x"]},
            400,
            "invalid_parameter",
            "reference_files",
        ),
    ],
)
async def test_bad_references_are_4xx_naming_the_param(
    client: httpx.AsyncClient, body: dict[str, object], status: int, code: str, param: str
) -> None:
    assert_error(await client.post(GEN, json=body), status, code, param)


async def test_listing_pages_with_a_cursor(client: httpx.AsyncClient) -> None:
    await generate_url(client, n=5)
    seen: list[str] = []
    after = None
    for _ in range(3):
        params: dict[str, str | int] = {"limit": 2, **({"after": after} if after else {})}
        page = (await client.get("/v1/files", params=params)).json()
        assert page["object"] == "list"
        seen += [f["id"] for f in page["data"]]
        after = page["last_id"]
        assert page["has_more"] == (len(seen) < 5)
    assert len(seen) == len(set(seen)) == 5
    assert seen == sorted(seen, reverse=True)
    oldest_first = (await client.get("/v1/files", params={"order": "asc", "limit": 100})).json()
    assert [f["id"] for f in oldest_first["data"]] == sorted(seen)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"purpose": "secret"}, "purpose"),
        ({"order": "up"}, "order"),
        ({"after": "zzz"}, "after"),
    ],
)
async def test_bad_list_parameters_are_400(
    client: httpx.AsyncClient, params: dict[str, object], param: str
) -> None:
    assert_error(await client.get("/v1/files", params=params), 400, "invalid_parameter", param)


async def test_every_lookup_is_scoped_to_the_workspace(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    mine = (await upload(client, image_bytes())).json()
    output = (await generate_url(client))["data"][0]["file_id"]  # type: ignore[index]
    async with other_workspace(client, gateway) as other:
        assert_error(await other.get(f"/v1/files/{mine['id']}"), 404, "file_not_found")
        assert_error(await other.get(f"/v1/files/{mine['id']}/content"), 404, "file_not_found")
        assert_error(await other.delete(f"/v1/files/{mine['id']}"), 404, "file_not_found")
        assert_error(await other.post("/v1/files", json={"file_id": output}), 404, "file_not_found")
        assert_error(
            await other.post(GEN, json={"prompt": "p", "reference_files": [mine["id"]]}),
            404,
            "file_not_found",
        )
        assert (await other.get("/v1/files")).json()["data"] == []
    assert (await client.get(f"/v1/files/{mine['id']}")).status_code == 200


async def test_a_reference_past_its_expiry_is_404_naming_it(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    live = (await upload(client, image_bytes())).json()
    gone = (await upload(client, image_bytes())).json()
    async with gateway.db.session() as session:
        await session.execute(
            update(File).where(File.id == gone["id"]).values(expires_at=utcnow() - timedelta(1))
        )
    body = {"prompt": "p", "size": "512x512", "reference_files": [live["id"], gone["id"]]}
    error = assert_error(
        await client.post(GEN, json=body), 404, "file_not_found", "reference_files"
    )
    assert gone["id"] in error["message"] and live["id"] not in error["message"]
    body["reference_files"] = [live["id"], live["id"]]
    assert (await client.post(GEN, json=body)).status_code == 200


async def test_content_needs_a_key_or_a_valid_signature(client: httpx.AsyncClient) -> None:
    meta = (await upload(client, image_bytes())).json()
    base = f"/v1/files/{meta['id']}/content"
    async with anonymous(client) as bare:
        assert_error(await bare.get(base), 401, "missing_api_key")
        assert_error(
            await bare.get(base + "?expires=1&kid=x&signature=y"), 403, "invalid_signature"
        )
        assert_error(await bare.get(base + "?signature=y"), 403, "invalid_signature")
        changed = meta["url"][:-1] + ("A" if meta["url"][-1] != "A" else "B")
        assert_error(await bare.get(changed), 403, "invalid_signature")
        longer = meta["url"].replace("expires=", "expires=1")
        assert_error(await bare.get(longer), 403, "invalid_signature")
        assert (await bare.get(meta["url"])).status_code == 200


async def test_seed_001_persistence_pattern_with_the_openai_sdk(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    """Generate, download the URL within the hour, upload to Files, reference by id."""
    from openai import AsyncOpenAI

    sdk = AsyncOpenAI(
        api_key=client.headers["authorization"].split()[1],
        base_url="http://testserver/v1",
        http_client=httpx.AsyncClient(transport=client._transport, base_url="http://testserver"),
    )
    async with sdk:
        img = await sdk.images.generate(
            model="mock-image", prompt="hero", size="256x256", response_format="url"
        )
        assert img.data
        png = (await client.get(img.data[0].url or "")).content
        f = await sdk.files.create(file=("hero.png", png), purpose="user_data")
        assert f.id.startswith("file_")
        assert f.bytes == len(png)
        assert f.filename == "hero.png"
        again = await sdk.files.retrieve(f.id)
        assert again.id == f.id
        listed = [item.id async for item in sdk.files.list()]
        assert f.id in listed
        assert (await sdk.files.content(f.id)).content == png
        assert (await sdk.files.delete(f.id)).deleted is True


# --- sync_mode ---------------------------------------------------------------------------


@pytest.mark.parametrize("response_format", ["url", "b64_json"])
async def test_sync_mode_returns_the_image_inline_and_keeps_nothing(
    client: httpx.AsyncClient, gateway: Gateway, response_format: str
) -> None:
    response = await client.post(
        GEN,
        json={
            "prompt": "p",
            "size": "256x256",
            "sync_mode": True,
            "response_format": response_format,
        },
    )
    assert response.status_code == 200, response.text
    [item] = response.json()["data"]
    assert "file_id" not in item
    if response_format == "url":
        assert item["url"].startswith("data:image/png;base64,")
        encoded = item["url"].split(",", 1)[1]
    else:
        encoded = item["b64_json"]
    assert decode_image(encoded).size == (256, 256)
    job = (await client.get(f"/v1/jobs/{response.json()['job_id']}")).json()
    assert job["status"] == "succeeded"
    assert job["outputs"] == []
    assert (await client.get("/v1/files")).json()["data"] == []
    async with gateway.db.read_session() as session:
        assert (await session.execute(select(File))).first() is None


async def test_sync_mode_is_refused_for_async_requests(client: httpx.AsyncClient) -> None:
    response = await client.post(
        GEN, json={"prompt": "p", "sync_mode": True}, headers={"Prefer": "respond-async"}
    )
    assert_error(response, 400, "invalid_parameter", "sync_mode")
    assert_error(
        await client.post(GEN, json={"prompt": "p", "sync_mode": "yes"}),
        400,
        "invalid_parameter",
        "sync_mode",
    )


# --- keeping outputs -----------------------------------------------------------------------


async def test_keep_by_multipart_field_and_bad_keeps(client: httpx.AsyncClient) -> None:
    file_id = (await generate_url(client))["data"][0]["file_id"]  # type: ignore[index]
    kept = await client.post("/v1/files", data={"file_id": file_id, "purpose": "reference"})
    assert kept.status_code == 200, kept.text
    assert kept.json()["purpose"] == "reference"
    again = await client.post("/v1/files", json={"file_id": file_id, "purpose": "reference"})
    assert again.json()["id"] == file_id
    assert_error(
        await client.post("/v1/files", json={"file_id": "file_nope"}), 404, "file_not_found"
    )
    assert_error(
        await client.post("/v1/files", json={"file_id": 5}), 400, "invalid_parameter", "file_id"
    )
    assert_error(
        await client.post("/v1/files", json={"file_id": file_id, "purpose": "output"}),
        400,
        "invalid_parameter",
        "purpose",
    )
    assert_error(await client.post("/v1/files", json={}), 400, "invalid_parameter", "file_id")
