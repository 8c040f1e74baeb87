"""Source images: every form a caller gives an image in, resolved into checked bytes.

A model's image parameters (``image_url``, ``image_urls``, ``mask``, the edits route's
``image``/``image[]``) take any of:

- a multipart upload (:class:`Upload`),
- a file id (``file_…``) of the caller's workspace,
- a data URI (``data:image/png;base64,…``),
- an ``http(s)`` URL, fetched only through :mod:`imagegate.services.fetcher`.

Whatever the form, the image is checked the same way, from its header first: the type
from its bytes (not what the client or the server said), the byte size, and the pixel
count (``image_too_large`` before anything is decoded). Only then is its integrity
checked, with bounded memory: PNG chunk by chunk, JPEG at an eighth of its size, WebP by
its container, the rest decoded a few at a time. A checked image that is not a file
already is stored as a *source*: a file with an expiry, deleted when the request that
brought it is refused (see :meth:`SourceImages.discard`).

:class:`SourceImages` (``gateway.sources``) is the one entry point; the HTTP API, the
CLI, the MCP tool and the console all reach it through the generation service.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import PurePath
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError, features
from sqlalchemy import select

from imagegate.blobs import BlobStore
from imagegate.errors import InvalidParameter, InvalidRequest, NotFound, PayloadTooLarge
from imagegate.ids import new_id
from imagegate.services.fetcher import Fetcher
from imagegate.services.files import SOURCE, chunks, clean_filename, delete_sources
from imagegate.services.keys import Principal
from imagegate.store.db import Database
from imagegate.store.tables import File, utcnow

# Pillow format name → (content type, extension). AVIF only where this Pillow decodes it.
FORMATS: dict[str, tuple[str, str]] = {
    "PNG": ("image/png", "png"),
    "JPEG": ("image/jpeg", "jpg"),
    "WEBP": ("image/webp", "webp"),
    "GIF": ("image/gif", "gif"),
}
if features.check("avif"):
    FORMATS["AVIF"] = ("image/avif", "avif")
ALLOWED_NAMES = ", ".join(name.replace("WEBP", "WebP") for name in FORMATS)

# Decodes above this many pixels take a slot (see SourceImages.decode_slots).
LARGE_DECODE_PIXELS = 4_000_000

_TYPE_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}
_UNKNOWN_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_EXTENSION_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".jfif": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".avif": "image/avif",
    ".svg": "image/svg+xml",
    ".html": "text/html",
    ".htm": "text/html",
}
_DATA_URI = re.compile(r"^data:(?P<type>[\w/+.-]*)(?:;[\w=.+-]+)*?;base64,", re.I)
_FILE_ID = re.compile(r"^file_[A-Za-z0-9]{1,60}$")


@dataclass(frozen=True, slots=True)
class Upload:
    """A file sent in a multipart body, as the HTTP layer hands it over."""

    handle: BinaryIO
    size: int
    filename: str | None = None
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class CheckedImage:
    content_type: str
    extension: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True, slots=True)
class Source:
    """A resolved source image: a file of the workspace, and whether this request made it."""

    file_id: str
    width: int
    height: int
    content_type: str
    created: bool


def _refused(message: str, *, code: str, param: str, status: int = 400) -> InvalidRequest:
    return InvalidRequest(message, code=code, param=param, status_code=status)


def too_large(max_pixels: int, param: str, size: tuple[int, int] | None = None) -> InvalidRequest:
    dims = f" ({size[0]}x{size[1]} = {size[0] * size[1]:,} pixels)" if size else ""
    return _refused(
        f"The image in {param!r} is too large{dims}; at most {max_pixels:,} pixels are accepted.",
        code="image_too_large",
        param=param,
        status=422,
    )


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _webp_complete(handle: BinaryIO) -> bool:
    """Whether a WebP file holds as many bytes as its RIFF header says."""
    handle.seek(0)
    header = handle.read(12)
    if len(header) < 12 or header[:4] != b"RIFF":
        return False
    declared = int(struct.unpack("<I", header[4:8])[0]) + 8
    handle.seek(0, io.SEEK_END)
    return handle.tell() >= declared


def _check_integrity(image: Image.Image, handle: BinaryIO) -> None:
    """Prove the image is whole, without holding its full pixels where that can be avoided."""
    if image.format == "PNG":
        image.verify()  # every chunk's CRC up to IEND; no pixel buffer
    elif image.format == "JPEG":
        image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
        image.load()  # decoded at 1/8 scale: a truncated stream still fails
    elif image.format == "WEBP":
        if not _webp_complete(handle):
            raise OSError("truncated WebP")
    else:
        image.load()


def inspect_image(
    handle: BinaryIO,
    *,
    max_pixels: int,
    param: str = "file",
    declared_type: str | None = None,
    filename: str | None = None,
) -> CheckedImage:
    """Check an image from its header (type, pixel count), then its integrity.

    Blocking (Pillow reads and decodes): run it in a thread.
    """
    handle.seek(0)
    try:
        image = Image.open(handle, formats=list(FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise too_large(max_pixels, param) from None
    except (UnidentifiedImageError, SyntaxError, OSError, ValueError, EOFError):
        raise _refused(
            f"The file in {param!r} is not an image in an accepted format ({ALLOWED_NAMES}).",
            code="invalid_image",
            param=param,
        ) from None
    with image:
        assert image.format is not None
        content_type, extension = FORMATS[image.format]
        width, height = image.size
        if width * height > max_pixels or width <= 0 or height <= 0:
            raise too_large(max_pixels, param, image.size)
        try:
            _check_integrity(image, handle)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise too_large(max_pixels, param, (width, height)) from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error):
            raise _refused(
                f"The {image.format} image in {param!r} could not be decoded: "
                "it is truncated or corrupt.",
                code="invalid_image",
                param=param,
            ) from None
    declared = _TYPE_ALIASES.get(_media_type(declared_type), _media_type(declared_type))
    if declared not in _UNKNOWN_TYPES and declared != content_type:
        raise _refused(
            f"The file in {param!r} is a {content_type} image but was sent as {declared}. "
            "Send its real content type (or application/octet-stream).",
            code="content_type_mismatch",
            param=param,
        )
    by_name = _EXTENSION_TYPES.get(PurePath(filename or "").suffix.lower())
    if by_name is not None and by_name != content_type:
        raise _refused(
            f"The file in {param!r} is a {content_type} image but its name {filename!r} "
            f"says {by_name}.",
            code="content_type_mismatch",
            param=param,
        )
    return CheckedImage(content_type, extension, width, height)


def source_form(value: object) -> str | None:
    """Which form a source value has: upload, file, data, url; None if it is none of them."""
    if isinstance(value, Upload):
        return "upload"
    if not isinstance(value, str):
        return None
    if _FILE_ID.match(value):
        return "file"
    head = value[:8].lower()
    if head.startswith("data:"):
        return "data"
    if head.startswith(("http://", "https://")):
        return "url"
    return None


def not_a_source(param: str) -> InvalidParameter:
    return InvalidParameter(
        f"Invalid value for {param!r}: give an image as an http(s) URL, a data URI "
        "(data:image/png;base64,…), a file id (file_…) or a multipart upload.",
        code="invalid_image_source",
        param=param,
    )


class SourceImages:
    """Resolves source images for one gateway: checks, fetches, stores and discards them.

    ``decode_slots`` bounds how many large images (over :data:`LARGE_DECODE_PIXELS`)
    are decoded at once in this process.
    """

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        fetcher: Fetcher,
        *,
        max_bytes: int,
        max_pixels: int,
        retention_seconds: int,
        decode_slots: int = 2,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.fetcher = fetcher
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.retention_seconds = retention_seconds
        self._slots = asyncio.Semaphore(decode_slots)

    async def check(
        self,
        handle: BinaryIO,
        *,
        size: int,
        param: str,
        declared_type: str | None = None,
        filename: str | None = None,
    ) -> CheckedImage:
        """Size, then header, then integrity (large ones a few at a time)."""
        if size == 0:
            raise _refused(f"The file in {param!r} is empty.", code="empty_file", param=param)
        if size > self.max_bytes:
            raise PayloadTooLarge(
                f"The image in {param!r} is {size:,} bytes; at most {self.max_bytes:,} bytes "
                "are accepted.",
                code="file_too_large",
                param=param,
            )
        header = await asyncio.to_thread(_header_size, handle)
        if header is not None and header[0] * header[1] > LARGE_DECODE_PIXELS:
            if header[0] * header[1] > self.max_pixels:
                raise too_large(self.max_pixels, param, header)
            async with self._slots:
                return await asyncio.to_thread(
                    self._inspect, handle, param, declared_type, filename
                )
        return await asyncio.to_thread(self._inspect, handle, param, declared_type, filename)

    def _inspect(
        self, handle: BinaryIO, param: str, declared_type: str | None, filename: str | None
    ) -> CheckedImage:
        checked = inspect_image(
            handle,
            max_pixels=self.max_pixels,
            param=param,
            declared_type=declared_type,
            filename=filename,
        )
        handle.seek(0)
        return checked

    async def resolve(self, principal: Principal, value: object, *, param: str) -> Source:
        """One source image as a file of the caller's workspace (stored if it is new)."""
        form = source_form(value)
        if form == "file":
            assert isinstance(value, str)
            return await self._file(principal, value, param)
        if form == "upload":
            assert isinstance(value, Upload)
            checked = await self.check(
                value.handle,
                size=value.size,
                param=param,
                declared_type=value.content_type,
                filename=value.filename,
            )
            return await self._store(principal, value.handle, checked, value.filename)
        if form == "data":
            assert isinstance(value, str)
            data, declared = self._data_uri(value, param)
        elif form == "url":
            assert isinstance(value, str)
            fetched = await self.fetcher.get(value, param=param, max_bytes=self.max_bytes)
            data, declared = fetched.data, None  # the type comes from the bytes
        else:
            raise not_a_source(param)
        handle = io.BytesIO(data)
        checked = await self.check(handle, size=len(data), param=param, declared_type=declared)
        return await self._store(principal, handle, checked)

    def _data_uri(self, value: str, param: str) -> tuple[bytes, str | None]:
        match = _DATA_URI.match(value)
        if match is None:
            raise InvalidParameter(
                f"Invalid value for {param!r}: a data URI must be data:<type>;base64,<data>.",
                code="invalid_image_source",
                param=param,
            )
        encoded = value[match.end() :]
        if len(encoded) // 4 * 3 > self.max_bytes + 3:
            raise PayloadTooLarge(
                f"The image in {param!r} is larger than {self.max_bytes:,} bytes.",
                code="file_too_large",
                param=param,
            )
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidParameter(
                f"Invalid value for {param!r}: the data URI is not base64.", param=param
            ) from None
        return data, match["type"] or None

    async def _file(self, principal: Principal, file_id: str, param: str) -> Source:
        async with self.db.read_session() as session:
            file = (
                await session.execute(
                    select(File).where(
                        File.id == file_id,
                        File.workspace_id == principal.workspace_id,
                        File.expires_at.is_(None) | (File.expires_at > utcnow()),
                    )
                )
            ).scalar_one_or_none()
        if file is None:
            raise NotFound(
                f"No file {file_id!r} in this workspace.", code="file_not_found", param=param
            )
        width, height = file.width or 0, file.height or 0
        if width * height > self.max_pixels:
            raise too_large(self.max_pixels, param, (width, height))
        return Source(file.id, width, height, file.content_type, created=False)

    async def _store(
        self,
        principal: Principal,
        handle: BinaryIO,
        checked: CheckedImage,
        filename: str | None = None,
    ) -> Source:
        file_id = new_id("file")
        key = f"{principal.workspace_id}/sources/{file_id}.{checked.extension}"
        await asyncio.to_thread(handle.seek, 0)
        written, sha256 = await self.blobs.put_stream(key, chunks(handle), checked.content_type)
        file = File(
            id=file_id,
            workspace_id=principal.workspace_id,
            purpose=SOURCE,
            filename=clean_filename(filename, f"{file_id}.{checked.extension}"),
            content_type=checked.content_type,
            bytes=written,
            width=checked.width,
            height=checked.height,
            sha256=sha256,
            blob_key=key,
            expires_at=utcnow() + timedelta(seconds=self.retention_seconds),
        )
        try:
            async with self.db.session() as session:
                session.add(file)
        except BaseException:
            await self.blobs.delete(key)
            raise
        return Source(file_id, checked.width, checked.height, checked.content_type, created=True)

    async def discard(self, file_ids: Sequence[str]) -> None:
        """Delete sources this request stored (it was refused, or it was a replay)."""
        await delete_sources(self.db, self.blobs, file_ids)


def _header_size(handle: BinaryIO) -> tuple[int, int] | None:
    """Width and height from the header alone (None if Pillow cannot tell)."""
    handle.seek(0)
    try:
        with Image.open(handle, formats=list(FORMATS)) as image:
            return image.size
    except Exception:  # inspect_image says what is wrong
        return None
    finally:
        handle.seek(0)
