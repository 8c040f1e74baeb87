"""Signed links: rotation, scoping, and the S3 store's own presigned URLs."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from imagegate.cli import app as cli
from imagegate.config import Settings
from imagegate.gateway import Gateway
from imagegate.services.signing import SignedLink
from imagegate.store.tables import File, SigningKey
from tests.blob_fixtures import backend_settings, create_bucket, s3_endpoint  # noqa: F401
from tests.files_helpers import anonymous
from tests.helpers import assert_error

GEN = "/v1/images/generations"


async def output_url(client: httpx.AsyncClient, model: str = "mock-image") -> dict[str, str]:
    response = await client.post(
        GEN, json={"prompt": "p", "model": model, "response_format": "url"}
    )
    assert response.status_code == 200, response.text
    item: dict[str, str] = response.json()["data"][0]
    return item


def content_url(file_id: str, link: SignedLink) -> str:
    return f"/v1/files/{file_id}/content?{link.query()}"


async def test_rotation_signs_with_the_new_key_and_old_links_still_work(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    old = await output_url(client)
    old_kid = gateway.signer.current_kid
    new_kid = await gateway.rotate_signing_key()
    assert new_kid != old_kid
    fresh = (await client.get(f"/v1/files/{old['file_id']}")).json()["url"]
    assert f"kid={new_kid}" in fresh
    async with anonymous(client) as bare:
        assert (await bare.get(old["url"])).status_code == 200
        assert (await bare.get(fresh)).status_code == 200


async def test_a_key_rotated_by_another_process_verifies_at_once(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    item = await output_url(client)
    other = Gateway(gateway.settings, run_workers=False)
    await other.start()
    try:
        await other.rotate_signing_key()
        link = other.signer.sign(item["file_id"], await _workspace(gateway, item["file_id"]), 60)
    finally:
        await other.stop()
    assert not gateway.signer.knows(link.kid)
    async with anonymous(client) as bare:
        assert (await bare.get(content_url(item["file_id"], link))).status_code == 200


async def _workspace(gateway: Gateway, file_id: str) -> str:
    async with gateway.db.read_session() as session:
        file = await session.get(File, file_id)
    assert file is not None
    return file.workspace_id


async def test_retired_keys_stop_verifying(client: httpx.AsyncClient, gateway: Gateway) -> None:
    item = await output_url(client)
    old_kid = gateway.signer.current_kid
    await gateway.rotate_signing_key()
    async with gateway.db.session() as session:  # the new key is older than any link's life
        newest = (
            (await session.execute(select(SigningKey).order_by(SigningKey.id.desc())))
            .scalars()
            .first()
        )
        assert newest is not None
        newest.created_at = newest.created_at.replace(year=newest.created_at.year - 1)
    await gateway.sweep()
    assert not gateway.signer.knows(old_kid)
    async with anonymous(client) as bare:
        assert_error(await bare.get(item["url"]), 403, "invalid_signature")


async def test_a_link_is_for_one_file_and_one_expiry(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    first = await output_url(client)
    second = await output_url(client)
    workspace = await _workspace(gateway, first["file_id"])
    expired = gateway.signer.sign(first["file_id"], workspace, 10, now=time.time() - 60)
    async with anonymous(client) as bare:
        assert_error(
            await bare.get(first["url"].replace(first["file_id"], second["file_id"])),
            403,
            "invalid_signature",
        )
        assert_error(await bare.get(content_url(first["file_id"], expired)), 403, "link_expired")
        forged_expiry = content_url(first["file_id"], expired).replace(
            f"expires={expired.expires}", f"expires={expired.expires + 3600}"
        )
        assert_error(await bare.get(forged_expiry), 403, "invalid_signature")
        other_ws = gateway.signer.sign(first["file_id"], "ws_someone_else", 60)
        assert_error(
            await bare.get(content_url(first["file_id"], other_ws)), 403, "invalid_signature"
        )


def test_the_cli_rotates_the_signing_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("IMAGEGATE_DATABASE_URL", raising=False)
    runner = CliRunner()
    first = runner.invoke(cli, ["rotate-signing-key"])
    second = runner.invoke(cli, ["rotate-signing-key"])
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert first.stdout.strip() != second.stdout.strip()
    assert "New signing key" in second.output


# --- the S3 store's own presigned URLs ---------------------------------------------------


@pytest.fixture
async def settings(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> Settings:
    """The local store, except for the presigned tests: S3 with presigned URLs on."""
    if "presigned" not in request.node.name:
        return backend_settings(request, tmp_path, database_url, backend="local")
    settings = backend_settings(
        request, tmp_path, database_url, backend="s3", s3_presigned_urls=True
    )
    await create_bucket(settings)
    return settings


async def test_presigned_s3_links_redirect_to_the_store(
    client: httpx.AsyncClient,
    gateway: Gateway,
    s3_endpoint: str,  # noqa: F811
) -> None:
    item = await output_url(client)
    async with anonymous(client) as bare:
        redirect = await bare.get(item["url"])
        assert redirect.status_code == 307
        location = redirect.headers["location"]
        assert location.startswith(s3_endpoint)
        assert "X-Amz-Expires=" in location
        async with httpx.AsyncClient() as http:
            fetched = await http.get(location)
        assert fetched.status_code == 200
        assert fetched.content.startswith(b"\x89PNG")
        tampered = item["url"].replace("signature=", "signature=A")
        assert_error(await bare.get(tampered), 403, "invalid_signature")
        svg = await output_url(client, model="mock-vector")
        served = await bare.get(svg["url"])  # SVG keeps the gateway's protective headers
        assert served.status_code == 200
        assert served.headers["content-security-policy"].endswith("sandbox")
