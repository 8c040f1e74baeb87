"""The blob store interface."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol


class BlobNotFound(LookupError):
    pass


class BlobStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def stream(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]: ...

    async def read(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None: ...
