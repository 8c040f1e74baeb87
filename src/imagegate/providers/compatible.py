"""Any server that speaks the OpenAI Images API: vLLM-Omni, SGLang diffusion, LocalAI,
stable-diffusion.cpp's server, or another imagegate.

The differences from OpenAI's own API that such servers have in common: the key is
optional (a server on the operator's network often has none), answers are asked for as
``b64_json`` (several default to URLs on a port of their own), the size is always sent
as ``WxH`` from the catalog's size rules, and the model's other parameters
(``num_inference_steps``, ``guidance_scale``, ``negative_prompt``, ``seed``, ...) are
passed through as the catalog entry declares them.
"""

from __future__ import annotations

from typing import Any

import httpx

from imagegate.providers.base import ProviderRequest
from imagegate.providers.common import AdapterOptions, HTTPAdapter
from imagegate.providers.http import Deadline
from imagegate.providers.openai import OpenAIProvider

# Fields the gateway sets itself; the request's own values of them are not passed on.
_OWN = frozenset({"model", "prompt", "n", "size", "response_format"})


class OpenAICompatibleProvider(OpenAIProvider):
    name = "openai_compatible"
    credential_hint = "the route's api_key_env"

    def __init__(
        self,
        token: str | None,
        *,
        base_url: str,
        options: AdapterOptions | None = None,
        name: str | None = None,
    ) -> None:
        if name is not None:
            self.name = name
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        HTTPAdapter.__init__(self, headers, options or AdapterOptions())
        self.base_url = base_url.rstrip("/")

    def _body(self, request: ProviderRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.upstream_model,
            "prompt": request.prompt or "",
            "n": request.n,
            "size": f"{request.width}x{request.height}",
            "response_format": "b64_json",
        }
        for key, value in request.params.items():
            if key not in _OWN and value is not None and key not in body:
                body[key] = value
        if request.seed is not None:
            body.setdefault("seed", request.seed)
        return body

    async def _generate(self, request: ProviderRequest, deadline: Deadline) -> httpx.Response:
        return await self.http.request(
            "POST",
            f"{self.base_url}/images/generations",
            json=self._body(request),
            map_error=self.map_error,
            within=deadline.remaining,
        )

    async def _edit(self, request: ProviderRequest, deadline: Deadline) -> httpx.Response:
        data = {key: str(value) for key, value in self._body(request).items()}
        files = [
            ("image", (f"image-{i}.png", img.data, img.content_type))
            for i, img in enumerate(request.inputs)
        ]
        if request.mask is not None:
            files.append(("mask", ("mask.png", request.mask.data, request.mask.content_type)))
        return await self.http.request(
            "POST",
            f"{self.base_url}/images/edits",
            data=data,
            files=files,
            map_error=self.map_error,
            within=deadline.remaining,
        )
