"""Test images: solid ones, noisy ones, truncated ones, and pixel bombs (a huge PNG header
over a few kilobytes of compressed zeros, made without ever holding its pixels)."""

from __future__ import annotations

import base64
import io
import random
import struct
import zlib

from PIL import Image


def solid(
    width: int, height: int, colour: tuple[int, int, int] = (200, 30, 30), fmt: str = "PNG"
) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, fmt)
    return out.getvalue()


def noisy(width: int, height: int, fmt: str = "PNG") -> bytes:
    rng = random.Random(7)
    image = Image.frombytes(
        "RGB", (width, height), bytes(rng.randrange(256) for _ in range(width * height * 3))
    )
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def truncated(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of ``width`` x ``height`` black pixels (Pillow holds it as one byte
    per pixel once decoded)."""
    compressor = zlib.compressobj(6)
    row = 1 + (width + 7) // 8
    block_rows = 512
    block = b"\0" * (row * block_rows)
    parts = [compressor.compress(block) for _ in range(height // block_rows)]
    parts.append(compressor.compress(b"\0" * (row * (height % block_rows))))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )


def data_uri(data: bytes, content_type: str = "image/png") -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"
