"""Fake OpenAI Images API: generations (JSON) and edits (multipart) under ``/v1/images``."""

from __future__ import annotations

import base64
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import FakeUpstream, Recorded, png

FORMATS = {
    "png": ("PNG", "image/png"),
    "jpeg": ("JPEG", "image/jpeg"),
    "webp": ("WEBP", "image/webp"),
}
KEY = "sk-test-openai"


def moderation_blocked() -> dict[str, Any]:
    return {
        "error": {
            "message": "Your request was rejected by the safety system.",
            "type": "image_generation_user_error",
            "param": None,
            "code": "moderation_blocked",
        }
    }


def invalid_param(param: str, message: str) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    }


class FakeOpenAI(FakeUpstream):
    answer_with_urls = False
    # base64 in lines of 76 characters, as MIME writes it (some upstreams do)
    b64_with_line_breaks = False

    def routes(self) -> list[Route]:
        return [
            Route(
                "/v1/images/generations",
                self.endpoint("generations", self._generate),
                methods=["POST"],
            ),
            Route("/v1/images/edits", self.endpoint("edits", self._edit), methods=["POST"]),
            Route("/v1/models", self.endpoint("models", self._models), methods=["GET"]),
        ]

    def settings(self) -> dict[str, Any]:
        return {"openai_api_key": KEY, "openai_base_url": f"{self.url}/v1"}

    def _authorized(self, recorded: Recorded) -> bool:
        return recorded.headers.get("authorization") == f"Bearer {KEY}"

    def _answer(self, fields: dict[str, Any], request_id: str) -> Response:
        size = str(fields.get("size") or "1024x1024")
        width, height = (1024, 1024) if size == "auto" else map(int, size.split("x"))
        fmt, content_type = FORMATS[str(fields.get("output_format") or "png")]
        data = []
        for i in range(int(fields.get("n") or 1)):
            image = png(width, height, fmt, colour=(10 * i, 80, 160))
            if self.answer_with_urls:
                data.append(
                    {
                        "url": self.serve_file(image, content_type),
                        "revised_prompt": f"revised: {fields['prompt']}",
                    }
                )
            else:
                data.append(
                    {
                        "b64_json": (
                            base64.encodebytes(image)
                            if self.b64_with_line_breaks
                            else base64.b64encode(image)
                        ).decode(),
                        "revised_prompt": f"revised: {fields['prompt']}",
                    }
                )
        body = {
            "created": 1700000000,
            "data": data,
            "usage": {"input_tokens": 12, "output_tokens": 4160, "total_tokens": 4172},
            "size": size,
            "output_format": fields.get("output_format") or "png",
        }
        return JSONResponse(body, headers={"x-request-id": request_id})

    async def _generate(self, request: Request, recorded: Recorded) -> Response:
        if not self._authorized(recorded):
            return JSONResponse(
                {
                    "error": {
                        "message": "bad key",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
                401,
            )
        return self._answer(recorded.json, self.new_id("req_gen"))

    async def _edit(self, request: Request, recorded: Recorded) -> Response:
        if not self._authorized(recorded):
            return JSONResponse({"error": {"message": "bad key", "code": "invalid_api_key"}}, 401)
        fields = {
            key: values[0]
            for key, values in recorded.form.items()
            if not isinstance(values[0], tuple)
        }
        return self._answer(fields, self.new_id("req_edit"))

    async def _models(self, request: Request, recorded: Recorded) -> Response:
        if not self._authorized(recorded):
            return JSONResponse({"error": {"message": "bad key", "code": "invalid_api_key"}}, 401)
        return JSONResponse({"object": "list", "data": [{"id": "gpt-image-1", "object": "model"}]})
