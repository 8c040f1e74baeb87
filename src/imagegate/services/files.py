"""Files: uploads checked before they are trusted, outputs kept or purged, references loaded.

A file is a row (metadata, scoped to one workspace) and a blob (its bytes, in the blob
store). Outputs carry ``expires_at`` and are purged with their blobs by
:func:`purge_expired`; uploads and kept outputs have none and live until deleted.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import PurePath
from typing import TYPE_CHECKING, BinaryIO

from sqlalchemy import ColumnElement, Select, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.blobs import BlobNotFound, BlobStore
from imagegate.errors import InvalidParameter, NotFound
from imagegate.ids import new_id
from imagegate.providers.base import InputImage
from imagegate.services.keys import Principal
from imagegate.store.db import Database
from imagegate.store.tables import FILES, File, utcnow
from imagegate.store.tx import Tx

if TYPE_CHECKING:
    from imagegate.services.sources import SourceImages

log = logging.getLogger("imagegate.files")

OUTPUT = "output"
UPLOAD_PURPOSES = ("user_data", "reference")
MAX_REFERENCES = 16

_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\\\]")


def clean_filename(filename: str | None, fallback: str) -> str:
    name = _UNSAFE_NAME.sub("_", PurePath((filename or "").replace("\\", "/")).name).strip()
    return name[:255] or fallback


def check_purpose(purpose: object) -> str:
    if purpose not in UPLOAD_PURPOSES:
        raise InvalidParameter(
            f"Invalid value for 'purpose': {purpose!r}. Allowed: {', '.join(UPLOAD_PURPOSES)}.",
            param="purpose",
        )
    assert isinstance(purpose, str)
    return purpose


async def chunks(handle: BinaryIO, chunk_size: int = 1024 * 1024) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(handle.read, chunk_size):
        yield chunk


async def upload(
    db: Database,
    blobs: BlobStore,
    sources: SourceImages,
    principal: Principal,
    handle: BinaryIO,
    *,
    size: int,
    filename: str | None,
    declared_type: str | None,
    purpose: str,
) -> File:
    """Check an uploaded image (header first, see :mod:`imagegate.services.sources`),
    stream it into the store, and record it as a permanent file."""
    checked = await sources.check(
        handle, size=size, param="file", declared_type=declared_type, filename=filename
    )
    await asyncio.to_thread(handle.seek, 0)
    file_id = new_id("file")
    key = f"{principal.workspace_id}/uploads/{file_id}.{checked.extension}"
    written, sha256 = await blobs.put_stream(key, chunks(handle), checked.content_type)
    file = File(
        id=file_id,
        workspace_id=principal.workspace_id,
        member_id=principal.member_id,
        purpose=purpose,
        filename=clean_filename(filename, f"{file_id}.{checked.extension}"),
        content_type=checked.content_type,
        bytes=written,
        width=checked.width,
        height=checked.height,
        sha256=sha256,
        blob_key=key,
    )
    try:
        async with db.session() as session:
            session.add(file)
    except BaseException:
        await blobs.delete(key)
        raise
    return file


def _live(now: datetime | None = None) -> ColumnElement[bool]:
    return File.expires_at.is_(None) | (File.expires_at > (now or utcnow()))


def not_found(file_id: str, param: str = "file_id") -> NotFound:
    return NotFound(f"No file {file_id!r} in this workspace.", code="file_not_found", param=param)


def _owned(workspace_id: str, member_id: str | None) -> ColumnElement[bool]:
    """This workspace's files; with ``member_id`` (a member, not an admin), its own only."""
    scope = File.workspace_id == workspace_id
    return scope if member_id is None else scope & (File.member_id == member_id)


async def get_file(
    session: AsyncSession, workspace_id: str, file_id: str, *, member_id: str | None = None
) -> File | None:
    """The file if it exists in this workspace (and is ``member_id``'s, when given) and has
    not expired."""
    return (
        await session.execute(
            select(File).where(File.id == file_id, _owned(workspace_id, member_id), _live())
        )
    ).scalar_one_or_none()


async def get_any(session: AsyncSession, file_id: str) -> File | None:
    """The live file with this id in any workspace (for signed links, which name the workspace)."""
    return (
        await session.execute(select(File).where(File.id == file_id, _live()))
    ).scalar_one_or_none()


async def keep(db: Database, principal: Principal, file_id: str, purpose: str) -> File:
    """Make an output permanent: the same id, no expiry, no longer purged with its job's outputs."""
    async with db.session() as session:
        result = await session.execute(
            update(File)
            .where(
                File.id == file_id,
                _owned(principal.workspace_id, principal.only_member),
                _live(),
            )
            .values(expires_at=None, purpose=purpose)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise not_found(file_id)
        file = await get_file(session, principal.workspace_id, file_id)
    assert file is not None
    return file


async def list_files(
    session: AsyncSession,
    workspace_id: str,
    *,
    limit: int,
    after: str | None = None,
    purpose: str | None = None,
    order: str = "desc",
    member_id: str | None = None,
) -> tuple[list[File], bool]:
    """One page of files (``member_id``'s only, when given), newest first by default;
    whether more follow."""
    query = select(File).where(_owned(workspace_id, member_id), _live())
    if purpose is not None:
        query = query.where(File.purpose == purpose)
    if order == "asc":
        query = query.order_by(File.id.asc())
        if after is not None:
            query = query.where(File.id > after)
    else:
        query = query.order_by(File.id.desc())
        if after is not None:
            query = query.where(File.id < after)
    rows = list((await session.execute(query.limit(limit + 1))).scalars())
    return rows[:limit], len(rows) > limit


async def delete_file(
    db: Database,
    blobs: BlobStore,
    workspace_id: str,
    file_id: str,
    *,
    member_id: str | None = None,
) -> None:
    async with db.session() as session:
        key = (
            await session.execute(
                delete(File)
                .where(File.id == file_id, _owned(workspace_id, member_id), _live())
                .returning(File.blob_key)
            )
        ).scalar_one_or_none()
    if key is None:
        raise not_found(file_id)
    await blobs.delete(key)


async def purge_expired(
    db: Database, blobs: BlobStore, *, now: datetime | None = None, batch: int = 500
) -> int:
    """Delete expired files and their blobs; how many were purged.

    Rows go first, so no reader can find a file whose blob is gone; a crash in between
    leaves an unreferenced blob behind, never a dangling row.
    """
    now = now or utcnow()
    purged = 0
    while True:
        async with db.session() as session:
            ids = list(
                (
                    await session.execute(
                        select(File.id)
                        .where(File.expires_at <= now)
                        .order_by(File.expires_at)
                        .limit(batch)
                    )
                ).scalars()
            )
            if not ids:
                return purged
            keys = list(
                (
                    await session.execute(
                        delete(File)
                        .where(File.id.in_(ids), File.expires_at <= now)
                        .returning(File.blob_key)
                    )
                ).scalars()
            )
        for key in keys:
            try:
                await blobs.delete(key)
            except Exception:
                log.exception("could not delete blob %s of an expired file", key)
        purged += len(keys)
        if len(ids) < batch:
            return purged


SOURCE = "source"


async def delete_sources(
    db: Database, blobs: BlobStore, file_ids: Sequence[str], workspace_id: str | None = None
) -> int:
    """Delete those of ``file_ids`` that are sources (images sent with a request, not
    files a caller made), rows first, then blobs; how many were deleted."""
    if not file_ids:
        return 0
    query = delete(File).where(File.id.in_(list(file_ids)), File.purpose == SOURCE)
    if workspace_id is not None:
        query = query.where(File.workspace_id == workspace_id)
    async with db.session() as session:
        keys = list((await session.execute(query.returning(File.blob_key))).scalars())
    for key in keys:
        try:
            await blobs.delete(key)
        except Exception:
            log.exception("could not delete blob %s of a source image", key)
    return len(keys)


def output_expiry(retention_seconds: int, now: datetime | None = None) -> datetime:
    return (now or utcnow()) + timedelta(seconds=retention_seconds)


def check_reference_ids(value: object, param: str = "reference_files") -> tuple[str, ...]:
    """The file ids of a ``reference_files`` list, or a 400 saying what is expected."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidParameter(
            f"Invalid value for {param!r}: expected a list of file ids.", param=param
        )
    if len(value) > MAX_REFERENCES:
        raise InvalidParameter(
            f"Too many reference files: {len(value)}; at most {MAX_REFERENCES}.",
            code="too_many_references",
            param=param,
        )
    return tuple(value)


@functools.cache
def _live_files(count: int, members_own: bool) -> Select[tuple[str]]:
    """Which of ``count`` file ids are live files of a workspace (of one member, with
    ``members_own``): one statement per shape, built once (on PostgreSQL a statement
    built per call would be compiled per call)."""
    query = select(FILES.c.id).where(
        FILES.c.workspace_id == bindparam("p_workspace_id"),
        FILES.c.id.in_([bindparam(f"p_id{index}") for index in range(count)]),
        FILES.c.expires_at.is_(None) | (FILES.c.expires_at > bindparam("p_now")),
    )
    return query.where(FILES.c.member_id == bindparam("p_member_id")) if members_own else query


async def require_files(
    tx: Tx,
    workspace_id: str,
    file_ids: Sequence[str],
    param: str = "reference_files",
    *,
    member_id: str | None = None,
) -> None:
    """404 naming the first id that is not a live file of this workspace (and of
    ``member_id``, when given: a member uses its own files only)."""
    if not file_ids:
        return
    params: dict[str, object] = {"p_workspace_id": workspace_id, "p_now": utcnow()}
    params |= {f"p_id{index}": file_id for index, file_id in enumerate(file_ids)}
    if member_id is not None:
        params["p_member_id"] = member_id
    statement = _live_files(len(file_ids), member_id is not None)
    found = set((await tx.execute(statement, params)).scalars())
    for file_id in file_ids:
        if file_id not in found:
            raise not_found(file_id, param)


_DIMENSIONS = select(FILES.c.width, FILES.c.height).where(
    FILES.c.workspace_id == bindparam("p_workspace_id"), FILES.c.id == bindparam("p_id")
)


async def dimensions(tx: Tx, workspace_id: str, file_id: str) -> tuple[int, int] | None:
    """A file's width and height, if it has them."""
    row = (await tx.execute(_DIMENSIONS, {"p_workspace_id": workspace_id, "p_id": file_id})).first()
    if row is None or not row[0] or not row[1]:
        return None
    return int(row[0]), int(row[1])


async def load_inputs(
    db: Database,
    blobs: BlobStore,
    workspace_id: str,
    file_ids: Sequence[str],
    *,
    link: Callable[[File], str | None] | None = None,
) -> tuple[InputImage, ...]:
    """Reference files as provider inputs, in the order given; ``link`` gives each a
    signed URL where the operator set a public base URL."""
    if not file_ids:
        return ()
    async with db.read_session() as session:
        rows = {
            f.id: f
            for f in (
                await session.execute(
                    select(File).where(
                        File.workspace_id == workspace_id, File.id.in_(file_ids), _live()
                    )
                )
            ).scalars()
        }
    inputs = []
    for file_id in file_ids:
        file = rows.get(file_id)
        if file is None:
            raise not_found(file_id, "reference_files")
        try:
            data = await blobs.read(file.blob_key)
        except BlobNotFound:
            raise not_found(file_id, "reference_files") from None
        inputs.append(
            InputImage(
                data=data,
                content_type=file.content_type,
                url=link(file) if link is not None else None,
                width=file.width or 0,
                height=file.height or 0,
            )
        )
    return tuple(inputs)
