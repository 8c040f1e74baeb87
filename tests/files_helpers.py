"""Images and clients the file tests share."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from PIL import Image

from imagegate.gateway import Gateway
from imagegate.services.bootstrap import create_member, create_workspace
from imagegate.services.keys import create_key


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (64, 48), colour: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, fmt)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid 1-bit PNG of width x height pixels, all zero: tens of KB on disk."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte, then the packed pixels
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


@asynccontextmanager
async def other_workspace(
    client: httpx.AsyncClient, gateway: Gateway
) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the admin of a second workspace, on the same app."""
    async with gateway.db.session() as session:
        workspace = await create_workspace(session, gateway.catalog, "Other")
        member = await create_member(session, workspace, "other admin", "admin")
        _, secret = await create_key(session, member, "other")
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(
        transport=client._transport, base_url="http://testserver", headers=headers
    ) as other:
        yield other


@asynccontextmanager
async def anonymous(client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=client._transport, base_url="http://testserver") as bare:
        yield bare
