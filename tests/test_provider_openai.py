"""OpenAI Images: generations (JSON) and edits (multipart), b64_json and url results."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import pytest
from PIL import Image

from imagegate.config import Settings
from imagegate.errors import ContentPolicyViolation, InvalidParameter
from imagegate.providers.base import InputImage, ProviderRequest
from imagegate.providers.openai import OpenAIProvider
from tests.fakes.harness import PROMPT, harness, spec
from tests.fakes.openai import KEY, FakeOpenAI, invalid_param, moderation_blocked
from tests.fakes.server import Reply, png
from tests.helpers import assert_error, decode_image

GPT_IMAGE = spec(
    "gpt-image",
    [{"provider": "openai", "upstream_id": "gpt-image-1"}],
    params={
        "prompt": PROMPT,
        "n": {"type": "integer", "default": 1, "minimum": 1, "maximum": 4},
        "size": {
            "type": "string",
            "default": "1024x1024",
            "enum": ["1024x1024", "1536x1024", "1024x1536"],
        },
        "quality": {"type": "string", "default": "auto", "enum": ["auto", "low", "medium", "high"]},
        "background": {
            "type": "string",
            "default": "auto",
            "enum": ["auto", "transparent", "opaque"],
        },
        "moderation": {"type": "string", "default": "auto", "enum": ["auto", "low"]},
        "output_format": {"type": "string", "default": "png", "enum": ["png", "jpeg", "webp"]},
        "output_compression": {"type": "integer", "default": 100, "minimum": 0, "maximum": 100},
    },
    sizes={
        "field": "size",
        "style": "wxh",
        "default": "1024x1024",
        "options": {
            "1024x1024": [1024, 1024],
            "1536x1024": [1536, 1024],
            "1024x1536": [1024, 1536],
        },
    },
    count_field="n",
    format_field="output_format",
    output_formats=["png", "jpeg", "webp"],
    actions=["generate", "edit"],
)
DALLE = spec(
    "dalle",
    [{"provider": "openai", "upstream_id": "dall-e-3"}],
    params={
        "prompt": PROMPT,
        "size": {"type": "string", "default": "1024x1024", "enum": ["1024x1024", "1792x1024"]},
        "quality": {"type": "string", "default": "standard", "enum": ["standard", "hd"]},
        "style": {"type": "string", "default": "vivid", "enum": ["vivid", "natural"]},
    },
    sizes={
        "field": "size",
        "style": "wxh",
        "default": "1024x1024",
        "options": {"1024x1024": [1024, 1024], "1792x1024": [1792, 1024]},
    },
)


@pytest.fixture
def openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


async def test_generation_sends_the_documented_body_and_stores_the_images(
    settings: Settings, openai: FakeOpenAI
) -> None:
    async with harness(settings, [GPT_IMAGE, DALLE], openai.settings(), run_workers=True) as h:
        response = await h.client.post(
            "/v1/images/generations",
            json={
                "model": "gpt-image",
                "prompt": "a lighthouse",
                "n": 2,
                "size": "1536x1024",
                "quality": "high",
                "background": "opaque",
                "moderation": "low",
                "output_format": "webp",
                "output_compression": 80,
            },
        )
        assert response.status_code == 200, response.text
        body = response.json()
        row = await h.job_row(body["job_id"])
    assert len(body["data"]) == 2
    for item in body["data"]:
        image = decode_image(item["b64_json"])
        assert (image.format, image.size) == ("WEBP", (1536, 1024))
        assert item["revised_prompt"] == "revised: a lighthouse"
    [call] = openai.calls("generations")
    assert call.path == "/v1/images/generations"
    assert call.headers["authorization"] == f"Bearer {KEY}"
    assert call.json == {
        "model": "gpt-image-1",
        "prompt": "a lighthouse",
        "n": 2,
        "size": "1536x1024",
        "quality": "high",
        "background": "opaque",
        "moderation": "low",
        "output_format": "webp",
        "output_compression": 80,
    }
    assert row.provider_request_id == "req_gen-1"
    assert row.result is not None and row.result["usage"]["total_tokens"] == 4172


async def test_dalle_asks_for_base64_and_passes_style(
    settings: Settings, openai: FakeOpenAI
) -> None:
    async with harness(settings, [DALLE], openai.settings()) as h:
        job = await h.run(
            {"model": "dalle", "prompt": "p", "style": "natural", "size": "1792x1024"}
        )
    assert job["status"] == "succeeded", job
    body = openai.calls("generations")[0].json
    assert body["response_format"] == "b64_json"
    assert body["style"] == "natural"
    assert (job["outputs"][0]["width"], job["outputs"][0]["height"]) == (1792, 1024)


async def test_base64_with_line_breaks_is_decoded_and_answered_canonical(
    settings: Settings, openai: FakeOpenAI
) -> None:
    openai.b64_with_line_breaks = True
    async with harness(settings, [GPT_IMAGE], openai.settings(), run_workers=True) as h:
        response = await h.client.post(
            "/v1/images/generations", json={"model": "gpt-image", "prompt": "p"}
        )
    assert response.status_code == 200, response.text
    [item] = response.json()["data"]
    assert "\n" not in item["b64_json"]
    assert base64.b64decode(item["b64_json"], validate=True) == png(1024, 1024, colour=(0, 80, 160))


async def test_url_results_are_downloaded_at_once(settings: Settings, openai: FakeOpenAI) -> None:
    openai.answer_with_urls = True
    async with harness(settings, [DALLE], openai.settings()) as h:
        job = await h.run({"model": "dalle", "prompt": "p"})
        data = await h.content(job["outputs"][0])
    assert Image.open(io.BytesIO(data)).size == (1024, 1024)
    assert len(openai.calls("download")) == 1


async def test_moderation_blocked_is_a_400_with_the_reason(
    settings: Settings, openai: FakeOpenAI
) -> None:
    openai.script("generations", Reply(400, moderation_blocked()))
    async with harness(settings, [GPT_IMAGE], openai.settings(), run_workers=True) as h:
        response = await h.client.post(
            "/v1/images/generations", json={"model": "gpt-image", "prompt": "x"}
        )
    error = assert_error(response, 400, "content_policy_violation")
    assert error["provider_reason"] == "Your request was rejected by the safety system."
    assert len(openai.calls("generations")) == 1


async def test_invalid_parameter_names_openais_param(
    settings: Settings, openai: FakeOpenAI
) -> None:
    openai.script(
        "generations", Reply(400, invalid_param("background", "transparent needs png or webp"))
    )
    async with harness(settings, [GPT_IMAGE], openai.settings()) as h:
        job = await h.run({"model": "gpt-image", "prompt": "x"})
    assert job["error"]["code"] == "invalid_parameter"
    assert "background" in job["error"]["message"]


async def test_429_with_retry_after_ms_is_retried(settings: Settings, openai: FakeOpenAI) -> None:
    openai.script(
        "generations", Reply(429, {"error": {"message": "slow"}}, headers={"retry-after-ms": "200"})
    )
    async with harness(settings, [GPT_IMAGE], openai.settings()) as h:
        job = await h.run({"model": "gpt-image", "prompt": "x"})
    assert job["status"] == "succeeded", job
    first, second = openai.calls("generations")
    assert second.at - first.at >= 0.2


def _edit_request(**overrides: object) -> ProviderRequest:
    values: dict[str, object] = {
        "job_id": "job_1",
        "model": "gpt-image",
        "upstream_model": "gpt-image-1",
        "action": "edit",
        "params": {"size": "1024x1024", "input_fidelity": "high", "output_format": "png"},
        "n": 1,
        "width": 1024,
        "height": 1024,
        "output_format": "png",
        "timeout_s": 10,
        "prompt": "make it winter",
        "inputs": (
            InputImage(png(64, 64), "image/png"),
            InputImage(png(32, 32, "JPEG"), "image/jpeg"),
        ),
        "mask": InputImage(png(64, 64), "image/png"),
    }
    values.update(overrides)
    return ProviderRequest(**values)  # type: ignore[arg-type]


async def test_edits_are_multipart_with_repeated_image_fields_and_a_mask(
    openai: FakeOpenAI,
) -> None:
    adapter = OpenAIProvider(KEY, base_url=f"{openai.url}/v1")
    result = await adapter.generate(_edit_request())
    await adapter.aclose()
    [call] = openai.calls("edits")
    assert call.headers["content-type"].startswith("multipart/form-data")
    images = call.form["image[]"]
    assert [(name, ctype) for name, _, ctype in images] == [
        ("image-0.png", "image/png"),
        ("image-1.jpg", "image/jpeg"),
    ]
    assert call.form["mask"][0][0] == "mask.png"
    assert call.form["prompt"] == ["make it winter"]
    assert call.form["model"] == ["gpt-image-1"]
    assert call.form["input_fidelity"] == ["high"]
    assert "response_format" not in call.form
    assert result.provider_request_id == "req_edit-1"
    assert len(result.images) == 1 and result.images[0].content_type == "image/png"


async def test_adapter_raises_typed_errors(openai: FakeOpenAI) -> None:
    adapter = OpenAIProvider(KEY, base_url=f"{openai.url}/v1")
    openai.script(
        "edits", Reply(400, moderation_blocked()), Reply(400, invalid_param("mask", "mask size"))
    )
    with pytest.raises(ContentPolicyViolation) as refused:
        await adapter.generate(_edit_request())
    assert (
        refused.value.extra["provider_reason"] == "Your request was rejected by the safety system."
    )
    with pytest.raises(InvalidParameter) as invalid:
        await adapter.generate(_edit_request())
    assert invalid.value.param == "mask"
    await adapter.aclose()


@pytest.mark.parametrize(
    "text",
    [
        "QUJ",  # cut short: bad padding
        "QUJD\u00e9" * 20_000,  # not ASCII, in an answer large enough for the quick parse
        base64.b64encode(b"not an image").decode(),  # decodes, to bytes that are no image
    ],
)
async def test_base64_that_is_no_image_is_a_bad_upstream_answer(
    settings: Settings, openai: FakeOpenAI, text: str
) -> None:
    openai.script("generations", Reply(200, {"created": 1, "data": [{"b64_json": text}]}))
    async with harness(settings, [GPT_IMAGE], openai.settings()) as h:
        job = await h.run({"model": "gpt-image", "prompt": "x"})
        root = h.gateway.blobs.root  # type: ignore[attr-defined]
    assert job["status"] == "failed"
    assert job["error"]["code"] == "upstream_bad_response"
    # An output written beside the check that failed it is removed again.
    assert [path for path in root.rglob("*") if path.is_file()] == []


async def test_a_failed_blob_write_fails_the_job_and_leaves_no_blob(
    settings: Settings, openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = base64.b64encode(png(1024, 1024)).decode()
    openai.script("generations", Reply(200, {"created": 1, "data": [{"b64_json": image}] * 2}))
    async with harness(settings, [GPT_IMAGE], openai.settings()) as h:
        blobs = h.gateway.runner.blobs
        put = blobs.put

        async def second_fails(key: str, data: bytes, content_type: str) -> str:
            if key.endswith("-1.png"):
                raise OSError(28, "No space left on device")
            return await put(key, data, content_type)

        monkeypatch.setattr(blobs, "put", second_fails)
        job = await h.run({"model": "gpt-image", "prompt": "x", "n": 2})
        root = blobs.root  # type: ignore[attr-defined]
    assert (job["status"], job["error"]["code"]) == ("failed", "internal_error")
    assert job["charged_amount"] == 0
    assert [path for path in root.rglob("*") if path.is_file()] == []


async def test_an_image_that_is_not_a_string_is_a_bad_upstream_answer(
    settings: Settings, openai: FakeOpenAI
) -> None:
    openai.script("generations", Reply(200, {"created": 1, "data": [{"b64_json": [1, 2]}]}))
    async with harness(settings, [GPT_IMAGE], openai.settings()) as h:
        job = await h.run({"model": "gpt-image", "prompt": "x"})
    assert job["status"] == "failed"
    assert job["error"]["code"] == "upstream_bad_response"
