"""A fake OpenAI Images upstream for the benchmarks.

``POST /v1/images/generations`` answers with one fixed 1024x1024 PNG of noise (about
1.5 MB, incompressible) as ``b64_json`` after an added latency. ``PUT /_latency?ms=N``
changes the latency at run time, ``GET /_stats`` counts the requests answered.
The response is built once at start, so the floor measures the network and HTTP stack,
not this server's work.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import random
from typing import Any

from PIL import Image


def noise_png(size: int = 1024, seed: int = 8) -> bytes:
    # 4 random bits per channel: deflate cannot shrink it much, and it lands near 1.5 MB.
    high_nibble = bytes(b & 0xF0 for b in range(256))
    raw = random.Random(seed).randbytes(size * size * 3).translate(high_nibble)
    image = Image.frombytes("RGB", (size, size), raw)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


class Upstream:
    def __init__(self, latency_ms: int, image_px: int = 1024) -> None:
        self.latency = latency_ms / 1000
        png = noise_png(image_px)
        self.png_bytes = len(png)
        self.body = json.dumps(
            {
                "created": 1700000000,
                "data": [{"b64_json": base64.b64encode(png).decode()}],
                "background": "opaque",
                "output_format": "png",
                "quality": "medium",
                "size": "1024x1024",
                "usage": {"input_tokens": 10, "output_tokens": 4160, "total_tokens": 4170},
            }
        ).encode()
        self.answered = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path, method = scope["path"], scope["method"]
        more = True
        while more:  # the request body is not needed, only consumed
            message = await receive()
            more = message.get("more_body", False)
        if path.endswith("/images/generations") and method == "POST":
            if self.latency:
                await asyncio.sleep(self.latency)
            self.answered += 1
            await self._send(send, 200, self.body, [(b"x-request-id", b"req_bench")])
        elif path == "/_latency" and method == "PUT":
            query = dict(
                part.split("=", 1) for part in scope["query_string"].decode().split("&") if part
            )
            self.latency = int(query.get("ms", "0")) / 1000
            await self._send(send, 200, b'{"ok": true}')
        elif path == "/_stats":
            stats = {"answered": self.answered, "png_bytes": self.png_bytes, "pid": os.getpid()}
            await self._send(send, 200, json.dumps(stats).encode())
        elif path.endswith("/models"):
            await self._send(send, 200, b'{"object": "list", "data": []}')
        else:
            await self._send(send, 404, b'{"error": {"message": "not found"}}')

    @staticmethod
    async def _send(
        send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *(headers or []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument(
        "--image-px", type=int, default=1024, help="Side of the square PNG answered (pixels)."
    )
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(
        Upstream(args.latency_ms, args.image_px),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
