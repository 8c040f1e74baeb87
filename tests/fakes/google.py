"""Fake Google endpoints: Gemini ``models/{m}:generateContent`` (``x-goog-api-key``) and
Vertex AI Imagen ``projects/{p}/locations/{l}/publishers/google/models/{m}:predict`` (bearer)."""

from __future__ import annotations

import base64
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import FakeUpstream, Recorded, png

GEMINI_KEY = "gemini-test-key"
VERTEX_TOKEN = "ya29.test-token"
GEMINI_ASPECT = {"1:1": (1024, 1024), "16:9": (1344, 768), "9:16": (768, 1344), "3:2": (1248, 832)}
IMAGEN_ASPECT = {"1:1": (1024, 1024), "16:9": (1408, 768), "9:16": (768, 1408), "4:3": (1280, 896)}


def google_error(
    code: int, status: str, message: str, details: list[Any] | None = None
) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status, "details": details or []}}


class FakeGemini(FakeUpstream):
    def routes(self) -> list[Route]:
        return [
            Route("/v1beta/models", self.endpoint("models", self._models), methods=["GET"]),
            Route(
                "/v1beta/models/{call}", self.endpoint("generate", self._generate), methods=["POST"]
            ),
        ]

    def settings(self) -> dict[str, Any]:
        return {"gemini_api_key": GEMINI_KEY, "gemini_base_url": f"{self.url}/v1beta"}

    async def _models(self, request: Request, recorded: Recorded) -> Response:
        if recorded.headers.get("x-goog-api-key") != GEMINI_KEY:
            return JSONResponse(google_error(403, "PERMISSION_DENIED", "API key not valid."), 403)
        return JSONResponse({"models": [{"name": "models/gemini-2.5-flash-image"}]})

    async def _generate(self, request: Request, recorded: Recorded) -> Response:
        if recorded.headers.get("x-goog-api-key") != GEMINI_KEY:
            return JSONResponse(google_error(403, "PERMISSION_DENIED", "API key not valid."), 403)
        if not request.path_params["call"].endswith(":generateContent"):
            return JSONResponse(google_error(404, "NOT_FOUND", "no such method"), 404)
        config = (recorded.json or {}).get("generationConfig", {})
        aspect = (config.get("imageConfig") or {}).get("aspectRatio", "1:1")
        width, height = GEMINI_ASPECT[aspect]
        data = base64.b64encode(png(width, height)).decode()
        return JSONResponse(
            {
                "candidates": [
                    {
                        "content": {
                            "role": "model",
                            "parts": [
                                {"text": "Here is your image."},
                                {"inlineData": {"mimeType": "image/png", "data": data}},
                            ],
                        },
                        "finishReason": "STOP",
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": 9,
                    "candidatesTokenCount": 1290,
                    "totalTokenCount": 1299,
                },
                "modelVersion": "gemini-2.5-flash-image",
                "responseId": self.new_id("resp"),
            }
        )


class FakeVertex(FakeUpstream):
    def routes(self) -> list[Route]:
        return [
            Route("/token", self.endpoint("token", self._token), methods=["POST"]),
            Route(
                "/v1/projects/{project}/locations/{location}",
                self.endpoint("location", self._location),
                methods=["GET"],
            ),
            Route(
                "/v1/projects/{project}/locations/{location}/publishers/google/models/{call}",
                self.endpoint("predict", self._predict),
                methods=["POST"],
            ),
        ]

    def settings(self) -> dict[str, Any]:
        return {
            "vertex_access_token": VERTEX_TOKEN,
            "vertex_project": "demo-project",
            "vertex_location": "europe-west4",
            "vertex_base_url": f"{self.url}/v1",
        }

    async def _token(self, request: Request, recorded: Recorded) -> Response:
        """Google's OAuth token endpoint for a service account's signed JWT assertion."""
        from urllib.parse import parse_qs

        form = parse_qs(recorded.body.decode())
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        return JSONResponse(
            {"access_token": VERTEX_TOKEN, "expires_in": 3600, "token_type": "Bearer"}
        )

    def _denied(self, recorded: Recorded) -> Response | None:
        if recorded.headers.get("authorization") != f"Bearer {VERTEX_TOKEN}":
            return JSONResponse(
                google_error(401, "UNAUTHENTICATED", "Request had invalid credentials."), 401
            )
        return None

    async def _location(self, request: Request, recorded: Recorded) -> Response:
        return self._denied(recorded) or JSONResponse(
            {"name": request.url.path, "locationId": "europe-west4"}
        )

    async def _predict(self, request: Request, recorded: Recorded) -> Response:
        if (denied := self._denied(recorded)) is not None:
            return denied
        parameters = (recorded.json or {}).get("parameters", {})
        width, height = IMAGEN_ASPECT[parameters.get("aspectRatio", "1:1")]
        mime = (parameters.get("outputOptions") or {}).get("mimeType", "image/png")
        fmt = "JPEG" if mime == "image/jpeg" else "PNG"
        predictions = [
            {
                "bytesBase64Encoded": base64.b64encode(png(width, height, fmt)).decode(),
                "mimeType": mime,
            }
            for _ in range(int(parameters.get("sampleCount", 1)))
        ]
        return JSONResponse({"predictions": predictions})
