"""POST /v1/images/edits: source images in, an edited image out, as OpenAI's API does."""

from __future__ import annotations

import base64
import io

import httpx
from PIL import Image

from tests.helpers import assert_error, decode_image

EDITS = "/v1/images/edits"


def _png(size: tuple[int, int] = (64, 48), colour: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


async def test_multipart_edit_returns_an_image_and_keeps_the_source(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        EDITS,
        files={"image": ("portrait.png", _png(), "image/png")},
        data={"prompt": "make it winter", "model": "mock-image", "size": "512x512", "n": "2"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["data"]) == 2
    image = decode_image(body["data"][0]["b64_json"])
    assert image.size == (512, 512)
    # the mock pastes the source in the top-right corner: red pixels are there
    assert image.convert("RGB").getpixel((512 - 20, 20)) == (255, 0, 0)
    job = (await client.get(f"/v1/jobs/{body['job_id']}")).json()
    assert job["status"] == "succeeded"
    # the upload was kept for the job only: no permanent file, and gone once the job ended
    assert (await client.get("/v1/files")).json()["data"] == [
        f for f in (await client.get("/v1/files")).json()["data"] if f["purpose"] == "output"
    ]


async def test_several_images_and_a_mask(client: httpx.AsyncClient) -> None:
    response = await client.post(
        EDITS,
        files=[
            ("image[]", ("a.png", _png(colour="blue"), "image/png")),
            ("image[]", ("b.png", _png(colour="green"), "image/png")),
            ("mask", ("mask.png", _png(), "image/png")),
        ],
        data={"prompt": "blend them", "response_format": "url"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"][0]["url"].startswith("http://testserver/v1/files/")


async def test_json_edit_with_a_data_uri_and_a_file_id(client: httpx.AsyncClient) -> None:
    uploaded = await client.post(
        "/v1/files", files={"file": ("src.png", _png(), "image/png")}, data={"purpose": "reference"}
    )
    assert uploaded.status_code == 201, uploaded.text
    data_uri = "data:image/png;base64," + base64.b64encode(_png(colour="white")).decode()
    response = await client.post(
        EDITS,
        json={
            "prompt": "p",
            "images": [{"file_id": uploaded.json()["id"]}, {"image_url": data_uri}],
            "size": "256x256",
        },
    )
    assert response.status_code == 200, response.text
    assert decode_image(response.json()["data"][0]["b64_json"]).size == (256, 256)


async def test_edit_errors_name_what_to_change(client: httpx.AsyncClient) -> None:
    no_image = await client.post(
        EDITS, data={"prompt": "p"}, files={"x": ("x.txt", b"x", "text/plain")}
    )
    assert_error(no_image, 400, "invalid_parameter", "x")
    missing = await client.post(EDITS, json={"prompt": "p", "images": []})
    assert_error(missing, 400, "invalid_parameter", "images")
    vector = await client.post(
        EDITS,
        files={"image": ("a.png", _png(), "image/png")},
        data={"prompt": "p", "model": "mock-vector"},
    )
    assert_error(vector, 400, "model_cannot_edit", "model")
    lying = await client.post(
        EDITS,
        files={"image": ("a.png", b"<html><script>x</script></html>", "image/png")},
        data={"prompt": "p"},
    )
    assert 400 <= lying.status_code < 500
    assert lying.json()["error"]["param"] == "image"
    not_http = await client.post(
        EDITS, json={"prompt": "p", "images": [{"image_url": "ftp://example.com/a.png"}]}
    )
    assert_error(not_http, 400, "invalid_image_source", "images[0]")
    bad_n = await client.post(
        EDITS, files={"image": ("a.png", _png(), "image/png")}, data={"prompt": "p", "n": "two"}
    )
    assert_error(bad_n, 400, "invalid_parameter", "n")
    unknown_file = await client.post(
        EDITS, json={"prompt": "p", "images": [{"file_id": "file_nope"}]}
    )
    assert unknown_file.status_code == 404
    wrong_type = await client.post(
        EDITS, content=b"prompt=p", headers={"content-type": "text/plain"}
    )
    assert_error(wrong_type, 415, "unsupported_media_type")
