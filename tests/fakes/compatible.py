"""A self-hosted server speaking the OpenAI Images API (as vLLM-Omni, SGLang diffusion,
LocalAI and stable-diffusion.cpp's server do): ``POST /v1/images/generations`` with a
``WxH`` size and extra sampling fields, answering URLs unless ``b64_json`` is asked for."""

from __future__ import annotations

import base64

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import FakeUpstream, Recorded, png


class FakeCompatible(FakeUpstream):
    def __init__(self, key: str | None = None) -> None:
        super().__init__()
        self.key = key

    def routes(self) -> list[Route]:
        return [
            Route(
                "/v1/images/generations",
                self.endpoint("generations", self._generate),
                methods=["POST"],
            ),
            Route("/v1/models", self.endpoint("models", self._models), methods=["GET"]),
        ]

    def _authorized(self, recorded: Recorded) -> bool:
        return self.key is None or recorded.headers.get("authorization") == f"Bearer {self.key}"

    async def _generate(self, request: Request, recorded: Recorded) -> Response:
        if not self._authorized(recorded):
            return JSONResponse({"error": {"message": "bad key", "code": "invalid_api_key"}}, 401)
        fields = recorded.json
        width, height = map(int, str(fields.get("size", "512x512")).split("x"))
        data = []
        for i in range(int(fields.get("n") or 1)):
            image = png(width, height, colour=(20 * i, 90, 40))
            if fields.get("response_format") == "b64_json":
                data.append({"b64_json": base64.b64encode(image).decode()})
            else:
                data.append({"url": self.serve_file(image, "image/png")})
        return JSONResponse({"created": 1700000000, "data": data})

    async def _models(self, request: Request, recorded: Recorded) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "flux-schnell"}]})
