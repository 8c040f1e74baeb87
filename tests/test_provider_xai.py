"""xAI's image API (grok-image) and DALL·E 3's prompt_revision, against the fake OpenAI
server (xAI speaks the same Images API shape at its own base URL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imagegate.catalog import load_catalog
from imagegate.config import Settings
from imagegate.providers.openai import KEEP_PROMPT
from tests.fakes.harness import harness
from tests.fakes.openai import KEY, FakeOpenAI

CATALOG = load_catalog()


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


async def test_grok_image_goes_to_xai_with_its_own_key_and_base_url(
    settings: Settings, upstream: FakeOpenAI
) -> None:
    grok = CATALOG.resolve("grok-image")
    assert grok is not None
    xai = {"xai_api_key": KEY, "xai_base_url": f"{upstream.url}/v1"}
    async with harness(settings, [grok], xai, run_workers=True) as h:
        response = await h.client.post(
            "/v1/images/generations", json={"model": "grok-image", "prompt": "a fox", "n": 2}
        )
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 2
    [call] = upstream.calls("generations")
    assert call.path == "/v1/images/generations"
    assert call.headers["authorization"] == f"Bearer {KEY}"
    assert call.json == {
        "model": "grok-2-image-1212",
        "prompt": "a fox",
        "n": 2,
        "response_format": "b64_json",
    }


async def test_prompt_revision_false_keeps_the_dall_e_3_prompt(
    settings: Settings, upstream: FakeOpenAI
) -> None:
    dalle = CATALOG.resolve("dall-e-3")
    assert dalle is not None
    async with harness(settings, [dalle], upstream.settings(), run_workers=True) as h:
        for revision in (True, False):
            response = await h.client.post(
                "/v1/images/generations",
                json={"model": "dall-e-3", "prompt": "a fox", "prompt_revision": revision},
            )
            assert response.status_code == 200, response.text
    revised, raw = upstream.calls("generations")
    assert revised.json["prompt"] == "a fox"
    assert raw.json["prompt"] == KEEP_PROMPT + "a fox"
    assert "prompt_revision" not in raw.json
