"""Fake Recraft API: ``POST /v1/images/generations`` (bearer); vector models answer SVG URLs."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import SVG, FakeUpstream, Recorded, png

TOKEN = "recraft-test-token"


class FakeRecraft(FakeUpstream):
    def routes(self) -> list[Route]:
        return [
            Route("/v1/users/me", self.endpoint("me", self._me), methods=["GET"]),
            Route(
                "/v1/images/generations",
                self.endpoint("generate", self._generate),
                methods=["POST"],
            ),
        ]

    def settings(self) -> dict[str, Any]:
        return {"recraft_api_token": TOKEN, "recraft_base_url": f"{self.url}/v1"}

    def _denied(self, recorded: Recorded) -> Response | None:
        if recorded.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"code": "not_authorized", "message": "Invalid token"}, 401)
        return None

    async def _me(self, request: Request, recorded: Recorded) -> Response:
        return self._denied(recorded) or JSONResponse({"id": "u1", "credits": 500})

    async def _generate(self, request: Request, recorded: Recorded) -> Response:
        if (denied := self._denied(recorded)) is not None:
            return denied
        body = recorded.json or {}
        vector = (
            "vector" in str(body.get("model", "")) or body.get("style") == "vector_illustration"
        )
        width, height = map(int, str(body.get("size", "1024x1024")).split("x"))
        data = []
        for _ in range(int(body.get("n", 1))):
            if vector:
                url = self.serve_file(SVG, "image/svg+xml")
            else:
                url = self.serve_file(png(width, height), "image/png")
            data.append({"image_id": self.new_id("img"), "url": url})
        return JSONResponse({"created": 1700000000, "data": data})
