"""Every model the seeds name is in the catalog, and the seeds' prices and sizes come out
of the catalog's rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from imagegate.catalog import load_catalog
from imagegate.catalog.pricing import actual_cost, unit_price
from imagegate.config import Settings
from imagegate.gateway import Gateway
from imagegate.services.generation import plan_native, plan_openai
from tests.helpers import enable_models

CATALOG = load_catalog()

SEED_NAMES = {
    "000": [
        "gpt-image-2",
        "gpt-image-1.5",
        "gemini-3-pro",
        "flux-2-pro",
        "gemini-2.5-flash",
        "flux-2-flex",
        "flux-kontext-max",
        "recraft-v3-svg",
    ],
    "001": [
        "dall-e-3",
        "gemini-2-5-flash-image",
        "gemini-2.5-flash-image",
        "imagen-4",
        "qwen-image",
        "flux-1-pro",
        "grok-image",
    ],
    "002": [
        "flux_schnell",
        "flux_pro",
        "flux_realism",
        "nano_banana",
        "nano_banana_edit",
        "seedream_v45_edit",
        "seedream_v5_edit",
        "topaz_upscale_image",
    ],
    "003": [
        "recraft-v4",
        "recraft-v4-pro",
        "recraft-v4-vector",
        "recraft-v4-vector-pro",
        "flux-2-pro",
        "flux-kontext-pro",
        "ideogram-v3",
        "gpt-image-2",
        "minimax-image-01",
        "imagen-4-fast",
        "imagen-4",
        "imagen-4-ultra",
        "nano-banana",
        "nano-banana-3-flash",
        "flux-1.1-ultra",
        "recraft-v3",
    ],
    "004": [
        "flux-1-quick",
        "flux-2-klein",
        "flux-kontext-fast",
        "imagen-3-flash",
        "gpt-image-1-mini-low",
        "luma-photon-flash-1",
        "gpt-image-2-mini",
        "flux-1-pro",
        "imagen-3-pro",
        "flux-2-pro",
        "gpt-image-1-mini-medium",
        "ideogram-v3-turbo",
        "luma-photon-1",
        "recraft-v4",
        "leonardo-phoenix",
        "flux-2-flex",
        "flux-2-max",
        "flux-kontext-pro",
        "ideogram-v3",
        "imagen-4-pro",
        "recraft-v3",
        "gemini-2.5-flash-image",
        "gpt-image-1-mini-high",
        "gpt-image-1-medium",
        "gpt-image-2",
        "flux-1-ultra",
        "imagen-4-ultra",
        "dall-e-3",
        "gemini-3.1-flash-image-mini",
        "flux-kontext-max",
        "recraft-v3-svg",
        "recraft-v4-svg",
        "ideogram-v3-quality",
        "gemini-3.1-flash-image",
        "gemini-3-pro-image",
        "gemini-3.1-flash-image-hd",
        "gpt-image-2-hd",
        "gpt-image-1-high",
        "gemini-3-pro-image-hd",
        "recraft-v4-pro",
    ],
}


async def test_the_model_list_names_every_model_of_the_seeds(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models", params={"all": "true", "modality": "image"})
    assert response.status_code == 200
    listed: set[str] = set()
    for item in response.json()["data"]:
        listed.add(item["id"])
        listed.update(item["aliases"])
    missing = {seed: [n for n in names if n not in listed] for seed, names in SEED_NAMES.items()}
    assert missing == {seed: [] for seed in SEED_NAMES}
    assert len(response.json()["data"]) >= 50


def test_every_entry_records_its_provenance_and_price_source() -> None:
    for model in CATALOG:
        # It names a public page (or the built-in mock), never an internal document.
        assert model.provenance and "seed 0" not in model.provenance, model.slug
        assert model.price.source, model.slug
        assert model.routes, model.slug


def test_one_model_named_differently_is_one_entry() -> None:
    for names in (
        ["flux_schnell", "flux-1-quick"],
        ["gemini-2-5-flash-image", "gemini-2.5-flash-image", "nano-banana"],
        ["flux_pro", "flux-1-ultra", "flux-1.1-ultra"],
        ["nano_banana", "gemini-3-pro-image"],
        ["imagen-4", "imagen-4-pro"],
        ["recraft-v4-vector", "recraft-v4-svg"],
    ):
        slugs = {CATALOG.resolve(name).slug for name in names}  # type: ignore[union-attr]
        assert len(slugs) == 1, names


# --- prices ------------------------------------------------------------------------------


def _plan(slug: str, body: dict[str, Any]) -> Any:
    model = CATALOG.resolve(slug)
    assert model is not None
    return plan_openai(model, {"prompt": "a lighthouse", **body})


@pytest.mark.parametrize(
    ("size", "usd_micros", "credits"),
    [("1024x1024", 41_000, 8_200), ("1920x1080", 61_000, 12_200), ("2048x2048", 101_000, 20_200)],
)
def test_flux_2_pro_is_billed_per_megapixel_with_markup(
    size: str, usd_micros: int, credits: int
) -> None:
    plan = _plan("flux-2-pro", {"size": size})
    assert f"{plan.width}x{plan.height}" == size
    # seed 003's dollar figures come out of the rule, then credits at 200 per USD
    assert unit_price(plan.model.price, plan.params, plan.width, plan.height) == usd_micros
    assert plan.estimated_cost == credits


@pytest.mark.parametrize(
    ("body", "credits"),
    [
        ({"size": "1024x1024"}, 1),  # square_hd: 1 MP
        ({"image_size": "landscape_4_3"}, 1),
        ({"size": "1920x1080"}, 2),  # 1.98 MP, rounded up
        ({"size": "1100x1000"}, 2),  # just over 1 MP, rounded up
        ({"size": "2048x2048", "n": 3}, 12),
    ],
)
def test_flux_schnell_is_billed_per_megapixel_rounded_up(
    body: dict[str, Any], credits: int
) -> None:
    assert _plan("flux_schnell", body).estimated_cost == credits * 1000


@pytest.mark.parametrize(
    ("slug", "body", "credits"),
    [
        ("nano_banana", {}, 30),
        ("nano_banana", {"resolution": "2K"}, 30),
        ("nano_banana", {"resolution": "4K"}, 60),
        ("nano_banana", {"resolution": "4K", "n": 2}, 120),
        ("nano_banana_edit", {"prompt": "make it blue", "image_urls": ["https://x/a.png"]}, 30),
        (
            "nano_banana_edit",
            {
                "prompt": "make it blue",
                "image_urls": ["https://x/a.png"],
                "enable_web_search": True,
            },
            33,
        ),
        (
            "nano_banana_edit",
            {
                "prompt": "make it blue",
                "image_urls": ["https://x/a.png"],
                "resolution": "4K",
                "enable_web_search": True,
            },
            63,
        ),
        ("flux_pro", {}, 12),
        ("seedream_v45_edit", {"image_urls": ["https://x/a.png"]}, 8),
        ("seedream_v5_edit", {"image_urls": ["https://x/a.png"]}, 7),
        ("dall-e-3", {}, 4),
        ("dall-e-3", {"quality": "hd"}, 8),
        ("recraft-v4", {}, 10.8),  # $0.054
        ("recraft-v4-vector-pro", {}, 81),  # $0.405
        ("minimax-image-01", {}, 1),  # $0.005
        ("imagen-4-ultra", {}, 16.2),  # $0.081
        ("gpt-image-1", {"quality": "high"}, 120),
        ("gpt-image-1-mini-low", {}, 2),
        ("gemini-3-pro-image-hd", {}, 120),
        ("recraft-v3-svg", {}, 40),
    ],
)
def test_the_seeds_prices(slug: str, body: dict[str, Any], credits: float) -> None:
    assert _plan(slug, body).estimated_cost == round(credits * 1000)


def test_topaz_is_a_flat_16_credits() -> None:
    model = CATALOG.resolve("topaz_upscale_image")
    assert model is not None
    plan = plan_native(model, {"image_url": "https://x/a.png", "upscale_factor": 4})
    assert plan.estimated_cost == 16_000


def test_a_price_in_dollars_follows_the_credits_per_usd_setting() -> None:
    catalog = load_catalog(credits_per_usd=100)
    model = catalog.resolve("flux-2-pro")
    assert model is not None
    assert plan_openai(model, {"prompt": "p", "size": "2048x2048"}).estimated_cost == 10_100


# --- sizes: seed 004's output dimensions -------------------------------------------------

# (models, 1:1, 16:9, 9:16) as seed 004 states them
SEED_004_DIMENSIONS = [
    (
        [
            "gpt-image-2-mini",
            "gpt-image-2",
            "gpt-image-2-hd",
            "gpt-image-1",
            "gpt-image-1-high",
            "gpt-image-1-mini-low",
            "gpt-image-1-mini-medium",
            "gpt-image-1-mini-high",
        ],
        (1024, 1024),
        (1536, 1024),
        (1024, 1536),
    ),
    (
        ["imagen-3-flash", "imagen-3-pro", "imagen-4-pro", "imagen-4-ultra"],
        (1024, 1024),
        (1408, 768),
        (768, 1344),
    ),
    (
        ["ideogram-v3", "ideogram-v3-turbo", "ideogram-v3-quality"],
        (1024, 1024),
        (1280, 768),
        (768, 1344),
    ),
    (["flux-1-pro"], (1024, 1024), (1376, 768), (768, 1376)),
    (
        ["flux-2-pro", "flux-2-flex", "flux-2-max", "flux-kontext-fast", "flux-kontext-max"],
        (1440, 1440),
        (1920, 1088),
        (1088, 1920),
    ),
    (["leonardo-phoenix"], (1024, 1024), (1376, 768), (768, 1376)),
    (["recraft-v3", "recraft-v3-svg"], (1024, 1024), (1820, 1024), (1024, 1820)),
    (["luma-photon-1", "luma-photon-flash-1"], (1536, 1536), (2048, 1152), (1152, 2048)),
    (
        ["gemini-3.1-flash-image-mini", "gemini-3.1-flash-image", "gemini-3.1-flash-image-hd"],
        (1024, 1024),
        (1920, 1080),
        (1080, 1920),
    ),
    (["gemini-3-pro-image-hd"], (2048, 2048), (3840, 2160), (2160, 3840)),
    (["gemini-2.5-flash-image"], (1024, 1024), (1920, 1080), (1080, 1920)),
]


@pytest.mark.parametrize(("slugs", "square", "wide", "tall"), SEED_004_DIMENSIONS)
def test_seed_004_output_dimensions(
    slugs: list[str], square: tuple[int, int], wide: tuple[int, int], tall: tuple[int, int]
) -> None:
    for slug in slugs:
        for ratio, expected in (("1:1", square), ("16:9", wide), ("9:16", tall)):
            plan = _plan(slug, {"aspect_ratio": ratio})
            assert (plan.width, plan.height) == expected, (slug, ratio)


def test_nano_banana_pro_at_2k_gives_seed_004s_dimensions() -> None:
    # seed 004 lists gemini-3-pro-image at 2K; seed 002's default is 1K
    for ratio, expected in (("1:1", (2048, 2048)), ("16:9", (2752, 1536)), ("9:16", (1536, 2752))):
        plan = _plan("gemini-3-pro-image", {"aspect_ratio": ratio, "resolution": "2K"})
        assert (plan.width, plan.height) == expected
    assert (_plan("nano_banana", {}).width, _plan("nano_banana", {}).height) == (1024, 1024)


def test_flux_kontext_pro_dimensions_need_its_source_image() -> None:
    plan = _plan("flux-kontext-pro", {"aspect_ratio": "16:9", "image_url": "https://x/a.png"})
    assert (plan.width, plan.height) == (1920, 1088)


async def test_a_gpt_image_model_asked_for_16_9_reports_1536x1024(
    client: httpx.AsyncClient,
) -> None:
    for body in ({"aspect_ratio": "16:9"}, {"size": "1792x1024"}, {"format": "horizontal"}):
        response = await client.post(
            "/v1/pricing/estimate", json={"model": "gpt-image-1", "prompt": "p", **body}
        )
        if "size" in body:
            # 1792x1024 is DALL-E's 16:9; GPT Image does not offer it and has no same-shape size
            assert response.status_code == 400
            assert "1536x1024" in response.json()["error"]["supported_sizes"]
            continue
        assert response.status_code == 200, response.text
        estimate = response.json()
        assert (estimate["width"], estimate["height"]) == (1536, 1024)
        assert estimate["params"]["size"] == "1536x1024"


def test_format_shorts_on_flux_schnell_becomes_portrait_16_9() -> None:
    model = CATALOG.resolve("flux_schnell")
    assert model is not None
    plan = plan_native(model, {"prompt": "p", "format": "shorts"})
    assert plan.params["image_size"] == "portrait_16_9"
    assert (plan.width, plan.height) == (576, 1024)


def test_seedream_v5_reports_the_size_it_scales_to() -> None:
    model = CATALOG.resolve("seedream_v5_edit")
    assert model is not None
    plan = plan_native(
        model, {"prompt": "p", "image_urls": ["https://x/a.png"], "format": "shorts"}
    )
    assert plan.params["image_size"] == {"width": 1080, "height": 1920}  # sent as the seed says
    assert (plan.width, plan.height) == (1440, 2560)  # what the provider returns


# --- legacy models ----------------------------------------------------------------------


async def test_a_legacy_model_names_its_replacement(client: httpx.AsyncClient) -> None:
    for name, replacement in (("flux-1.1-ultra", "flux-2-pro"), ("recraft-v3", "recraft-v4")):
        model = (await client.get(f"/v1/models/{name}")).json()
        assert model["status"] == "legacy"
        assert model["deprecated"] is True
        assert model["replacement"] == replacement


async def test_a_legacy_model_still_works_and_says_what_replaces_it(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    await enable_models(gateway, "recraft-v3")
    response = await client.post(
        "/v1/images/generations", json={"model": "recraft-v3", "prompt": "a fox", "mock": True}
    )
    assert response.status_code == 200, response.text
    assert response.headers["deprecation"] == "true"
    assert response.headers["x-imagegate-replacement"] == "recraft-v4"
    assert response.headers["link"] == '</v1/models/recraft-v4>; rel="successor-version"'
    assert "recraft-v4" in response.headers["x-imagegate-notice"]
    assert response.json()["model"] == "recraft-v3"


def test_an_operator_data_file_adds_models_and_reprices_built_in_ones(tmp_path: Path) -> None:
    (tmp_path / "ours.yaml").write_text(
        """
provider: local
models:
  - slug: recraft-v4
    name: Recraft V4 (our contract)
    params: {prompt: {type: string, required: true}}
    price: {rule: per_image, amount: 5, source: our contract with Recraft}
    routes: [{provider: recraft, upstream_id: recraftv4}]
    provenance: our contract
  - slug: house-model
    name: House model
    params: {prompt: {type: string, required: true}}
    price: {rule: free, source: runs on our own GPUs}
    routes: [{provider: local, upstream_id: house}]
    provenance: our own deployment
""",
        encoding="utf-8",
    )
    catalog = load_catalog([tmp_path])
    assert len(catalog) == len(CATALOG) + 1
    recraft = catalog.resolve("recraft-v4")
    assert recraft is not None and recraft.price.source == "our contract with Recraft"
    assert plan_openai(recraft, {"prompt": "p"}).estimated_cost == 5000
    assert catalog.resolve("house-model") is not None
    settings = Settings(
        data_dir=tmp_path / "data", catalog_dirs=[tmp_path]
    )  # IMAGEGATE_CATALOG_DIRS
    assert Gateway(settings).catalog.resolve("house-model") is not None


def test_the_actual_cost_follows_the_dimensions_returned() -> None:
    model = CATALOG.resolve("flux-2-pro")
    assert model is not None
    plan = _plan("flux-2-pro", {"size": "2048x2048"})
    assert plan.estimated_cost == 20_200
    # the provider returned a smaller image than asked: it is billed at what came back
    assert actual_cost(model, plan.params, [(1024, 1024)]) == 8_200
    nano = CATALOG.resolve("nano_banana")
    assert nano is not None
    four_k = _plan("nano_banana", {"resolution": "4K", "n": 2})
    assert actual_cost(nano, four_k.params, [(4096, 4096)]) == 60_000  # one of two came back
