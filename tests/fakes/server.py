"""A fake upstream: a real HTTP server on 127.0.0.1 in its own thread.

It records every request it receives (method, path, query, headers, JSON or form body,
time) and answers from a script: ``fake.script("submit", Reply(429, ...), ...)`` makes
the next calls of the endpoint named ``submit`` answer those replies in order, after
which the provider's documented default behaviour resumes. Images are served from
``/files/…`` on the same server, so downloads are real HTTP too.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Handler = Callable[[Request, "Recorded"], Awaitable[Response]]


@dataclass
class Reply:
    """A scripted answer: status, JSON body, headers, and an optional delay before it."""

    status: int = 200
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content: bytes | None = None

    def response(self) -> Response:
        if self.content is not None:
            return Response(self.content, status_code=self.status, headers=self.headers)
        return JSONResponse(
            self.json if self.json is not None else {},
            status_code=self.status,
            headers=self.headers,
        )


@dataclass
class Recorded:
    endpoint: str
    method: str
    path: str
    host: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any
    form: dict[str, list[Any]]
    at: float


def png(
    width: int, height: int, fmt: str = "PNG", colour: tuple[int, int, int] = (30, 120, 200)
) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, fmt)
    return out.getvalue()


SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="1024" height="1024" viewBox="0 0 1024 1024">'
    b'<circle cx="512" cy="512" r="300" fill="#c33"/></svg>'
)


class FakeUpstream:
    """Base of the per-provider fakes; subclasses add ``routes()``."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self.files: dict[str, tuple[bytes, str]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def start(self) -> FakeUpstream:
        app = Starlette(
            routes=[*self.routes(), Route("/files/{name}", self._file, methods=["GET"])]
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, lifespan="off", log_level="warning", ws="none", http="h11")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake upstream did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def other_host_url(self) -> str:
        """The same server under another host name (a "regional" host)."""
        return f"http://localhost:{self.port}"

    # -- scripting and records -------------------------------------------------------

    def script(self, endpoint: str, *replies: Reply) -> None:
        with self._lock:
            self._scripts[endpoint].extend(replies)

    def calls(self, endpoint: str) -> list[Recorded]:
        return [r for r in self.requests if r.endpoint == endpoint]

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def serve_file(self, data: bytes, content_type: str, base: str | None = None) -> str:
        name = self.new_id("out")
        self.files[name] = (data, content_type)
        return f"{base or self.url}/files/{name}"

    async def record(self, request: Request, endpoint: str) -> Recorded:
        body = await request.body()
        content_type = request.headers.get("content-type", "")
        parsed: Any = None
        form: dict[str, list[Any]] = defaultdict(list)
        if content_type.startswith("application/json") and body:
            import json

            parsed = json.loads(body)
        elif content_type.startswith("multipart/form-data"):
            async with request.form() as data:
                for key, value in data.multi_items():
                    if hasattr(value, "read"):
                        form[key].append((value.filename, await value.read(), value.content_type))
                    else:
                        form[key].append(value)
        recorded = Recorded(
            endpoint=endpoint,
            method=request.method,
            path=request.url.path,
            host=request.headers.get("host", ""),
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            json=parsed,
            form=dict(form),
            at=time.monotonic(),
        )
        with self._lock:
            self.requests.append(recorded)
        return recorded

    def endpoint(self, name: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Wrap ``handler``: record the call, then answer a scripted reply if one is queued."""

        async def serve(request: Request) -> Response:
            recorded = await self.record(request, name)
            with self._lock:
                scripted = self._scripts[name].popleft() if self._scripts[name] else None
            if scripted is not None:
                if scripted.delay:
                    await asyncio.sleep(scripted.delay)
                if scripted.status != 0:
                    return scripted.response()
            return await handler(request, recorded)

        return serve

    async def _file(self, request: Request) -> Response:
        await self.record(request, "download")
        name = request.path_params["name"]
        if name not in self.files:
            return JSONResponse({"detail": "expired"}, status_code=404)
        data, content_type = self.files[name]
        return Response(data, media_type=content_type)
