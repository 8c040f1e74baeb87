"""Gemini generateContent with the image modality, and Imagen on Vertex AI (:predict)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from PIL import Image

from imagegate.config import Settings
from tests.fakes.google import GEMINI_KEY, VERTEX_TOKEN, FakeGemini, FakeVertex, google_error
from tests.fakes.harness import ASPECTS, PROMPT, aspect_sizes, harness, spec
from tests.fakes.server import Reply
from tests.helpers import assert_error

NANO = spec(
    "nano-banana",
    [{"provider": "gemini", "upstream_id": "gemini-2.5-flash-image"}],
    params={
        "prompt": PROMPT,
        "aspect_ratio": ASPECTS,
        "resolution": {"type": "string", "default": "1K", "enum": ["1K", "2K"]},
        "num_images": {"type": "integer", "default": 1, "minimum": 1, "maximum": 4},
    },
    sizes={
        **aspect_sizes({"1:1": [1024, 1024], "16:9": [1344, 768], "9:16": [768, 1344]}),
        "resolution_field": "resolution",
        "resolution_scale": {"1K": 1, "2K": 2},
    },
    count_field="num_images",
)
IMAGEN = spec(
    "imagen",
    [{"provider": "vertex", "upstream_id": "imagen-4.0-generate-001"}],
    params={
        "prompt": PROMPT,
        "aspect_ratio": ASPECTS,
        "n": {"type": "integer", "default": 1, "minimum": 1, "maximum": 4},
        "output_format": {"type": "string", "default": "png", "enum": ["png", "jpeg"]},
        "negative_prompt": {"type": "string"},
    },
    sizes=aspect_sizes({"1:1": [1024, 1024], "16:9": [1408, 768], "9:16": [768, 1408]}),
    count_field="n",
    format_field="output_format",
    output_formats=["png", "jpeg"],
)
IMAGEN_US = spec(
    "imagen-us",
    [{"provider": "vertex", "upstream_id": "imagen-4.0-generate-001", "region": "us"}],
    params={"prompt": PROMPT},
)


@pytest.fixture
def gemini() -> Iterator[FakeGemini]:
    fake = FakeGemini().start()
    yield fake
    fake.stop()


@pytest.fixture
def vertex() -> Iterator[FakeVertex]:
    fake = FakeVertex().start()
    yield fake
    fake.stop()


async def test_gemini_sends_image_modality_and_image_config(
    settings: Settings, gemini: FakeGemini
) -> None:
    async with harness(settings, [NANO], gemini.settings()) as h:
        job = await h.run(
            {
                "model": "nano-banana",
                "prompt": "a poster",
                "aspect_ratio": "16:9",
                "resolution": "2K",
                "num_images": 2,
            }
        )
        assert job["status"] == "succeeded", job
        assert len(job["outputs"]) == 2
        image = Image.open(io.BytesIO(await h.content(job["outputs"][0])))
        row = await h.job_row(job["id"])
    assert image.size == (1344, 768)
    calls = gemini.calls("generate")
    assert len(calls) == 2  # one image per call
    call = calls[0]
    assert call.path == "/v1beta/models/gemini-2.5-flash-image:generateContent"
    assert call.headers["x-goog-api-key"] == GEMINI_KEY
    assert call.json == {
        "contents": [{"role": "user", "parts": [{"text": "a poster"}]}],
        "generationConfig": {
            "responseModalities": ["TEXT", "IMAGE"],
            "imageConfig": {"aspectRatio": "16:9", "imageSize": "2K"},
        },
    }
    assert row.provider_request_id is not None and row.provider_request_id.startswith("resp-")
    assert row.result is not None and row.result["usage"]["totalTokenCount"] == 2598


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (
            {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}},
            "prompt blocked: PROHIBITED_CONTENT",
        ),
        (
            {"candidates": [{"finishReason": "IMAGE_SAFETY", "finishMessage": "Unable to show"}]},
            "output blocked: IMAGE_SAFETY (Unable to show)",
        ),
    ],
)
async def test_gemini_safety_blocks_are_refusals(
    settings: Settings, gemini: FakeGemini, answer: dict[str, object], reason: str
) -> None:
    gemini.script("generate", Reply(200, answer))
    async with harness(settings, [NANO], gemini.settings(), run_workers=True) as h:
        response = await h.client.post(
            "/v1/images/generations", json={"model": "nano-banana", "prompt": "x"}
        )
    error = assert_error(response, 400, "content_policy_violation")
    assert error["provider_reason"] == reason
    assert len(gemini.calls("generate")) == 1


async def test_gemini_429_honours_retry_info(settings: Settings, gemini: FakeGemini) -> None:
    details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.3s"}]
    gemini.script("generate", Reply(429, google_error(429, "RESOURCE_EXHAUSTED", "quota", details)))
    async with harness(settings, [NANO], gemini.settings()) as h:
        job = await h.run({"model": "nano-banana", "prompt": "x"})
    assert job["status"] == "succeeded", job
    first, second = gemini.calls("generate")
    assert second.at - first.at >= 0.3


async def test_gemini_invalid_argument_names_the_field(
    settings: Settings, gemini: FakeGemini
) -> None:
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [
                {"field": "generation_config.image_config.aspect_ratio", "description": "bad"}
            ],
        }
    ]
    gemini.script(
        "generate",
        Reply(400, google_error(400, "INVALID_ARGUMENT", "Invalid aspect ratio", details)),
    )
    async with harness(settings, [NANO], gemini.settings()) as h:
        job = await h.run({"model": "nano-banana", "prompt": "x"})
    assert job["error"]["code"] == "invalid_parameter"
    assert "aspect_ratio" in job["error"]["message"]


async def test_imagen_predict_on_the_regional_endpoint(
    settings: Settings, vertex: FakeVertex
) -> None:
    async with harness(settings, [IMAGEN, IMAGEN_US], vertex.settings()) as h:
        job = await h.run(
            {
                "model": "imagen",
                "prompt": "a harbour",
                "n": 2,
                "aspect_ratio": "9:16",
                "output_format": "jpeg",
                "negative_prompt": "boats",
            }
        )
        assert job["status"] == "succeeded", job
        image = Image.open(io.BytesIO(await h.content(job["outputs"][1])))
        us = await h.run({"model": "imagen-us", "prompt": "a canyon"})
    assert (image.format, image.size) == ("JPEG", (768, 1408))
    first, second = vertex.calls("predict")
    assert first.path == (
        "/v1/projects/demo-project/locations/europe-west4/publishers/google/models/imagen-4.0-generate-001:predict"
    )
    assert first.headers["authorization"] == f"Bearer {VERTEX_TOKEN}"
    assert first.json == {
        "instances": [{"prompt": "a harbour"}],
        "parameters": {
            "sampleCount": 2,
            "includeRaiReason": True,
            "negativePrompt": "boats",
            "aspectRatio": "9:16",
            "outputOptions": {"mimeType": "image/jpeg"},
        },
    }
    assert us["status"] == "succeeded", us
    assert "/locations/us-central1/" in second.path


async def test_imagen_filtered_outputs_are_a_refusal(
    settings: Settings, vertex: FakeVertex
) -> None:
    reason = "Your current safety filter threshold filtered out 1 generated image."
    vertex.script("predict", Reply(200, {"predictions": [{"raiFilteredReason": reason}]}))
    async with harness(settings, [IMAGEN], vertex.settings()) as h:
        job = await h.run({"model": "imagen", "prompt": "x"})
    assert job["status"] == "failed"
    assert job["error"]["code"] == "content_policy_violation"
    assert job["error"]["provider_reason"] == reason


async def test_imagen_expired_token_says_what_to_set(
    settings: Settings, vertex: FakeVertex
) -> None:
    async with harness(
        settings, [IMAGEN], {**vertex.settings(), "vertex_access_token": "stale"}
    ) as h:
        job = await h.run({"model": "imagen", "prompt": "x"})
    assert job["error"]["code"] == "upstream_auth_failed"
    assert "IMAGEGATE_VERTEX_ACCESS_TOKEN" in job["error"]["message"]


def _service_account(path: Path, token_uri: str) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "demo-project",
        "private_key_id": "key-1",
        "private_key": pem,
        "client_email": "imagegate@demo-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(info))
    return path


async def test_imagen_with_a_service_account_file(
    settings: Settings, vertex: FakeVertex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VERTEX_ACCESS_TOKEN", raising=False)
    credentials = _service_account(tmp_path / "sa.json", f"{vertex.url}/token")
    overrides = {
        **vertex.settings(),
        "vertex_access_token": None,
        "vertex_credentials_file": credentials,
    }
    async with harness(settings, [IMAGEN], overrides) as h:
        first = await h.run({"model": "imagen", "prompt": "a harbour"})
        second = await h.run({"model": "imagen", "prompt": "a lighthouse"})
    assert first["status"] == second["status"] == "succeeded"
    [token] = vertex.calls("token")  # minted once, reused until it nears expiry
    assert b"assertion=" in token.body
    assert all(
        c.headers["authorization"] == f"Bearer {VERTEX_TOKEN}" for c in vertex.calls("predict")
    )
