"""Gemini image generation: ``POST {base}/models/{model}:generateContent`` with the image
response modality and ``imageConfig``; key in ``x-goog-api-key``.

One call yields one image; ``n`` images are ``n`` calls at once. A blocked prompt
(``promptFeedback.blockReason``) or a safety finish reason is a refusal.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from imagegate.errors import ImagegateError, UpstreamError
from imagegate.providers.base import GeneratedImage, ProviderRequest, ProviderResult
from imagegate.providers.common import AdapterOptions, HTTPAdapter, b64, sized
from imagegate.providers.google import check_refusal, map_google_error
from imagegate.providers.http import Deadline, json_body


class GeminiProvider(HTTPAdapter):
    name = "gemini"
    credential_hint = "IMAGEGATE_GEMINI_API_KEY (or GEMINI_API_KEY)"

    def __init__(
        self, api_key: str, *, base_url: str, options: AdapterOptions | None = None
    ) -> None:
        super().__init__({"x-goog-api-key": api_key}, options or AdapterOptions())
        self.base_url = base_url.rstrip("/")

    def map_error(self, response: httpx.Response) -> ImagegateError:
        return map_google_error(self.name, self.credential_hint, response)

    def body(self, request: ProviderRequest, index: int) -> dict[str, Any]:
        parts: list[dict[str, Any]] = [{"text": request.prompt or ""}]
        parts.extend(
            {"inlineData": {"mimeType": img.content_type, "data": b64(img)}}
            for img in request.inputs
        )
        image_config: dict[str, Any] = {}
        params = request.params
        if params.get("aspect_ratio") not in (None, "auto"):
            image_config["aspectRatio"] = params["aspect_ratio"]
        if params.get("resolution"):
            image_config["imageSize"] = params["resolution"]
        config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
        if image_config:
            config["imageConfig"] = image_config
        if request.seed is not None:
            config["seed"] = request.seed + index
        body: dict[str, Any] = {
            "contents": [{"role": "user", "parts": parts}],
            "generationConfig": config,
        }
        if params.get("system_prompt"):
            body["systemInstruction"] = {"parts": [{"text": params["system_prompt"]}]}
        return body

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        deadline = Deadline(request.timeout_s)
        results = await asyncio.gather(*(self._one(request, i, deadline) for i in range(request.n)))
        ids = [rid for _, rid, _ in results if rid]
        images = [image for batch, _, _ in results for image in batch]
        usage: dict[str, Any] = {}
        for _, _, meta in results:
            for key, value in meta.items():
                if isinstance(value, int):
                    usage[key] = usage.get(key, 0) + value
        return ProviderResult(images=images, provider_request_id=",".join(ids) or None, usage=usage)

    async def _one(
        self, request: ProviderRequest, index: int, deadline: Deadline
    ) -> tuple[list[GeneratedImage], str | None, dict[str, Any]]:
        response = await self.http.request(
            "POST",
            f"{self.base_url}/models/{request.upstream_model}:generateContent",
            json=self.body(request, index),
            map_error=self.map_error,
            within=deadline.remaining,
        )
        body = json_body(response)
        if not isinstance(body, dict):
            raise UpstreamError("gemini answered without JSON.", code="upstream_bad_response")
        response_id = body.get("responseId")
        if response_id:
            await request.submitted(str(response_id))
        check_refusal(self.name, body)
        images: list[GeneratedImage] = []
        texts: list[str] = []
        for candidate in body.get("candidates") or []:
            for part in ((candidate.get("content") or {}).get("parts")) or []:
                inline = part.get("inlineData") or part.get("inline_data")
                if isinstance(inline, dict) and inline.get("data"):
                    images.append(await self.image(str(inline["data"]), deadline, is_b64=True))
                elif part.get("text") and not part.get("thought"):
                    texts.append(str(part["text"]))
        if not images:
            reasons = {
                str(c.get("finishReason"))
                for c in body.get("candidates") or []
                if isinstance(c, dict)
            }
            raise UpstreamError(
                f"gemini returned no image (finish reason {', '.join(sorted(reasons)) or 'none'}).",
                code="upstream_empty_result",
                extra={"provider": self.name, "provider_text": " ".join(texts)[:500]},
            )
        meta = body.get("usageMetadata")
        usage: dict[str, Any] = meta if isinstance(meta, dict) else {}
        return (
            [sized(image, request) for image in images],
            str(response_id) if response_id else None,
            usage,
        )

    async def check(self, within: float) -> None:
        """Lists models: authenticated, free."""
        await self.http.request(
            "GET",
            f"{self.base_url}/models",
            params={"pageSize": 1},
            map_error=self.map_error,
            within=within,
            retry=False,
        )
