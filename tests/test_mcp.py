"""The MCP tool ``image``, as an agent sees it: the SDK's own ``ClientSession`` over
streamable HTTP (``/mcp`` on a running gateway) and over stdio (``imagegate mcp``)."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import mcp_types as types
import pytest
from PIL import Image

from imagegate.config import Settings
from imagegate.gateway import Gateway
from tests.helpers import enable_models
from tests.mcp_support import Served, http_session, serve, stdio_session


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[Served]:
    async with serve(settings) as running:
        yield running


def text_of(result: types.CallToolResult) -> str:
    first = result.content[0]
    assert isinstance(first, types.TextContent)
    return first.text


def structured(result: types.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def previews(result: types.CallToolResult) -> list[Image.Image]:
    found = []
    for block in result.content:
        if isinstance(block, types.ImageContent):
            data = base64.b64decode(block.data)
            assert len(data) < 1_000_000
            found.append(Image.open(io.BytesIO(data)))
    return found


def links(result: types.CallToolResult) -> list[types.ResourceLink]:
    return [block for block in result.content if isinstance(block, types.ResourceLink)]


def captures(entries: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    return [e for e in entries if e["kind"] == "capture" and e.get("job_id") == job_id]


# ---- streamable HTTP ---------------------------------------------------------------------


async def test_http_refuses_a_missing_or_revoked_key(served: Served) -> None:
    ping = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=served.url) as anonymous:
        response = await anonymous.post("/mcp", json=ping, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"
    assert response.headers["www-authenticate"].startswith("Bearer")

    key = await served.member_key()
    async with served.api() as admin:
        listed = (await admin.get("/v1/admin/keys")).json()["data"]
        key_id = next(k["id"] for k in listed if key.startswith(k["prefix"]))
        assert (await admin.post(f"/v1/admin/keys/{key_id}/revoke")).status_code == 200
    async with httpx.AsyncClient(base_url=served.url) as revoked:
        response = await revoked.post(
            "/mcp", json=ping, headers=headers | {"Authorization": f"Bearer {key}"}
        )
    assert response.status_code == 401


async def test_http_lists_the_tool_with_its_schema_from_the_catalog(served: Served) -> None:
    async with http_session(served.url, served.admin_key) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        resources = await session.list_resources()
        listing = await session.call_tool("image_models", {})
    image = tools["image"]
    properties = image.input_schema["properties"]
    assert properties["action"]["enum"] == ["create", "edit", "upscale"]
    assert properties["tier"]["enum"] == ["draft", "fine", "photo"]
    assert "flux_schnell" in properties["tier"]["description"]
    assert properties["format"]["enum"] == ["shorts", "reels", "horizontal"]
    # The models' own parameters, from the catalog: Topaz's factor, FLUX's steps.
    assert properties["upscale_factor"]["maximum"] == 4
    assert "flux_schnell" in properties["num_inference_steps"]["description"]
    assert image.output_schema is not None
    assert {"job_id", "model", "width", "height", "file_ids"} <= set(
        image.output_schema["required"]
    )
    assert [r.uri for r in resources.resources] == ["imagegate://models"]
    models = structured(listing)
    assert models["tiers"] == {"draft": "flux_schnell", "fine": "flux_pro", "photo": "flux_realism"}
    flux = next(m for m in models["models"] if m["id"] == "flux_schnell")
    assert "generate" in flux["capabilities"] and flux["allowedParams"]["supported_sizes"]


async def test_http_creates_with_each_tier_and_charges_once(served: Served) -> None:
    await served.grant(100)
    async with http_session(served.url, served.admin_key) as session:
        mock = await session.call_tool(
            "image", {"prompt": "a lighthouse", "mock": True, "out": "lighthouse.png"}
        )
        results = {
            tier: await session.call_tool("image", {"prompt": "a lighthouse", "tier": tier})
            for tier in ("draft", "fine", "photo")
        }
        body = structured(mock)
        read = await session.read_resource(links(mock)[0].uri)
    assert body["model"] == "flux_schnell" and body["mock"] is True
    assert body["charged_credits"] == 0 and body["images"][0]["name"] == "lighthouse.png"
    blob = read.contents[0]
    assert isinstance(blob, types.BlobResourceContents)
    full = Image.open(io.BytesIO(base64.b64decode(blob.blob)))
    assert full.size == (body["width"], body["height"]) == (576, 1024)  # format default 9:16
    [small] = previews(mock)
    assert max(small.size) <= 512
    async with httpx.AsyncClient() as anyone:  # the signed link needs no key
        signed = await anyone.get(body["images"][0]["url"])
    assert signed.status_code == 200 and signed.content == base64.b64decode(blob.blob)
    async with served.api() as admin:  # out: kept in the Files API under that name
        kept = (await admin.get(f"/v1/files/{body['file_ids'][0]}")).json()
    assert kept["filename"] == "lighthouse.png" and kept["expires_at"] is None

    expected = {"draft": "flux_schnell", "fine": "flux_pro", "photo": "flux_realism"}
    entries = (await served.credits())["entries"]
    for tier, result in results.items():
        job = structured(result)
        assert job["model"] == expected[tier]
        assert job["notices"][0] == f"tier {tier!r} uses {expected[tier]}."
        assert job["charged_credits"] == job["estimated_credits"] > 0
        assert len(captures(entries, job["job_id"])) == 1
        assert f"{job['charged_credits']:g} credits" in text_of(result)
    assert len(served.upstream.requests) == 3


async def test_http_idempotency_key_gives_the_same_job_charged_once(served: Served) -> None:
    await served.grant(50)
    call = {"prompt": "a fox", "tier": "fine", "idempotency_key": "fox-1"}
    async with http_session(served.url, served.admin_key) as session:
        first = structured(await session.call_tool("image", call))
        again = structured(await session.call_tool("image", call))
    assert first["job_id"] == again["job_id"]
    entries = (await served.credits())["entries"]
    assert len(captures(entries, first["job_id"])) == 1
    assert len(served.upstream.requests) == 1


async def test_http_bad_calls_come_back_as_tool_errors(served: Served) -> None:
    member = await served.member_key()
    async with served.api() as admin:
        off = {"enabled": False}
        response = await admin.patch("/v1/admin/image-models/nano_banana", json=off)
        assert response.status_code == 200, response.text
    async with http_session(served.url, served.admin_key) as session:
        unknown = await session.call_tool("image", {"prompt": "x", "mock": True, "colour": "red"})
        bad_value = await session.call_tool("image", {"prompt": "x", "num_images": 9})
        # Not enabled: fal (the configured provider here) does not serve it.
        disabled = await session.call_tool("image", {"prompt": "x", "model": "dall-e-3"})
        broke = await session.call_tool("image", {"prompt": "x", "tier": "fine"})
        local_path = await session.call_tool(
            "image", {"action": "upscale", "image_url": "photos/cat.png"}
        )
        escapes = [
            await session.call_tool("image", {"prompt": "x", "mock": True, "out": out})
            for out in ("../x.png", "/tmp/x.png", "a/../../x.png")
        ]
    assert unknown.is_error and "'colour'" in text_of(unknown) and "Allowed:" in text_of(unknown)
    assert bad_value.is_error and "num_images" in text_of(bad_value)
    assert disabled.is_error and "model_not_enabled" in text_of(disabled)
    assert broke.is_error and "insufficient_credits" in text_of(broke)
    assert local_path.is_error and "stdio only" in text_of(local_path)
    for escape in escapes:
        assert escape.is_error and "path_outside_workdir" in text_of(escape)
    async with http_session(served.url, member) as session:
        hidden = await session.call_tool("image", {"prompt": "x", "model": "dall-e-3"})
        allowed = await session.call_tool("image", {"prompt": "x", "mock": True})
    assert hidden.is_error and "model_not_found" in text_of(hidden)
    assert structured(allowed)["model"] == "flux_schnell"
    balance = await served.credits()
    assert balance["held"] == 0 and not [e for e in balance["entries"] if e["kind"] == "hold"]


async def test_http_cancel_cancels_the_job_and_releases_its_hold(served: Served) -> None:
    await served.grant(50)
    progress: list[str] = []
    told = asyncio.Event()

    async def on_progress(step: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")
        told.set()

    async with http_session(served.url, served.admin_key) as session:
        call = asyncio.create_task(
            session.call_tool(
                "image", {"prompt": "a slow one", "tier": "fine"}, progress_callback=on_progress
            )
        )
        await asyncio.wait_for(served.upstream.started.wait(), 10)
        await asyncio.wait_for(told.wait(), 10)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        async with served.api() as admin:
            for _ in range(100):
                jobs = (await admin.get("/v1/jobs")).json()["data"]
                if jobs and jobs[0]["status"] == "canceled":
                    break
                await asyncio.sleep(0.05)
    assert jobs[0]["status"] == "canceled"
    assert progress[0] == "flux_pro: running"
    balance = await served.credits()
    assert balance["held"] == 0 and balance["available"] == 50
    kinds = [e["kind"] for e in balance["entries"] if e.get("job_id") == jobs[0]["id"]]
    assert sorted(kinds) == ["hold", "release"]


# ---- stdio -------------------------------------------------------------------------------


async def test_stdio_against_a_running_gateway(served: Served, tmp_path: Path) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (workdir / "link").symlink_to(outside)
    key = await served.member_key()
    async with stdio_session(workdir, "--url", served.url, env={"IMAGEGATE_API_KEY": key}) as s:
        tools = await s.list_tools()
        made = await s.call_tool(
            "image",
            {"prompt": "a tram", "mock": True, "format": "horizontal", "out": "art/trams/t.png"},
        )
        escapes = [
            await s.call_tool("image", {"prompt": "x", "mock": True, "out": out})
            for out in ("../up.png", str(outside / "abs.png"), "link/through.png")
        ]
        missing = await s.call_tool("image", {"action": "upscale", "image_url": "nope.png"})
    assert "image" in [tool.name for tool in tools.tools]
    body = structured(made)
    assert body["images"][0]["path"] == "art/trams/t.png"
    assert "saved to art/trams/t.png" in text_of(made)
    with Image.open(workdir / "art/trams/t.png") as saved:
        assert saved.size == (body["width"], body["height"]) == (1024, 576)
        assert saved.format == "PNG"
    assert links(made)[0].uri == f"imagegate://files/{body['file_ids'][0]}"
    for result in escapes:
        assert result.is_error and "path_outside_workdir" in text_of(result)
    assert list(outside.iterdir()) == [] and not (tmp_path / "up.png").exists()
    assert missing.is_error and "file_not_found" in text_of(missing)


async def test_stdio_on_the_local_data_dir(settings: Settings, tmp_path: Path) -> None:
    gateway = Gateway(settings, run_workers=False)
    await gateway.start()
    await enable_models(gateway, "flux_schnell")
    await gateway.stop()
    workdir = tmp_path / "agent"
    workdir.mkdir()
    env = {
        "IMAGEGATE_DATA_DIR": str(settings.data_dir),
        "IMAGEGATE_DATABASE_URL": settings.resolved_database_url,
        "IMAGEGATE_ENVIRONMENT": "test",
    }
    async with stdio_session(workdir, env=env) as session:
        made = await session.call_tool(
            "image", {"prompt": "a kite", "mock": True, "out": "kite.jpg"}
        )
    body = structured(made)
    assert body["model"] == "flux_schnell" and body["images"][0]["url"] is None
    with Image.open(workdir / "kite.jpg") as saved:
        assert saved.format == "JPEG"  # the PNG placeholder, written as out asked
        assert saved.size == (body["width"], body["height"])


# ---- edit and upscale --------------------------------------------------------------------


def png_data_uri(size: tuple[int, int] = (64, 48)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


async def test_stdio_edits_and_upscales_local_files(served: Served, tmp_path: Path) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    env = {"IMAGEGATE_API_KEY": served.admin_key}
    async with stdio_session(workdir, "--url", served.url, env=env) as session:
        made = await session.call_tool(
            "image", {"prompt": "a cat", "mock": True, "out": "src/cat.png"}
        )
        edited = await session.call_tool(
            "image",
            {
                "action": "edit",
                "image_url": "src/cat.png",
                "prompt": "make the cat blue",
                "mock": True,
                "out": "edits/blue.png",
            },
        )
        upscaled = await session.call_tool(
            "image",
            {
                "action": "upscale",
                "image_url": "edits/blue.png",
                "upscale_factor": 2,
                "mock": True,
                "out": "big/blue.png",
            },
        )
    structured(made)
    edit = structured(edited)
    assert edit["model"] == "seedream_v5_edit" and edit["action"] == "edit"
    upscale = structured(upscaled)
    assert upscale["model"] == "topaz_upscale_image"
    assert (upscale["width"], upscale["height"]) == (edit["width"] * 2, edit["height"] * 2)
    for body, path in ((edit, "edits/blue.png"), (upscale, "big/blue.png")):
        with Image.open(workdir / path) as saved:
            assert saved.size == (body["width"], body["height"])
    async with served.api() as admin:
        uploads = (await admin.get("/v1/files", params={"purpose": "reference"})).json()["data"]
    assert sorted(f["filename"] for f in uploads) == ["blue.png", "cat.png"]


async def test_http_edit_from_a_data_uri_and_upscale_from_a_file_id(served: Served) -> None:
    await served.grant(100)
    async with http_session(served.url, served.admin_key) as session:
        edited = await session.call_tool(
            "image",
            {"action": "edit", "image_urls": [png_data_uri()], "prompt": "add a hat"},
        )
        edit = structured(edited)
        upscaled = await session.call_tool(
            "image",
            {"action": "upscale", "image_url": edit["file_ids"][0], "upscale_factor": 2},
        )
        no_source = await session.call_tool("image", {"action": "edit", "prompt": "x"})
    upscale = structured(upscaled)
    assert edit["model"] == "seedream_v5_edit" and edit["charged_credits"] == 7
    assert upscale["model"] == "topaz_upscale_image" and upscale["charged_credits"] == 16
    assert [r.model for r in served.upstream.requests] == [
        "seedream_v5_edit",
        "topaz_upscale_image",
    ]
    source, again = (request.inputs[0] for request in served.upstream.requests)
    assert (source.width, source.height) == (64, 48)  # the data URI's image reached the model
    assert (again.width, again.height) == (edit["width"], edit["height"])
    assert (upscale["width"], upscale["height"]) == (edit["width"] * 2, edit["height"] * 2)
    assert no_source.is_error and "image_url_required" in text_of(no_source)
    assert (await served.credits())["available"] == 100 - 7 - 16


async def test_http_with_several_processes_runs_stateless(settings: Settings) -> None:
    settings.workers = 2  # each request may reach another process: no sessions
    async with serve(settings) as running, http_session(running.url, running.admin_key) as s:
        made = await s.call_tool("image", {"prompt": "a boat", "mock": True})
        tools = await s.list_tools()
    assert structured(made)["model"] == "flux_schnell"
    assert "image" in [tool.name for tool in tools.tools]
