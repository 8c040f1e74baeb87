"""Operator overlays: a model on a self-hosted OpenAI-compatible server (a fake one on
loopback), two prices overridden, one model hidden; the gateway lists, prices and routes
them so, and a broken overlay is refused with its file, line and field."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from imagegate.app import create_app
from imagegate.catalog import load_catalog
from imagegate.catalog.overlay import CatalogError
from imagegate.cli import app as cli_app
from imagegate.config import Settings
from imagegate.errors import ProviderNotConfigured
from imagegate.gateway import Gateway
from imagegate.providers.endpoints import register_endpoints
from imagegate.providers.registry import ProviderRegistry
from tests.billing_support import grant
from tests.fakes.compatible import FakeCompatible
from tests.governance import as_key, new_member
from tests.helpers import assert_error, decode_image

KEY = "sk-self-hosted"

OVERLAY = """\
# Our own models and prices.
models:
  - slug: flux-self
    name: FLUX.1 Schnell (self-hosted)
    provider: self
    params:
      prompt: {{type: string, required: true, min_length: 1}}
      size: {{type: string, default: "512x512", enum: ["512x512", "768x512"]}}
      num_inference_steps: {{type: integer, default: 4, minimum: 1, maximum: 50}}
    sizes:
      field: size
      style: wxh
      default: "512x512"
      options: {{"512x512": [512, 512], "768x512": [768, 512]}}
    price: 1
    routes:
      - provider: openai_compatible
        upstream_id: flux-schnell
        base_url: {url}/v1
        api_key_env: SELF_HOSTED_KEY
    provenance: our own server
change:
  gpt-image-2:
    price: 25
    tier: premium
  imagen-4:
    price: {{rule: per_image, amount: 12, source: our contract}}
    margin_percent: 35
hide: [dall-e-3]
"""


async def _enable(client: httpx.AsyncClient, slug: str) -> None:
    """As an admin enables a model (the first start may have enabled it already)."""
    response = await client.patch(f"/v1/admin/image-models/{slug}", json={"enabled": True})
    assert response.status_code == 200, response.text


@pytest.fixture
def upstream() -> Iterator[FakeCompatible]:
    fake = FakeCompatible(key=KEY).start()
    yield fake
    fake.stop()


@pytest.fixture
def settings(
    tmp_path: Path, database_url: str, upstream: FakeCompatible, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    overlays = tmp_path / "catalog"
    overlays.mkdir()
    (overlays / "ours.yaml").write_text(OVERLAY.format(url=upstream.url))
    monkeypatch.setenv("SELF_HOSTED_KEY", KEY)
    return Settings(
        environment="test",
        data_dir=tmp_path / "data",
        database_url=database_url,
        lease_seconds=5,
        catalog_dirs=[overlays],
    )


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway on these settings and an admin's client, in the test's own task."""
    gateway = Gateway(settings)
    app = create_app(settings, gateway=gateway)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers={"Authorization": f"Bearer {gateway.first_admin_key}"},
        ) as client,
    ):
        yield client


async def test_lists_prices_and_routes_the_overlay(
    settings: Settings, upstream: FakeCompatible
) -> None:
    async with serving(settings) as client:
        await _lists_prices_and_routes(client, upstream)


async def _lists_prices_and_routes(client: httpx.AsyncClient, upstream: FakeCompatible) -> None:
    models = {m["id"]: m for m in (await client.get("/v1/models?all=true")).json()["data"]}
    assert "dall-e-3" not in models
    assert (await client.get("/v1/models/dall-e-3")).status_code == 404
    assert models["flux-self"]["safety_filter"] is False
    assert models["gpt-image-2"]["safety_filter"] is True
    assert models["gpt-image-2"]["tier"] == "premium"
    assert models["flux-self"]["allowedParams"]["supported_sizes"] == ["512x512", "768x512"]

    table = {row["model"]: row for row in (await client.get("/v1/pricing")).json()["data"]}
    assert table["gpt-image-2"]["per_image_1024"]["credits"] == 25
    assert table["gpt-image-2"]["set_by"] == "operator overlay"
    assert "ours.yaml" in table["gpt-image-2"]["source"]
    assert table["imagen-4"]["per_image_1024"]["credits"] == 12
    assert table["imagen-4"]["source"] == "our contract"
    assert table["imagen-4"]["margin_percent"] == 35
    # 12 credits x 0.0046 EUR x 1.35
    assert table["imagen-4"]["per_image_1024"]["eur"] == pytest.approx(0.0745)
    assert table["imagen-4-ultra"]["set_by"] == "catalog"
    assert table["flux-self"]["per_image_1024"]["credits"] == 1
    assert table["flux-self"]["safety_filter"] is False

    await _enable(client, "flux-self")
    await client.patch("/v1/admin/settings", json={"unfiltered_models_allowed": True})
    await grant(client, 10)
    response = await client.post(
        "/v1/images/generations",
        json={"model": "flux-self", "prompt": "a lighthouse", "size": "768x512"},
    )
    assert response.status_code == 200, response.text
    image = decode_image(response.json()["data"][0]["b64_json"])
    assert image.size == (768, 512)
    [call] = upstream.calls("generations")
    assert call.headers["authorization"] == f"Bearer {KEY}"
    assert call.json == {
        "model": "flux-schnell",
        "prompt": "a lighthouse",
        "n": 1,
        "size": "768x512",
        "response_format": "b64_json",
        "num_inference_steps": 4,
    }
    assert (await client.get("/v1/credits")).json()["available"] == 9


async def test_members_need_the_admins_leave_for_unfiltered_models(settings: Settings) -> None:
    async with serving(settings) as client:
        _, secret = await new_member(client)
        async with as_key(client, secret) as member:
            await _enable(client, "flux-self")
            await grant(client, 10)
            body = {"model": "flux-self", "prompt": "a lighthouse"}
            refused = await member.post("/v1/images/generations", json=body)
            assert_error(refused, 403, "unfiltered_model_not_allowed", "model")
            changed = await client.patch(
                "/v1/admin/settings", json={"unfiltered_models_allowed": True}
            )
            assert changed.json()["unfiltered_models_allowed"] is True
            allowed = await member.post("/v1/images/generations", json=body)
            assert allowed.status_code == 200, allowed.text


def _write(tmp_path: Path, text: str) -> Path:
    directory = tmp_path / "broken"
    directory.mkdir(exist_ok=True)
    (directory / "ops.yaml").write_text(text)
    return directory


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        ("change:\n  gpt-image-2:\n    tier: gold\n", "ops.yaml:3", "tier"),
        ("change:\n  gpt-image-2:\n    colour: red\n", "ops.yaml:3", "not a field"),
        ("change:\n  no-such-model:\n    tier: premium\n", "ops.yaml:2", "unknown model"),
        ("hide:\n  - dall-e-3\n  - dall-e-9\n", "ops.yaml:3", "unknown model 'dall-e-9'"),
        ("change:\n  imagen-4:\n    price_source: nowhere\n", "ops.yaml:3", "tier_table"),
        (
            "change:\n  gpt-image-2:\n    price: {rule: per_image, amount: -0.0001}\n",
            "ops.yaml:3",
            "price",
        ),
        (
            "add_routes:\n  flux-2-pro:\n    - provider: openai_compatible\n"
            "      upstream_id: x\n      base_url: ftp://nowhere\n",
            "ops.yaml:5",
            "base_url",
        ),
        ("modles: []\n", "ops.yaml:1", "unknown section"),
        ("change:\n  gpt-image-2: [\n", "ops.yaml:3", "not valid YAML"),
    ],
)
def test_a_broken_overlay_names_file_line_and_field(
    tmp_path: Path, text: str, where: str, says: str
) -> None:
    with pytest.raises(CatalogError) as caught:
        load_catalog([_write(tmp_path, text)])
    message = str(caught.value)
    assert where in message, message
    assert says in message, message


def test_the_server_refuses_to_start_on_a_broken_overlay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _write(tmp_path, "change:\n  gpt-image-2:\n    stars: 9\n")
    monkeypatch.setenv("IMAGEGATE_CATALOG_DIRS", f'["{directory}"]')
    result = CliRunner().invoke(cli_app, ["models", "--source"])
    assert result.exit_code != 0
    assert isinstance(result.exception, CatalogError)
    assert "ops.yaml:3: stars: Input should be less than or equal to 5" in str(result.exception)


def test_models_source_says_where_each_value_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _write(
        tmp_path,
        "change:\n  imagen-4:\n    price_source: tier_table\n    stars: 2\n"
        "add_routes:\n  gpt-image-2:\n"
        "    - {provider: openai, upstream_id: gpt-image-2, base_url: 'https://proxy.test/v1',"
        " api_key_env: PROXY_KEY, region: eu}\n"
        "hide: [grok-image]\n",
    )
    monkeypatch.setenv("IMAGEGATE_CATALOG_DIRS", f'["{directory}"]')
    result = CliRunner().invoke(cli_app, ["models", "--source"], terminal_width=200)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "imagen-4  data/google.yaml:" in out
    assert "  price_source: tier_table  <- " in out and "ops.yaml:3" in out
    assert "  stars: 2  <- " in out
    assert "openai:gpt-image-2: openai at https://proxy.test/v1, key from $PROXY_KEY" in out
    assert "hidden: grok-2-image, grok-image" in out


def test_the_operator_picks_among_published_prices() -> None:
    shipped = load_catalog()
    chosen = load_catalog(price_sources=["guide", "tier_table"])
    imagen = shipped.resolve("imagen-4")
    assert imagen is not None and imagen.price.currency == "usd"
    picked = chosen.resolve("imagen-4")
    assert picked is not None and picked.price_source == "guide"
    assert picked.price.amount == 8000 and set(picked.prices) == {"guide", "tier_table", "default"}
    ultra = chosen.resolve("imagen-4-ultra")
    assert ultra is not None and ultra.price_source == "tier_table"
    # Models with one published price keep it.
    mini = chosen.resolve("gpt-image-2-mini")
    assert mini is not None and mini.price_source is None


def test_a_route_of_its_own_uses_its_own_key_and_says_what_to_set(tmp_path: Path) -> None:
    catalog = load_catalog(
        [
            _write(
                tmp_path,
                "add_routes:\n  flux-2-pro:\n"
                "    - {provider: bfl, upstream_id: flux-2-pro, base_url: 'https://proxy.test/v1',"
                " api_key_env: PROXY_KEY, region: eu}\n",
            )
        ]
    )
    model = catalog.resolve("flux-2-pro")
    assert model is not None and model.routes[-1].provider == "bfl:flux-2-pro"
    assert model.routes[-1].region == "eu"
    missing = ProviderRegistry()
    register_endpoints(missing, catalog.endpoints, Settings(), env={})
    with pytest.raises(ProviderNotConfigured, match="PROXY_KEY"):
        missing.get("bfl:flux-2-pro")
    present = ProviderRegistry()
    register_endpoints(present, catalog.endpoints, Settings(), env={"PROXY_KEY": "k"})
    adapter = present.get("bfl:flux-2-pro")
    assert adapter.name == "bfl:flux-2-pro"
    assert getattr(adapter, "base_urls", {})["eu"] == "https://proxy.test/v1"


async def test_a_tier_whose_model_is_hidden_is_refused_naming_the_tier(settings: Settings) -> None:
    (settings.catalog_dirs[0] / "zz-hide.yaml").write_text("hide: [flux_schnell]\n")
    async with serving(settings) as client:
        response = await client.post(
            "/v1/images/generations", json={"prompt": "p", "tier": "draft"}
        )
    error = assert_error(response, 400, "invalid_parameter", "tier")
    assert "hidden by the operator" in error["message"]
