"""docs/catalog.md says what the catalog does: a test fails when it falls behind."""

from __future__ import annotations

from pathlib import Path

from imagegate.app import create_app
from imagegate.catalog import load_catalog
from imagegate.config import Settings

DOC = (Path(__file__).parent.parent / "docs" / "catalog.md").read_text(encoding="utf-8")
CATALOG = load_catalog()


def test_every_model_is_documented() -> None:
    missing = [model.slug for model in CATALOG if f"`{model.slug}`" not in DOC]
    assert missing == []


def test_every_catalog_endpoint_is_documented(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    paths = {
        path for path in app.openapi()["paths"] if path.startswith(("/v1/models", "/v1/pricing"))
    }
    assert paths == {"/v1/models", "/v1/models/{slug}", "/v1/pricing", "/v1/pricing/estimate"}
    for path in paths:
        assert path in DOC, path
    assert "?dry_run=true" in DOC


def test_the_catalog_settings_are_documented() -> None:
    for name in ("credits_per_usd", "credit_value_micro_eur"):
        field = Settings.model_fields[name]
        assert f"`IMAGEGATE_{name.upper()}`" in DOC
        assert f"| `IMAGEGATE_{name.upper()}` | {field.default} |" in DOC
    assert "| `IMAGEGATE_CATALOG_DIRS` | none |" in DOC


def test_error_codes_tiers_and_use_cases_are_documented() -> None:
    for code in (
        "invalid_parameter",
        "image_url_required",
        "too_many_references",
        "no_model_for_use_case",
    ):
        assert f"`{code}`" in DOC, code
    for tier, slug in CATALOG.choices.tiers.items():
        assert f"`{tier}` →\n   `{slug}`" in DOC or f"`{tier}` → `{slug}`" in DOC, tier
    for use_case in CATALOG.choices.use_cases:
        assert f"| `{use_case}` |" in DOC, use_case


def test_the_star_rule_in_the_docs_is_the_one_applied() -> None:
    arena = CATALOG.arena
    assert arena is not None
    first, second, third, fourth = arena.bands
    assert (
        f"within {first} points: 5 stars; within {second}: 4; within {third}: 3; within {fourth}: 2"
        in DOC
    )
    assert arena.stars_for(arena.top) == 5
    assert arena.stars_for(arena.top - first - 1) == 4
    assert arena.stars_for(arena.top - fourth - 1) == 1
