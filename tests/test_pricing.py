"""GET /v1/pricing, POST /v1/pricing/estimate and ?dry_run=true as a caller sees them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select, update

from imagegate.gateway import Gateway
from imagegate.services.bootstrap import create_member
from imagegate.services.keys import create_key
from imagegate.store.tables import Job, Workspace
from tests.helpers import assert_error, enable_models

GEN = "/v1/images/generations"
ESTIMATE = "/v1/pricing/estimate"


@pytest.fixture
async def member_client(
    gateway: Gateway, client: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway.db.session() as session:
        workspace = (await session.execute(select(Workspace).limit(1))).scalar_one()
        member = await create_member(session, workspace, "staff", "member")
        _, secret = await create_key(session, member, "staff")
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(
        transport=client._transport, base_url="http://testserver", headers=headers
    ) as c:
        yield c


async def _jobs(gateway: Gateway) -> int:
    async with gateway.db.read_session() as session:
        return int((await session.execute(select(func.count()).select_from(Job))).scalar_one())


async def test_price_table_shows_each_model_at_1024_in_credits_and_eur(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/pricing")
    assert response.status_code == 200
    table = response.json()
    assert table["margin_percent"] == 20
    assert table["credits_per_usd"] == 200
    rows = {row["model"]: row for row in table["data"]}
    assert len(rows) >= 50
    flux = rows["flux-2-pro"]["per_image_1024"]
    assert (flux["width"], flux["height"], flux["credits"]) == (1024, 1024, 8.2)
    assert flux["eur"] == 0.0453  # 8.2 credits x EUR 0.0046 x 1.20
    assert rows["nano_banana"]["per_image_1024"]["credits"] == 30
    assert rows["mock-image"]["per_image_1024"]["credits"] == 0
    assert rows["flux-2-pro"]["source"].startswith("Jobs API price list (USD, markup included)")
    assert "markup" in rows["flux-2-pro"]["description"]


async def test_eur_prices_follow_the_workspace_margin(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    async with gateway.db.session() as session:
        await session.execute(update(Workspace).values(margin_percent=0))
    table = (await client.get("/v1/pricing")).json()
    rows = {row["model"]: row for row in table["data"]}
    assert table["margin_percent"] == 0
    assert rows["nano_banana"]["per_image_1024"]["eur"] == 0.138  # 30 x 0.0046


async def test_an_estimate_returns_cost_params_and_size_and_makes_nothing(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    before = await _jobs(gateway)
    response = await client.post(
        ESTIMATE,
        json={
            "model": "nano_banana",
            "prompt": "a poster",
            "aspect_ratio": "16:9",
            "resolution": "4K",
            "n": 2,
        },
    )
    assert response.status_code == 200, response.text
    estimate = response.json()
    assert estimate["object"] == "estimate"
    assert estimate["model"] == "nano_banana"
    assert estimate["provider"] == "fal"
    assert (estimate["width"], estimate["height"], estimate["n"]) == (5504, 3072, 2)
    assert estimate["estimated_cost"] == 120  # 30 cr, x2 at 4K, 2 images
    assert estimate["params"]["num_images"] == 2
    assert estimate["params"]["output_format"] == "png"  # defaults filled in
    assert await _jobs(gateway) == before


async def test_dry_run_on_generations_is_the_same_estimate(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    await enable_models(gateway, "flux_schnell")
    body = {"model": "flux_schnell", "prompt": "p", "size": "1920x1080"}
    before = await _jobs(gateway)
    dry = await client.post(GEN, params={"dry_run": "true"}, json=body)
    assert dry.status_code == 200, dry.text
    assert dry.json() == (await client.post(ESTIMATE, json=body)).json()
    assert dry.json()["params"]["image_size"] == {"width": 1920, "height": 1080}
    assert dry.json()["estimated_cost"] == 2
    assert await _jobs(gateway) == before
    real = await client.post(GEN, params={"dry_run": "false"}, json={**body, "mock": True})
    assert real.status_code == 200
    assert await _jobs(gateway) == before + 1


async def test_dry_run_takes_true_or_false(client: httpx.AsyncClient) -> None:
    response = await client.post(GEN, params={"dry_run": "maybe"}, json={"prompt": "p"})
    assert_error(response, 400, "invalid_parameter", "dry_run")


async def test_a_snapped_size_is_reported(client: httpx.AsyncClient) -> None:
    estimate = (
        await client.post(
            ESTIMATE, json={"model": "gpt-image-1", "prompt": "p", "size": "1000x1000"}
        )
    ).json()
    assert (estimate["width"], estimate["height"]) == (1024, 1024)
    assert any("1000x1000" in notice for notice in estimate["notices"])


async def test_an_unsupported_aspect_ratio_is_rejected_with_the_supported_list(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        ESTIMATE, json={"model": "gpt-image-1", "prompt": "p", "aspect_ratio": "21:9"}
    )
    error = assert_error(response, 400, "invalid_parameter", "aspect_ratio")
    assert error["aspect_ratios"] == ["1:1", "16:9", "9:16", "3:2", "2:3"]


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"model": "flux-kontext-pro", "prompt": "p"}, 400, "image_url_required", "image_url"),
        (
            {"model": "nano_banana_edit", "prompt": "make it blue"},
            400,
            "image_url_required",
            "image_urls",
        ),
        (
            {"model": "flux-2-pro", "prompt": "p", "image_urls": ["https://x/a", "https://x/b"]},
            400,
            "too_many_references",
            "image_urls",
        ),
        (
            {"model": "nano_banana_edit", "prompt": "ppp", "image_urls": ["https://x/a"] * 15},
            400,
            "too_many_references",
            "image_urls",
        ),
        (
            {
                "model": "seedream_v45_edit",
                "prompt": "p",
                "image_urls": ["https://x/a"] * 10,
                "max_images": 6,
            },
            400,
            "invalid_parameter",
            "max_images",
        ),
        (
            {
                "model": "seedream_v45_edit",
                "prompt": "p",
                "image_urls": ["https://x/a"],
                "image_size": {"width": 1920, "height": 1920},
            },
            200,
            None,
            None,
        ),
        (
            {
                "model": "seedream_v45_edit",
                "prompt": "p",
                "image_urls": ["https://x/a"],
                "image_size": {"width": 1000, "height": 1000},
            },
            400,
            "invalid_parameter",
            "image_size",
        ),
        (
            {"model": "flux-2-pro", "prompt": "p", "image_size": {"width": 4096, "height": 4096}},
            400,
            "invalid_parameter",
            "image_size",
        ),
        (
            {"model": "nano_banana_edit", "prompt": "pp", "image_urls": ["https://x/a"]},
            400,
            "invalid_parameter",
            "prompt",
        ),
        (
            {"model": "nano_banana", "prompt": "p", "resolution": "8K"},
            400,
            "invalid_parameter",
            "resolution",
        ),
        (
            {"model": "gpt-image-1", "prompt": "p", "resolution": "2K"},
            400,
            "invalid_parameter",
            "resolution",
        ),
        (
            {"model": "flux_schnell", "prompt": "p", "size": "1024x1024", "aspect_ratio": "1:1"},
            400,
            "invalid_parameter",
            "size",
        ),
        (
            {"model": "flux_schnell", "prompt": "p", "image_size": "huge"},
            400,
            "invalid_parameter",
            "image_size",
        ),
        (
            {"model": "flux_schnell", "prompt": "p", "image_size": {"width": 512}},
            400,
            "invalid_parameter",
            "image_size.height",
        ),
        (
            {"model": "flux_schnell", "prompt": "p", "format": "shorts", "image_size": "square"},
            400,
            "invalid_parameter",
            "format",
        ),
        (
            {"model": "flux_schnell", "prompt": "p", "num_inference_steps": 13},
            400,
            "invalid_parameter",
            "num_inference_steps",
        ),
        (
            {"model": "flux_schnell", "prompt": "p", "guidance_scale": "high"},
            400,
            "invalid_parameter",
            "guidance_scale",
        ),
        (
            {"model": "flux_pro", "prompt": "p", "aspect_ratio": "wide"},
            400,
            "invalid_parameter",
            "aspect_ratio",
        ),
        ({"model": "dall-e-3", "prompt": "p", "n": 2}, 400, "invalid_parameter", "n"),
        ({"tier": "ultra", "prompt": "p"}, 400, "invalid_parameter", "tier"),
        (
            {"model": "auto", "use_case": "cats", "prompt": "p"},
            400,
            "invalid_parameter",
            "use_case",
        ),
        ({"model": "no-such-model", "prompt": "p"}, 404, "model_not_found", "model"),
    ],
)
async def test_bad_requests_are_4xx_naming_the_param(
    client: httpx.AsyncClient,
    body: dict[str, object],
    status: int,
    code: str | None,
    param: str | None,
) -> None:
    response = await client.post(ESTIMATE, json=body)
    if status == 200:
        assert response.status_code == 200, response.text
        return
    error = assert_error(response, status, code or "", param)
    assert error["message"]


async def test_a_free_form_aspect_ratio_is_sized_at_the_models_pixel_budget(
    client: httpx.AsyncClient,
) -> None:
    estimate = (
        await client.post(
            ESTIMATE, json={"model": "flux_pro", "prompt": "p", "aspect_ratio": "5:4"}
        )
    ).json()
    assert estimate["params"]["aspect_ratio"] == "5:4"
    assert abs(estimate["width"] / estimate["height"] - 1.25) < 0.02
    assert 3_800_000 < estimate["width"] * estimate["height"] < 4_500_000


async def test_seedream_keeps_the_last_ten_references(client: httpx.AsyncClient) -> None:
    urls = [f"https://x/{i}.png" for i in range(12)]
    estimate = (
        await client.post(
            ESTIMATE, json={"model": "seedream_v5_edit", "prompt": "p", "image_urls": urls}
        )
    ).json()
    assert estimate["params"]["image_urls"] == urls[2:]
    assert any("last 10" in notice for notice in estimate["notices"])


# --- model choice -------------------------------------------------------------------------


async def test_no_model_means_the_workspace_default(client: httpx.AsyncClient) -> None:
    assert (await client.post(ESTIMATE, json={"prompt": "p"})).json()["model"] == "mock-image"


@pytest.mark.parametrize(
    ("tier", "model"), [("draft", "flux_schnell"), ("fine", "flux_pro"), ("photo", "flux_realism")]
)
async def test_a_tier_picks_seed_002s_preset(
    client: httpx.AsyncClient, tier: str, model: str
) -> None:
    estimate = (await client.post(ESTIMATE, json={"prompt": "p", "tier": tier})).json()
    assert estimate["model"] == model
    explicit = (
        await client.post(ESTIMATE, json={"prompt": "p", "tier": tier, "model": "nano_banana"})
    ).json()
    assert explicit["model"] == "nano_banana"  # a named model wins over the tier preset


async def test_model_auto_follows_the_recommendations_among_enabled_models(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    await enable_models(gateway, "gemini-2.5-flash-image", "nano_banana", "recraft-v4-vector")
    cases = {
        "fast": "gemini-2.5-flash-image",
        "photo": "nano_banana",
        "vector": "recraft-v4-vector",
        "eu-only": "gemini-2.5-flash-image",
        "text-in-image": "nano_banana",
    }
    for use_case, expected in cases.items():
        response = await client.post(
            ESTIMATE, json={"prompt": "p", "model": "auto", "use_case": use_case}
        )
        assert response.status_code == 200, response.text
        assert response.json()["model"] == expected, use_case
        assert use_case in response.headers["x-imagegate-notice"]
    await enable_models(gateway, "flux-2-pro")
    fast = await client.post(ESTIMATE, json={"prompt": "p", "use_case": "fast"})
    assert fast.json()["model"] == "flux-2-pro"  # the first recommendation once it is enabled
    eu = await client.post(ESTIMATE, json={"prompt": "p", "model": "auto", "use_case": "eu-only"})
    assert eu.json()["region"] == "eu"


async def test_model_auto_with_nothing_suitable_enabled_says_what_to_enable(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        ESTIMATE, json={"prompt": "p", "model": "auto", "use_case": "edit"}
    )
    error = assert_error(response, 400, "no_model_for_use_case", "use_case")
    assert error["recommended_models"] == ["flux-kontext-max", "gpt-image-2"]


async def test_members_estimate_only_models_they_may_use(
    member_client: httpx.AsyncClient, gateway: Gateway
) -> None:
    response = await member_client.post(ESTIMATE, json={"prompt": "p", "model": "nano_banana"})
    assert_error(response, 403, "model_not_enabled", "model")
    await enable_models(gateway, "nano_banana")
    assert (
        await member_client.post(ESTIMATE, json={"prompt": "p", "model": "nano_banana"})
    ).status_code == 200
    assert (await member_client.get("/v1/pricing")).status_code == 200


async def test_eu_only_takes_the_models_eu_route(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    await enable_models(gateway, "gpt-image-2")
    plain = (await client.post(ESTIMATE, json={"prompt": "p", "model": "gpt-image-2"})).json()
    assert (plain["provider"], plain["region"]) == ("openai", "us")
    eu = await client.post(ESTIMATE, json={"prompt": "p", "model": "auto", "use_case": "eu-only"})
    assert eu.json()["model"] == "gpt-image-2"
    assert (eu.json()["provider"], eu.json()["region"]) == ("openai", "eu")


async def test_a_tier_generates_with_its_preset(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    await enable_models(gateway, "flux_schnell")
    response = await client.post(GEN, json={"prompt": "a red fox", "tier": "draft", "mock": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "flux_schnell"
    assert (body["width"], body["height"]) == (1024, 768)  # the model's default landscape_4_3
    assert "flux_schnell" in response.headers["x-imagegate-notice"]


async def test_a_dry_run_of_a_legacy_model_names_its_replacement(client: httpx.AsyncClient) -> None:
    response = await client.post(
        GEN, params={"dry_run": "true"}, json={"model": "flux-1.1-ultra", "prompt": "p"}
    )
    assert response.status_code == 200
    assert response.json()["replacement"] == "flux-2-pro"
    assert response.headers["deprecation"] == "true"
    assert response.headers["x-imagegate-replacement"] == "flux-2-pro"
