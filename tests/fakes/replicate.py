"""Fake Replicate API: ``POST /v1/models/{owner}/{name}/predictions`` (``Prefer: wait``),
``GET /v1/predictions/{id}``, ``POST /v1/predictions/{id}/cancel``, ``GET /v1/account``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import FakeUpstream, Recorded, png

TOKEN = "r8_test_token"
ASPECT = {"1:1": (1024, 1024), "16:9": (1344, 768), "9:16": (768, 1344)}


@dataclass
class Prediction:
    id: str
    model: str
    input: dict[str, Any]
    status: str = "starting"
    polls: int = 0
    output: Any = None
    error: str | None = None


class FakeReplicate(FakeUpstream):
    def __init__(self) -> None:
        super().__init__()
        self.predictions: dict[str, Prediction] = {}
        self.finish_within_wait = False
        self.pending_polls = 2
        self.fail_next: str | None = None

    def routes(self) -> list[Route]:
        return [
            Route("/v1/account", self.endpoint("account", self._account), methods=["GET"]),
            Route(
                "/v1/models/{owner}/{name}/predictions",
                self.endpoint("create", self._create),
                methods=["POST"],
            ),
            Route(
                "/v1/predictions/{pid}/cancel",
                self.endpoint("cancel", self._cancel),
                methods=["POST"],
            ),
            Route("/v1/predictions/{pid}", self.endpoint("get", self._get), methods=["GET"]),
        ]

    def settings(self) -> dict[str, Any]:
        return {"replicate_api_token": TOKEN, "replicate_base_url": f"{self.url}/v1"}

    def _denied(self, recorded: Recorded) -> Response | None:
        if recorded.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse(
                {
                    "title": "Unauthenticated",
                    "detail": "You did not pass a valid token",
                    "status": 401,
                },
                401,
            )
        return None

    def _view(self, prediction: Prediction) -> dict[str, Any]:
        base = f"{self.url}/v1/predictions/{prediction.id}"
        return {
            "id": prediction.id,
            "model": prediction.model,
            "input": prediction.input,
            "status": prediction.status,
            "output": prediction.output,
            "error": prediction.error,
            "logs": "",
            "metrics": {"predict_time": 0.5} if prediction.status == "succeeded" else {},
            "urls": {"get": base, "cancel": f"{base}/cancel"},
        }

    def _finish(self, prediction: Prediction) -> None:
        if self.fail_next is not None:
            prediction.status, prediction.error, self.fail_next = "failed", self.fail_next, None
            return
        width, height = ASPECT[prediction.input.get("aspect_ratio", "1:1")]
        fmt = prediction.input.get("output_format", "webp")
        pil = {"webp": "WEBP", "png": "PNG", "jpg": "JPEG", "jpeg": "JPEG"}[fmt]
        prediction.output = [
            self.serve_file(png(width, height, pil), f"image/{fmt}")
            for _ in range(int(prediction.input.get("num_outputs", 1)))
        ]
        prediction.status = "succeeded"

    async def _account(self, request: Request, recorded: Recorded) -> Response:
        return self._denied(recorded) or JSONResponse({"type": "organization", "username": "acme"})

    async def _create(self, request: Request, recorded: Recorded) -> Response:
        if (denied := self._denied(recorded)) is not None:
            return denied
        body = recorded.json or {}
        model_input = body.get("input") or {}
        if not model_input.get("prompt"):
            return JSONResponse(
                {
                    "title": "Input validation failed",
                    "detail": "- input: prompt is required",
                    "status": 422,
                    "invalid_fields": [
                        {
                            "type": "required",
                            "field": "input.prompt",
                            "description": "prompt is required",
                        }
                    ],
                },
                422,
            )
        owner, name = request.path_params["owner"], request.path_params["name"]
        prediction = Prediction(self.new_id("pred"), f"{owner}/{name}", model_input)
        self.predictions[prediction.id] = prediction
        if self.finish_within_wait and recorded.headers.get("prefer", "").startswith("wait"):
            self._finish(prediction)
        return JSONResponse(self._view(prediction), 201)

    async def _get(self, request: Request, recorded: Recorded) -> Response:
        if (denied := self._denied(recorded)) is not None:
            return denied
        prediction = self.predictions[request.path_params["pid"]]
        if prediction.status in ("starting", "processing"):
            prediction.polls += 1
            if prediction.polls >= self.pending_polls:
                self._finish(prediction)
            else:
                prediction.status = "processing"
        return JSONResponse(self._view(prediction))

    async def _cancel(self, request: Request, recorded: Recorded) -> Response:
        if (denied := self._denied(recorded)) is not None:
            return denied
        prediction = self.predictions[request.path_params["pid"]]
        if prediction.status in ("starting", "processing"):
            prediction.status = "canceled"
        return JSONResponse(self._view(prediction))
