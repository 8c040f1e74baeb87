"""Fake Black Forest Labs API: submit ``POST /{region}/v1/{model}`` with ``x-key``, poll the
returned ``polling_url`` (served under another host name, as BFL's regional hosts are),
download ``result.sample``."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import FakeUpstream, Recorded, png

KEY = "bfl-test-key"
ASPECT = {"1:1": (1024, 1024), "16:9": (1344, 768), "9:16": (768, 1344), "4:3": (1184, 896)}


@dataclass
class Task:
    id: str
    region: str
    width: int
    height: int
    fmt: str
    outcome: str
    polls: int = 0
    details: Any = None


class FakeBFL(FakeUpstream):
    def __init__(self) -> None:
        super().__init__()
        self.tasks: dict[str, Task] = {}
        self.pending_polls = 2
        self.outcomes: deque[tuple[str, Any]] = deque()

    def routes(self) -> list[Route]:
        return [
            Route("/{region}/v1/credits", self.endpoint("credits", self._credits), methods=["GET"]),
            Route("/{region}/v1/get_result", self.endpoint("poll", self._poll), methods=["GET"]),
            Route("/{region}/v1/{model}", self.endpoint("submit", self._submit), methods=["POST"]),
        ]

    def settings(self) -> dict[str, Any]:
        return {
            "bfl_api_key": KEY,
            "bfl_base_url": f"{self.url}/global/v1",
            "bfl_eu_base_url": f"{self.url}/eu/v1",
            "bfl_us_base_url": f"{self.url}/us/v1",
        }

    def finish_next(self, status: str, details: Any = None) -> None:
        """The next submitted task ends with ``status`` (``Ready`` by default)."""
        self.outcomes.append((status, details))

    async def _credits(self, request: Request, recorded: Recorded) -> Response:
        if recorded.headers.get("x-key") != KEY:
            return JSONResponse({"detail": "Not authenticated"}, 403)
        return JSONResponse({"credits": 1234.5})

    async def _submit(self, request: Request, recorded: Recorded) -> Response:
        if recorded.headers.get("x-key") != KEY:
            return JSONResponse({"detail": "Not authenticated"}, 403)
        body = recorded.json or {}
        if not body.get("prompt"):
            return JSONResponse(
                {
                    "detail": [
                        {"loc": ["body", "prompt"], "msg": "Field required", "type": "missing"}
                    ]
                },
                422,
            )
        if "aspect_ratio" in body:
            width, height = ASPECT[body["aspect_ratio"]]
        else:
            width, height = int(body.get("width", 1024)), int(body.get("height", 768))
        outcome, details = self.outcomes.popleft() if self.outcomes else ("Ready", None)
        task = Task(
            self.new_id("task"),
            request.path_params["region"],
            width,
            height,
            body.get("output_format", "jpeg"),
            outcome,
            details=details,
        )
        self.tasks[task.id] = task
        # The polling URL points at another host than the one submitted to.
        polling_url = f"{self.other_host_url}/{task.region}/v1/get_result?id={task.id}"
        return JSONResponse({"id": task.id, "polling_url": polling_url, "cost": 4.0})

    async def _poll(self, request: Request, recorded: Recorded) -> Response:
        if recorded.headers.get("x-key") != KEY:
            return JSONResponse({"detail": "Not authenticated"}, 403)
        task = self.tasks.get(recorded.query.get("id", ""))
        if task is None:
            return JSONResponse({"id": recorded.query.get("id"), "status": "Task not found"})
        task.polls += 1
        if task.polls <= self.pending_polls:
            return JSONResponse({"id": task.id, "status": "Pending", "progress": 0.5 * task.polls})
        if task.outcome != "Ready":
            return JSONResponse({"id": task.id, "status": task.outcome, "details": task.details})
        fmt = "JPEG" if task.fmt == "jpeg" else "PNG"
        sample = self.serve_file(
            png(task.width, task.height, fmt), f"image/{task.fmt}", base=self.other_host_url
        )
        return JSONResponse(
            {
                "id": task.id,
                "status": "Ready",
                "result": {"sample": sample, "prompt": "p", "seed": 7},
            }
        )
