"""Uploads are checked, not trusted: every abuse gets a clear 4xx naming ``file``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from PIL import features

from imagegate.config import Settings
from tests.blob_fixtures import BACKENDS, backend_settings, create_bucket, s3_endpoint  # noqa: F401
from tests.files_helpers import image_bytes, png_bomb
from tests.helpers import assert_error

MAX_UPLOAD = 300_000


@pytest.fixture(params=BACKENDS)
async def settings(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> Settings:
    settings = backend_settings(request, tmp_path, database_url, upload_max_bytes=MAX_UPLOAD)
    await create_bucket(settings)
    return settings


async def upload(
    client: httpx.AsyncClient,
    data: bytes,
    name: str = "image.png",
    content_type: str | None = "image/png",
) -> httpx.Response:
    part = (name, data, content_type) if content_type else (name, data)
    return await client.post("/v1/files", files={"file": part}, data={"purpose": "user_data"})


async def assert_nothing_stored(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/files")).json()["data"] == []


FORMATS = [
    ("PNG", "png", "image/png"),
    ("JPEG", "jpg", "image/jpeg"),
    ("WEBP", "webp", "image/webp"),
    ("GIF", "gif", "image/gif"),
]
if features.check("avif"):
    FORMATS.append(("AVIF", "avif", "image/avif"))


@pytest.mark.parametrize(("pil", "extension", "content_type"), FORMATS)
async def test_each_accepted_format_is_stored_as_what_it_is(
    client: httpx.AsyncClient, pil: str, extension: str, content_type: str
) -> None:
    data = image_bytes(pil, (40, 30))
    response = await upload(client, data, f"a.{extension}", content_type)
    assert response.status_code == 201, response.text
    assert response.json()["content_type"] == content_type
    assert (response.json()["width"], response.json()["height"]) == (40, 30)
    fetched = await client.get(f"/v1/files/{response.json()['id']}/content")
    assert fetched.headers["content-type"] == content_type
    assert fetched.content == data


async def test_an_unlabelled_image_is_recognised(client: httpx.AsyncClient) -> None:
    response = await upload(client, image_bytes("JPEG"), "blob", "application/octet-stream")
    assert response.status_code == 201, response.text
    assert response.json()["content_type"] == "image/jpeg"


async def test_a_truncated_png_is_refused(client: httpx.AsyncClient) -> None:
    data = image_bytes("PNG", (300, 300), "blue")
    noisy = bytearray(data)
    truncated = bytes(noisy[: len(noisy) * 2 // 3])
    error = assert_error(await upload(client, truncated), 400, "invalid_image", "file")
    assert "truncated" in error["message"] or "not an image" in error["message"]
    await assert_nothing_stored(client)


async def test_a_png_cut_inside_its_pixel_data_is_refused_as_truncated(
    client: httpx.AsyncClient,
) -> None:
    from io import BytesIO

    from PIL import Image

    out = BytesIO()
    Image.effect_noise((256, 256), 64).convert("RGB").save(out, "PNG")
    data = out.getvalue()
    error = assert_error(await upload(client, data[: len(data) // 2]), 400, "invalid_image", "file")
    assert "truncated" in error["message"]


async def test_a_20000x20000_png_bomb_is_422_image_too_large(client: httpx.AsyncClient) -> None:
    bomb = png_bomb(20000, 20000)
    assert len(bomb) < 100_000  # small on disk, 400 megapixels decoded
    error = assert_error(await upload(client, bomb), 422, "image_too_large", "file")
    assert "89,478,485" in error["message"]
    await assert_nothing_stored(client)


async def test_just_over_the_pixel_limit_is_refused_and_just_under_is_not(
    client: httpx.AsyncClient,
) -> None:
    # 9460 x 9459 = 89,482,140 pixels: over the limit but under Pillow's own hard stop.
    error = assert_error(await upload(client, png_bomb(9460, 9459)), 422, "image_too_large", "file")
    assert "89,478,485" in error["message"]
    small = await upload(client, png_bomb(2000, 2000))
    assert small.status_code == 201, small.text


async def test_html_named_png_is_refused(client: httpx.AsyncClient) -> None:
    html = b"<!doctype html><html><script>alert(document.cookie)</script></html>"
    assert_error(await upload(client, html, "cat.png", "image/png"), 400, "invalid_image", "file")
    await assert_nothing_stored(client)


async def test_svg_uploads_are_refused(client: httpx.AsyncClient) -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    assert_error(
        await upload(client, svg, "logo.svg", "image/svg+xml"), 400, "invalid_image", "file"
    )


async def test_a_format_outside_the_allowed_list_is_refused(client: httpx.AsyncClient) -> None:
    error = assert_error(
        await upload(client, image_bytes("BMP"), "a.bmp", "image/bmp"), 400, "invalid_image", "file"
    )
    assert "PNG" in error["message"]
    assert "JPEG" in error["message"]


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("image.png", "image/jpeg"),
        ("image.png", "text/html"),
        ("image.jpg", "image/png"),
        ("image.jpg", None),
    ],
)
async def test_a_lying_content_type_or_name_is_refused(
    client: httpx.AsyncClient, name: str, content_type: str | None
) -> None:
    error = assert_error(
        await upload(client, image_bytes("PNG"), name, content_type),
        400,
        "content_type_mismatch",
        "file",
    )
    assert "image/png" in error["message"]
    await assert_nothing_stored(client)


async def test_an_empty_file_is_refused(client: httpx.AsyncClient) -> None:
    assert_error(await upload(client, b""), 400, "empty_file", "file")


async def test_an_oversized_file_is_413(client: httpx.AsyncClient) -> None:
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * MAX_UPLOAD
    error = assert_error(await upload(client, big), 413, "file_too_large", "file")
    assert f"{MAX_UPLOAD:,}" in error["message"]


async def test_a_body_over_the_request_limit_is_413(
    client: httpx.AsyncClient, gateway: object
) -> None:
    from imagegate.gateway import Gateway

    assert isinstance(gateway, Gateway)
    big = b"\0" * (gateway.settings.max_body_bytes + 1)
    assert_error(await upload(client, big), 413, "payload_too_large")


@pytest.mark.parametrize(
    ("kwargs", "code", "param"),
    [
        ({"data": {"purpose": "user_data"}}, "file_required", "file"),
        (
            {"files": {"image": ("a.png", b"x", "image/png")}, "data": {"purpose": "user_data"}},
            "file_required",
            "file",
        ),
        (
            {
                "files": {"file": ("a.png", image_bytes(), "image/png")},
                "data": {"purpose": "fine-tune"},
            },
            "invalid_parameter",
            "purpose",
        ),
        (
            {"files": {"file": ("a.png", image_bytes(), "image/png")}},
            "invalid_parameter",
            "purpose",
        ),
        ({"data": {"file": "not a file", "purpose": "user_data"}}, "file_required", "file"),
    ],
)
async def test_malformed_upload_requests_are_400(
    client: httpx.AsyncClient, kwargs: dict[str, object], code: str, param: str
) -> None:
    response = await client.post("/v1/files", **kwargs)  # type: ignore[arg-type]
    assert_error(response, 400, code, param)


async def test_unreadable_multipart_bodies_are_400(client: httpx.AsyncClient) -> None:
    two = [
        ("file", ("a.png", image_bytes(), "image/png")),
        ("file", ("b.png", image_bytes(), "image/png")),
    ]
    response = await client.post("/v1/files", files=two, data={"purpose": "user_data"})
    assert_error(response, 400, "invalid_multipart", "file")
    no_boundary = await client.post(
        "/v1/files", content=b"abc", headers={"content-type": "multipart/form-data"}
    )
    assert_error(no_boundary, 400, "invalid_multipart", "file")


async def test_other_request_types_are_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/files", content=image_bytes(), headers={"content-type": "image/png"}
    )
    assert_error(response, 415, "unsupported_media_type")
