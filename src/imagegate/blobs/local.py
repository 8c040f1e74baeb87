"""Blobs as files under a directory, written atomically and durably.

A blob is written to a temp file, flushed to disk, renamed into place and its directory
flushed (with the parents of directories created for it), all before ``put`` returns: a
job recorded as succeeded never points at a blob that a crash lost or truncated. The
flushed pages are then dropped from the page cache: images are written once and mostly
read never or once, and keeping them would push out pages the database and the gateway
use (on a fresh virtual machine, filling the page cache with new pages also costs several
times the write itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import BinaryIO

from imagegate.blobs.base import CHUNK_SIZE, BlobNotFound


def _flush_and_drop(handle: BinaryIO) -> None:
    """Put a written file's data on disk, then let its (now clean) pages go."""
    handle.flush()
    getattr(os, "fdatasync", os.fsync)(handle.fileno())  # data only, where possible
    if hasattr(os, "posix_fadvise"):  # Linux; elsewhere the pages stay cached
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _flush_directories(directories: list[Path]) -> None:
    """Put the names just created in ``directories`` on disk. A file system that cannot
    flush a directory (EINVAL) or open one (some platforms) gets no flush."""
    for directory in directories:
        try:
            fd = os.open(directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            return
        finally:
            os.close(fd)


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"blob key escapes the store: {key!r}")
        return path

    def _temp(self, key: str) -> tuple[Path, Path, list[Path]]:
        """The blob's path, a temp file beside it, and the directories that the rename
        changes: the blob's own, and the parent of each directory created for it."""
        path = self.path(key)
        changed = [path.parent]
        while not changed[-1].exists():  # a new directory is a new name in its parent
            changed.append(changed[-1].parent)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        return path, tmp, changed

    @staticmethod
    def _commit(tmp: Path, path: Path, changed: list[Path]) -> None:
        """Rename the flushed temp file into place, and put the rename on disk."""
        os.replace(tmp, path)
        _flush_directories(changed)

    def _write(self, key: str, data: bytes) -> None:
        path, tmp, changed = self._temp(key)
        try:
            with tmp.open("wb") as handle:
                handle.write(data)
                _flush_and_drop(handle)
            self._commit(tmp, path, changed)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._write, key, data)

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> int:
        path, tmp, changed = await asyncio.to_thread(self._temp, key)
        written = 0
        try:
            handle: BinaryIO = await asyncio.to_thread(tmp.open, "wb")
            try:
                async for chunk in chunks:
                    await asyncio.to_thread(handle.write, chunk)
                    written += len(chunk)
                await asyncio.to_thread(_flush_and_drop, handle)
            finally:
                await asyncio.to_thread(handle.close)
            await asyncio.to_thread(self._commit, tmp, path, changed)
        except BaseException:
            await asyncio.to_thread(tmp.unlink, True)
            raise
        return written

    async def open(self, key: str, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        try:
            handle: BinaryIO = await asyncio.to_thread(self.path(key).open, "rb")
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        return self._chunks(handle, chunk_size)

    @staticmethod
    async def _chunks(handle: BinaryIO, chunk_size: int) -> AsyncIterator[bytes]:
        try:
            while chunk := await asyncio.to_thread(handle.read, chunk_size):
                yield chunk
        finally:
            handle.close()

    async def stream(self, key: str, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        async for chunk in await self.open(key, chunk_size):
            yield chunk

    async def read(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self.path(key).read_bytes)
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self.path(key).unlink)

    async def presigned_url(self, key: str, expires_in: int) -> str | None:
        return None

    async def close(self) -> None:
        return None
