"""Fake fal queue: ``POST /{model_id}``, ``GET /{app}/requests/{id}/status?logs=1``,
``GET /{app}/requests/{id}``, ``PUT /{app}/requests/{id}/cancel``, ``Authorization: Key``."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import FakeUpstream, Recorded, png

KEY = "fal-test-key"
PRESETS = {
    "square_hd": (1024, 1024), "square": (512, 512), "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024), "landscape_4_3": (1024, 768), "landscape_16_9": (1024, 576),
}  # fmt: skip
ASPECT = {"1:1": (1024, 1024), "16:9": (1376, 768), "9:16": (768, 1376)}


@dataclass
class Queued:
    id: str
    app: str
    input: dict[str, Any]
    polls: int = 0
    canceled: bool = False
    nsfw: bool = False
    logs: list[dict[str, str]] = field(default_factory=list)


class FakeFal(FakeUpstream):
    def __init__(self) -> None:
        super().__init__()
        self.queued: dict[str, Queued] = {}
        self.pending_polls = 2
        self.nsfw_next = False
        self.polled = threading.Event()  # set once a status poll has arrived

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/models", self.endpoint("models", self._models), methods=["GET"]),
            Route(
                "/queue/{owner}/{app}/requests/{rid}/status",
                self.endpoint("status", self._status),
                methods=["GET"],
            ),
            Route(
                "/queue/{owner}/{app}/requests/{rid}/cancel",
                self.endpoint("cancel", self._cancel),
                methods=["PUT"],
            ),
            Route(
                "/queue/{owner}/{app}/requests/{rid}",
                self.endpoint("result", self._result),
                methods=["GET"],
            ),
            Route("/queue/{path:path}", self.endpoint("submit", self._submit), methods=["POST"]),
        ]

    def settings(self) -> dict[str, Any]:
        return {
            "fal_key": KEY,
            "fal_queue_url": f"{self.url}/queue",
            "fal_api_url": f"{self.url}/api/v1",
        }

    def _denied(self, recorded: Recorded) -> Response | None:
        if recorded.headers.get("authorization") != f"Key {KEY}":
            return JSONResponse({"detail": "Unauthorized"}, 401)
        return None

    async def _models(self, request: Request, recorded: Recorded) -> Response:
        return self._denied(recorded) or JSONResponse(
            {"models": [{"endpoint_id": "fal-ai/flux/schnell"}]}
        )

    async def _submit(self, request: Request, recorded: Recorded) -> Response:
        if (denied := self._denied(recorded)) is not None:
            return denied
        body = recorded.json or {}
        # the upscaler takes an image, not a prompt
        if not body.get("prompt") and "topaz" not in request.path_params["path"]:
            detail = [{"loc": ["body", "prompt"], "msg": "Field required", "type": "missing"}]
            return JSONResponse({"detail": detail}, 422)
        app = "/".join(request.path_params["path"].split("/")[:2])
        queued = Queued(self.new_id("req"), app, body, nsfw=self.nsfw_next)
        self.queued[queued.id] = queued
        base = f"{self.url}/queue/{app}/requests/{queued.id}"
        return JSONResponse(
            {
                "request_id": queued.id,
                "response_url": base,
                "status_url": f"{base}/status",
                "cancel_url": f"{base}/cancel",
                "queue_position": 3,
                "status": "IN_QUEUE",
            }
        )

    async def _status(self, request: Request, recorded: Recorded) -> Response:
        if (denied := self._denied(recorded)) is not None:
            return denied
        queued = self.queued[request.path_params["rid"]]
        queued.polls += 1
        self.polled.set()
        base = f"{self.url}/queue/{queued.app}/requests/{queued.id}"
        if queued.polls == 1 and self.pending_polls:
            return JSONResponse(
                {"status": "IN_QUEUE", "queue_position": 2, "response_url": base}, 202
            )
        if queued.polls <= self.pending_polls:
            queued.logs.append(
                {"message": f"step {queued.polls}", "timestamp": "2026-01-01T00:00:00Z"}
            )
            logs = queued.logs if recorded.query.get("logs") == "1" else None
            return JSONResponse({"status": "IN_PROGRESS", "logs": logs, "response_url": base}, 202)
        return JSONResponse({"status": "COMPLETED", "logs": queued.logs, "response_url": base})

    async def _result(self, request: Request, recorded: Recorded) -> Response:
        if (denied := self._denied(recorded)) is not None:
            return denied
        queued = self.queued[request.path_params["rid"]]
        body = queued.input
        size = body.get("image_size")
        if isinstance(size, dict):
            width, height = int(size["width"]), int(size["height"])
        elif isinstance(size, str):
            width, height = PRESETS.get(size, (2048, 2048))  # auto_2K and the like
        else:
            width, height = ASPECT.get(str(body.get("aspect_ratio", "1:1")), (1024, 1024))
        fmt = str(body.get("output_format", "jpeg"))
        images = []
        for _ in range(int(body.get("num_images", 1))):
            data = png(width, height, "JPEG" if fmt == "jpeg" else "PNG")
            url = self.serve_file(data, f"image/{fmt}")
            images.append(
                {"url": url, "width": width, "height": height, "content_type": f"image/{fmt}"}
            )
        return JSONResponse(
            {
                "images": images,
                "seed": 42,
                "prompt": body.get("prompt"),
                "has_nsfw_concepts": [queued.nsfw] * len(images),
                "timings": {"inference": 0.4},
            }
        )

    async def _cancel(self, request: Request, recorded: Recorded) -> Response:
        if (denied := self._denied(recorded)) is not None:
            return denied
        queued = self.queued[request.path_params["rid"]]
        queued.canceled = True
        return JSONResponse({"status": "CANCELLATION_REQUESTED"}, 202)
