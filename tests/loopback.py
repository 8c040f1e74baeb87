"""A small HTTP server on loopback for the fetch tests: files, redirects, slow and big
answers, and a count of the connections it accepted (so a test can show that a refused
URL never opened a socket to it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit


@dataclass
class Loopback:
    port: int = 0
    accepted: int = 0
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def serve(self, path: str, data: bytes, content_type: str = "image/png") -> str:
        self.files[path] = (data, content_type)
        return self.url(path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await self._answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self.tasks.discard(task)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        target = lines[0].split(" ")[1]
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        self.hosts.append(headers.get("host", ""))
        parts = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        status, body, extra = 200, b"", {"content-type": "application/octet-stream"}
        if parts.path == "/redirect":
            status, extra = 302, {"location": query["to"]}
        elif parts.path == "/loop":
            status, extra = 302, {"location": "/loop"}
        elif parts.path == "/slow":
            await asyncio.sleep(float(query.get("seconds", "5")))
            body = b"late"
        elif parts.path == "/chunked":
            size = int(query["bytes"])
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for start in range(0, size, 65536):
                chunk = b"\0" * min(65536, size - start)
                writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return
        elif parts.path in self.files:
            body, content_type = self.files[parts.path]
            extra = {"content-type": content_type}
        else:
            status, body = 404, b"not here"
        reason = {200: "OK", 302: "Found", 404: "Not Found"}[status]
        extra |= {"content-length": str(len(body)), "connection": "close"}
        head_out = f"HTTP/1.1 {status} {reason}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in extra.items()
        )
        writer.write(head_out.encode() + b"\r\n" + body)
        await writer.drain()


@asynccontextmanager
async def loopback_server() -> AsyncIterator[Loopback]:
    state = Loopback()
    server = await asyncio.start_server(state._handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        for task in list(state.tasks):
            task.cancel()
        await asyncio.gather(*state.tasks, return_exceptions=True)
        await server.wait_closed()
