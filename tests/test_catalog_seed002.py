"""Seed 002's input-schema tables, row for row, against GET /v1/models/{slug}."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from imagegate.catalog import load_catalog
from imagegate.errors import InvalidParameter
from imagegate.services.generation import plan_native

MISSING = object()
RATIOS_10 = ["21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16"]
PRESETS = [
    "square_hd",
    "square",
    "portrait_4_3",
    "portrait_16_9",
    "landscape_4_3",
    "landscape_16_9",
]


def row(
    name: str,
    types: str,
    *,
    required: bool = False,
    default: Any = MISSING,
    enum: list[Any] | None = None,
    range_: tuple[float, float] | None = None,
    length: tuple[int | None, int | None] | None = None,
    max_items: int | None = None,
    object_range: tuple[int, int] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "types": set(types.split("|")),
        "required": required,
        "default": default,
        "enum": enum,
        "range": range_,
        "length": length,
        "max_items": max_items,
        "object_range": object_range,
    }


def _branches(prop: dict[str, Any]) -> list[dict[str, Any]]:
    branches: list[dict[str, Any]] = prop.get("anyOf", [prop])
    return branches


def _types(prop: dict[str, Any]) -> set[str]:
    kinds: set[str] = set()
    for branch in _branches(prop):
        kind = branch["type"]
        kinds.update(kind if isinstance(kind, list) else [kind])
    return kinds


def _enum(prop: dict[str, Any]) -> list[Any] | None:
    for branch in _branches(prop):
        if "enum" in branch:
            return list(branch["enum"])
        if "examples" in branch:  # a free-form enum: the listed values, others allowed too
            return list(branch["examples"])
    return None


def check_table(schema: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    properties = schema["properties"]
    assert list(properties) == [r["name"] for r in rows], "parameters or their order differ"
    assert schema["additionalProperties"] is False
    assert schema["required"] == [r["name"] for r in rows if r["required"]]
    for expected in rows:
        name = expected["name"]
        prop = properties[name]
        assert _types(prop) == expected["types"], name
        if expected["default"] is MISSING:
            assert "default" not in prop, name
        else:
            assert prop["default"] == expected["default"], name
        assert _enum(prop) == expected["enum"], name
        if expected["range"] is not None:
            assert (prop.get("minimum"), prop.get("maximum")) == expected["range"], name
        else:
            assert "minimum" not in prop and "maximum" not in prop, name
        if expected["length"] is not None:
            assert (prop.get("minLength"), prop.get("maxLength")) == expected["length"], name
        if expected["max_items"] is not None:
            assert prop["maxItems"] == expected["max_items"], name
        if expected["object_range"] is not None:
            [obj] = [b for b in _branches(prop) if b["type"] == "object"]
            low, high = expected["object_range"]
            assert obj["required"] == ["width", "height"], name
            for side in ("width", "height"):
                assert obj["properties"][side]["type"] == "integer", name
                assert (obj["properties"][side]["minimum"], obj["properties"][side]["maximum"]) == (
                    low,
                    high,
                )


async def schema_of(client: httpx.AsyncClient, slug: str) -> dict[str, Any]:
    response = await client.get(f"/v1/models/{slug}")
    assert response.status_code == 200, response.text
    schema: dict[str, Any] = response.json()["input_schema"]
    assert schema["$schema"].startswith("https://json-schema.org/")
    return schema


async def test_flux_schnell_table(client: httpx.AsyncClient) -> None:
    check_table(
        await schema_of(client, "flux_schnell"),
        [
            row("prompt", "string", required=True),
            row(
                "image_size",
                "string|object",
                default="landscape_4_3",
                enum=PRESETS,
                object_range=(1, 14142),
            ),
            row("num_inference_steps", "integer", default=4, range_=(1, 12)),
            row("num_images", "integer", default=1, range_=(1, 4)),
            row("guidance_scale", "number", default=3.5, range_=(1, 20)),
            row("seed", "integer|null", default=None),
            row("output_format", "string", default="jpeg", enum=["jpeg", "png"]),
            row("enable_safety_checker", "boolean", default=True),
            row("acceleration", "string", default="none", enum=["none", "regular", "high"]),
            row("sync_mode", "boolean", default=False),
        ],
    )


async def test_flux_pro_ultra_table(client: httpx.AsyncClient) -> None:
    schema = await schema_of(client, "flux_pro")
    check_table(
        schema,
        [
            row("prompt", "string", required=True),
            row("seed", "integer", default=None),
            row("sync_mode", "boolean", default=False),
            row("num_images", "integer", default=1, range_=(1, 4)),
            row("output_format", "string", default="jpeg", enum=["jpeg", "png"]),
            row("safety_tolerance", "string", default="2", enum=["1", "2", "3", "4", "5", "6"]),
            row("enhance_prompt", "boolean", default=False),
            row("image_url", "string", default=None),
            row("image_prompt_strength", "number", default=0.1, range_=(0, 1)),
            row(
                "aspect_ratio",
                "string",
                default="9:16",
                enum=["21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21"],
            ),
            row("raw", "boolean", default=False),
        ],
    )
    # "free-form string also accepted": listed as examples, not a closed enum
    assert "enum" not in schema["properties"]["aspect_ratio"]


async def test_flux_realism_table(client: httpx.AsyncClient) -> None:
    check_table(
        await schema_of(client, "flux_realism"),
        [
            row("prompt", "string", required=True),
            row(
                "image_size",
                "string|object",
                default="landscape_4_3",
                enum=PRESETS,
                object_range=(1, 14142),
            ),
            row("guidance_scale", "number", default=2.5, range_=(0, 20)),
            row("num_inference_steps", "integer", default=40, range_=(4, 50)),
            row("acceleration", "string", default="regular", enum=["none", "regular"]),
            row("seed", "integer|null"),
            row("sync_mode", "boolean", default=False),
            row("enable_safety_checker", "boolean", default=True),
            row("output_format", "string", default="png", enum=["png", "jpeg", "webp"]),
            row("num_images", "integer", default=1, range_=(1, 4)),
            row("lora_scale", "number", default=1, range_=(0, 2)),
        ],
    )


async def test_nano_banana_pro_table(client: httpx.AsyncClient) -> None:
    check_table(
        await schema_of(client, "nano_banana"),
        [
            row("prompt", "string", required=True),
            row("num_images", "integer", default=1, range_=(1, 4)),
            row("seed", "integer"),
            row("aspect_ratio", "string", default="1:1", enum=RATIOS_10),
            row("output_format", "string", default="png", enum=["jpeg", "png", "webp"]),
            row("resolution", "string", default="1K", enum=["1K", "2K", "4K"]),
        ],
    )


async def test_nano_banana_pro_edit_table(client: httpx.AsyncClient) -> None:
    check_table(
        await schema_of(client, "nano_banana_edit"),
        [
            row("prompt", "string", required=True, length=(3, 50000)),
            row("image_urls", "array", required=True, max_items=14),
            row("num_images", "integer", default=1, range_=(1, 4)),
            row("seed", "integer|null"),
            row("aspect_ratio", "string", default="auto", enum=["auto", *RATIOS_10]),
            row("output_format", "string", default="png", enum=["jpeg", "png", "webp"]),
            row("safety_tolerance", "string", default="4", enum=["1", "2", "3", "4", "5", "6"]),
            row("sync_mode", "boolean", default=False),
            row("system_prompt", "string", default="", length=(None, 50000)),
            row("resolution", "string", default="1K", enum=["1K", "2K", "4K"]),
            row("limit_generations", "boolean", default=False),
            row("enable_web_search", "boolean", default=False),
        ],
    )


async def test_seedream_v45_edit_table(client: httpx.AsyncClient) -> None:
    check_table(
        await schema_of(client, "seedream_v45_edit"),
        [
            row("prompt", "string", required=True),
            row("image_urls", "array", required=True, max_items=10),
            row(
                "image_size",
                "string|object",
                default={"width": 2048, "height": 2048},
                enum=[*PRESETS, "auto_2K", "auto_4K"],
                object_range=(1920, 4096),
            ),
            row("num_images", "integer", default=1, range_=(1, 6)),
            row("max_images", "integer", default=1, range_=(1, 6)),
            row("seed", "integer|null", default=None),
            row("sync_mode", "boolean", default=False),
            row("enable_safety_checker", "boolean", default=True),
        ],
    )


async def test_seedream_v5_lite_edit_table(client: httpx.AsyncClient) -> None:
    check_table(
        await schema_of(client, "seedream_v5_edit"),
        [
            row("prompt", "string", required=True),
            row("image_urls", "array", required=True, max_items=10),
            row(
                "image_size",
                "string|object",
                default="auto_2K",
                enum=[*PRESETS, "auto_2K", "auto_3K", "auto_4K"],
                object_range=(1, 14142),
            ),
            row("num_images", "integer", default=1, range_=(1, 6)),
            row("max_images", "integer", default=1, range_=(1, 6)),
            row("sync_mode", "boolean", default=False),
            row("enable_safety_checker", "boolean", default=True),
        ],
    )


async def test_topaz_upscale_table(client: httpx.AsyncClient) -> None:
    topaz_models = [
        "Low Resolution V2",
        "Standard V2",
        "CGI",
        "High Fidelity V2",
        "Text Refine",
        "Recovery",
        "Redefine",
        "Recovery V2",
        "Standard MAX",
        "Wonder",
        "Wonder 3",
    ]
    check_table(
        await schema_of(client, "topaz_upscale_image"),
        [
            row("image_url", "string", required=True, length=(1, None)),
            row("model", "string", default="Standard V2", enum=topaz_models),
            row("upscale_factor", "number", default=2, range_=(1, 4)),
            row("crop_to_fill", "boolean", default=False),
            row("output_format", "string", default="jpeg", enum=["jpeg", "png"]),
            row(
                "subject_detection",
                "string",
                default="All",
                enum=["All", "Foreground", "Background"],
            ),
            row("face_enhancement", "boolean", default=True),
            row("face_enhancement_creativity", "number", default=0, range_=(0, 1)),
            row("face_enhancement_strength", "number", default=0.8, range_=(0, 1)),
            row("sharpen", "number", range_=(0, 1)),
            row("denoise", "number", range_=(0, 1)),
            row("fix_compression", "number", range_=(0, 1)),
            row("strength", "number", range_=(0.01, 1)),
            row("creativity", "integer", range_=(1, 6)),
            row("texture", "integer", range_=(1, 5)),
            row("prompt", "string", length=(None, 1024)),
            row("autoprompt", "boolean"),
            row("detail", "number", range_=(0, 1)),
            row("enhancement_strength", "string", enum=["low", "medium", "high"]),
        ],
    )


# --- the wrapper `format` of each seed-002 model: mapped to its own size field ---------

CATALOG = load_catalog()


@pytest.mark.parametrize(
    ("slug", "base", "shorts", "horizontal", "default"),
    [
        ("flux_schnell", {"prompt": "p"}, "portrait_16_9", "landscape_16_9", "portrait_16_9"),
        ("flux_pro", {"prompt": "p"}, "9:16", "16:9", "9:16"),
        ("flux_realism", {"prompt": "p"}, "portrait_16_9", "landscape_16_9", "landscape_4_3"),
        ("nano_banana", {"prompt": "p"}, "9:16", "16:9", "1:1"),
        (
            "nano_banana_edit",
            {"prompt": "ppp", "image_urls": ["https://x/a.png"]},
            "9:16",
            "16:9",
            "auto",
        ),
        (
            "seedream_v5_edit",
            {"prompt": "p", "image_urls": ["https://x/a.png"]},
            {"width": 1080, "height": 1920},
            {"width": 1920, "height": 1080},
            "auto_2K",
        ),
    ],
)
def test_format_maps_to_the_models_size_field(
    slug: str, base: dict[str, Any], shorts: Any, horizontal: Any, default: Any
) -> None:
    model = CATALOG.resolve(slug)
    assert model is not None and model.sizes.field is not None
    field = model.sizes.field
    assert plan_native(model, {**base, "format": "shorts"}).params[field] == shorts
    assert plan_native(model, {**base, "format": "reels"}).params[field] == shorts
    assert plan_native(model, {**base, "format": "horizontal"}).params[field] == horizontal
    assert plan_native(model, base).params[field] == default


def test_seedream_v45_format_is_scaled_into_its_size_bounds() -> None:
    model = CATALOG.resolve("seedream_v45_edit")
    assert model is not None
    plan = plan_native(
        model, {"prompt": "p", "image_urls": ["https://x/a.png"], "format": "shorts"}
    )
    # 1080x1920 is below the model's 1920 px minimum side: same shape, scaled up
    assert (plan.width, plan.height) == (1920, 3414)
    assert plan.params["image_size"] == {"width": 1920, "height": 3414}


def test_topaz_has_no_format() -> None:
    model = CATALOG.resolve("topaz_upscale_image")
    assert model is not None and model.sizes.field is None
    with pytest.raises(InvalidParameter) as caught:
        plan_native(model, {"image_url": "https://x/a.png", "format": "shorts"})
    assert caught.value.param == "format"
    assert caught.value.status_code == 400
