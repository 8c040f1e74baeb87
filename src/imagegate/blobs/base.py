"""The blob store interface: where file bytes live, streamed in and out, never in the database."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol

CHUNK_SIZE = 256 * 1024


class BlobNotFound(LookupError):
    pass


class BlobStore(Protocol):
    """Bytes under keys. Writes are atomic: a reader sees the whole blob or none."""

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        """Store bytes already in memory (a provider's output) without copying them; the
        SHA-256 of the bytes, in hex."""

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], content_type: str
    ) -> tuple[int, str]:
        """Store chunks as they come; the number of bytes written and their SHA-256, in
        hex."""

    async def open(self, key: str, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """The blob's chunks; raises ``BlobNotFound`` here, before the first chunk."""

    def stream(self, key: str, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """The blob's chunks; ``BlobNotFound`` surfaces on first iteration."""

    async def read(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None:
        """Remove the blob; a missing one is not an error."""

    async def presigned_url(self, key: str, expires_in: int) -> str | None:
        """A URL the store itself serves for ``expires_in`` seconds, or None if it can't."""

    async def close(self) -> None: ...
