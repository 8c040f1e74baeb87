"""GET /v1/models and /v1/models/{slug} in OpenAI's list shape plus our fields."""

from __future__ import annotations

import httpx

from tests.helpers import assert_error


async def test_list_is_openai_shaped_with_allowed_params(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models", params={"modality": "image"})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    by_id = {m["id"]: m for m in body["data"]}
    mock = by_id["mock-image"]
    assert mock["object"] == "model"
    assert mock["owned_by"] == "mock"
    assert mock["default"] is True and mock["enabled"] is True
    assert "1024x1024" in mock["allowedParams"]["supported_sizes"]
    assert "512x512" in mock["allowedParams"]["supported_sizes"]
    assert by_id["mock-vector"]["allowedParams"]["output_formats"] == ["svg"]


async def test_only_enabled_models_unless_an_admin_asks_for_all(client: httpx.AsyncClient) -> None:
    enabled = {m["id"] for m in (await client.get("/v1/models")).json()["data"]}
    everything = {
        m["id"] for m in (await client.get("/v1/models", params={"all": "true"})).json()["data"]
    }
    assert enabled == {"mock-image", "mock-vector"}
    assert {"flux_schnell", "nano_banana", "gpt-image-1", "dall-e-3"} <= everything


async def test_one_model_carries_its_json_schema(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v1/models/mock-image")).json()
    schema = body["input_schema"]
    assert schema["required"] == ["prompt"]
    assert schema["properties"]["n"] == {
        "type": "integer",
        "description": "Number of images.",
        "default": 1,
        "minimum": 1,
        "maximum": 10,
    }
    assert schema["additionalProperties"] is False


async def test_an_alias_finds_the_model(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v1/models/mock")).json()
    assert body["id"] == "mock-image"


async def test_unknown_model_is_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v1/models/nope"), 404, "model_not_found")
