"""Recraft: ``POST /images/generations`` with a bearer token; vector models answer SVG."""

from __future__ import annotations

import re
from typing import Any

import httpx

from imagegate.errors import ImagegateError, UpstreamError
from imagegate.providers.base import ProviderRequest, ProviderResult
from imagegate.providers.common import (
    BearerAdapter,
    pick,
    refusal,
    rejected_param,
    sized,
)
from imagegate.providers.http import Deadline, auth_error, generic_error, json_body

FIELDS = (
    "style", "substyle", "style_id", "negative_prompt", "controls", "text_layout",
    "artistic_level", "size",
)  # fmt: skip
REFUSAL = re.compile(r"inappropriate|moderat|nsfw|policy|safety", re.IGNORECASE)


class RecraftProvider(BearerAdapter):
    name = "recraft"
    credential_hint = "IMAGEGATE_RECRAFT_API_TOKEN (or RECRAFT_API_TOKEN)"

    def map_error(self, response: httpx.Response) -> ImagegateError:
        body = json_body(response)
        body = body if isinstance(body, dict) else {}
        nested = body.get("error")
        error: dict[str, Any] = nested if isinstance(nested, dict) else body
        message = str(error.get("message") or error.get("detail") or response.text[:300])
        code = str(error.get("code") or "")
        if REFUSAL.search(code) or REFUSAL.search(message):
            return refusal(self.name, message)
        if response.status_code in (401, 403):
            return auth_error(self.name, self.credential_hint, response)
        if response.status_code in (400, 422):
            param = error.get("param") or error.get("field")
            return rejected_param(self.name, str(param) if param else None, message)
        return generic_error(self.name, response, message)

    def body(self, request: ProviderRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"prompt": request.prompt or "", "model": request.upstream_model}
        body.update(pick(request.params, FIELDS))
        body.setdefault("size", f"{request.width}x{request.height}")
        body["n"] = request.n
        body["response_format"] = "url"
        return body

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        deadline = Deadline(request.timeout_s)
        response = await self.http.request(
            "POST",
            f"{self.base_url}/images/generations",
            json=self.body(request),
            map_error=self.map_error,
            within=deadline.remaining,
        )
        body = json_body(response)
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise UpstreamError(
                "recraft answered without image data.", code="upstream_bad_response"
            )
        ids = [
            str(item["image_id"])
            for item in body["data"]
            if isinstance(item, dict) and item.get("image_id")
        ]
        if ids:
            await request.submitted(ids[0])
        images = []
        for item in body["data"]:
            if item.get("b64_json"):
                image = await self.image(item["b64_json"], deadline, is_b64=True)
            elif item.get("url"):
                image = await self.image(item["url"], deadline)
            else:
                continue
            images.append(sized(image, request))
        return ProviderResult(images=images, provider_request_id=ids[0] if ids else None)

    async def check(self, within: float) -> None:
        """Reads the user's profile and credit balance: authenticated, free."""
        await self.http.request(
            "GET",
            f"{self.base_url}/users/me",
            map_error=self.map_error,
            within=within,
            retry=False,
        )
