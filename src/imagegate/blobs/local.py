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
import hashlib
import os
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import BinaryIO

from imagegate.blobs.base import CHUNK_SIZE, BlobNotFound

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _flush_and_drop(fd: int) -> None:
    """Put a written file's data on disk, then let its (now clean) pages go."""
    getattr(os, "fdatasync", os.fsync)(fd)  # data only, where possible
    if hasattr(os, "posix_fadvise"):  # Linux; elsewhere the pages stay cached
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _flush_directories(directories: list[str]) -> None:
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


def _make_directory(directory: str) -> list[str]:
    """Create ``directory`` and its missing parents; the parents that gained an entry,
    outermost first (none when it was there already)."""
    try:
        os.mkdir(directory)
    except FileExistsError:
        return []
    except FileNotFoundError:
        parent = os.path.dirname(directory)
        changed = _make_directory(parent)
        try:
            os.mkdir(directory)
        except FileExistsError:
            return changed
        return [*changed, parent]
    return [os.path.dirname(directory)]


class LocalBlobStore:
    """Every write is a handful of system calls in one worker thread: each call gives up
    the interpreter lock and waits to take it back from a busy event loop, so paths are
    checked as text and a blob's directory is created only when opening in it fails."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._prefix = os.path.join(str(self.root), "")

    def path(self, key: str) -> Path:
        return Path(self._path(key))

    def _path(self, key: str) -> str:
        # Keys are the gateway's own (ids joined by slashes); as text, no lookups on disk.
        path = os.path.normpath(os.path.join(self._prefix, key))
        if not path.startswith(self._prefix):
            raise ValueError(f"blob key escapes the store: {key!r}")
        return path

    def _open_temp(self, key: str) -> tuple[str, str, int, list[str]]:
        """The blob's path, a new temp file beside it (and its descriptor), and the
        directories that the rename changes: the blob's own, and the parent of each
        directory created for it (innermost first)."""
        path = self._path(key)
        directory, name = os.path.split(path)
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp")
        created: list[str] = []
        try:
            fd = os.open(tmp, _NEW_FILE, 0o666)
        except FileNotFoundError:
            created = _make_directory(directory)
            fd = os.open(tmp, _NEW_FILE, 0o666)
        return path, tmp, fd, [directory, *reversed(created)]

    @staticmethod
    def _commit(tmp: str, path: str, changed: list[str]) -> None:
        """Rename the flushed temp file into place, and put the rename on disk."""
        os.replace(tmp, path)
        _flush_directories(changed)

    def _write(self, key: str, data: bytes) -> str:
        path, tmp, fd, changed = self._open_temp(key)
        try:
            try:
                _write_all(fd, data)
                if hasattr(os, "posix_fadvise"):
                    # Starts writing the pages out (Linux), so the disk works while the
                    # bytes are hashed, and the flush below waits for what is left.
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                digest = hashlib.sha256(data).hexdigest()
                _flush_and_drop(fd)
            finally:
                os.close(fd)
            self._commit(tmp, path, changed)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return digest

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        # One worker thread writes and hashes: a second for the hash was one more
        # hand-off of the interpreter lock per image.
        return await asyncio.to_thread(self._write, key, data)

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], content_type: str
    ) -> tuple[int, str]:
        path, tmp, fd, changed = await asyncio.to_thread(self._open_temp, key)
        written = 0
        digest = hashlib.sha256()

        def write(chunk: bytes) -> None:  # hashed in the thread that writes it, as in put
            _write_all(fd, chunk)
            digest.update(chunk)

        try:
            try:
                async for chunk in chunks:
                    await asyncio.to_thread(write, chunk)
                    written += len(chunk)
                await asyncio.to_thread(_flush_and_drop, fd)
            finally:
                await asyncio.to_thread(os.close, fd)
            await asyncio.to_thread(self._commit, tmp, path, changed)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(os.unlink, tmp)
            raise
        return written, digest.hexdigest()

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
