"""``/v1/files``: upload, keep an output, list, metadata, content, delete.

Every lookup is scoped to the caller's workspace; content is also reachable by a
signed link (no key needed), which names the file, its workspace and an expiry.
"""

from __future__ import annotations

import re
import time
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from starlette.datastructures import FormData, UploadFile

from imagegate.api import schemas
from imagegate.api.common import file_object, json_object
from imagegate.api.deps import CurrentMember, GatewayDep, current_member
from imagegate.api.multipart import read_form
from imagegate.api.openapi import AUTHENTICATED, errors, request_body
from imagegate.api.responses import JSONResponse
from imagegate.api.schemas import ok
from imagegate.blobs import BlobNotFound
from imagegate.errors import InvalidParameter, InvalidRequest, PermissionDenied
from imagegate.gateway import Gateway
from imagegate.services import files
from imagegate.services.keys import Principal
from imagegate.store.tables import File

router = APIRouter(prefix="/v1/files", tags=["files"], responses=errors(*AUTHENTICATED))

_UPLOAD = {
    "type": "object",
    "required": ["file", "purpose"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "PNG, JPEG, WebP or GIF."},
        "purpose": {"type": "string", "enum": list(files.UPLOAD_PURPOSES)},
    },
}
_KEEP = {
    "type": "object",
    "required": ["file_id"],
    "properties": {
        "file_id": {"type": "string", "minLength": 1, "description": "A generated output's id."},
        "purpose": {"type": "string", "enum": list(files.UPLOAD_PURPOSES)},
    },
}
_BINARY = {"type": "string", "format": "binary"}
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/avif", "image/svg+xml")

SVG_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
    "Content-Disposition": "attachment",
}
FILE_ID = re.compile(r"^file_[0-9a-z]{26}$")


async def _form(request: Request) -> FormData:
    return await read_form(
        request, max_files=1, max_fields=10, param="file", hint=" Send one 'file' and a 'purpose'."
    )


async def _upload(request: Request, member: Principal, gateway: Gateway) -> JSONResponse:
    form = await _form(request)
    try:
        upload = form.get("file")
        if "file_id" in form and upload is None:
            return await _keep(gateway, request, member, form.get("file_id"), form.get("purpose"))
        if not isinstance(upload, UploadFile):
            raise InvalidParameter(
                "Send the image as the multipart field 'file' (or 'file_id' to keep an output).",
                code="file_required",
                param="file",
            )
        purpose = files.check_purpose(form.get("purpose"))
        file = await files.upload(
            gateway.db,
            gateway.blobs,
            gateway.sources,
            member,
            upload.file,
            size=upload.size if upload.size is not None else 0,
            filename=upload.filename,
            declared_type=upload.content_type,
            purpose=purpose,
        )
    finally:
        await form.close()
    return JSONResponse(file_object(gateway, request, file), status_code=201)


async def _keep(
    gateway: Gateway, request: Request, member: Principal, file_id: object, purpose: object
) -> JSONResponse:
    if not isinstance(file_id, str) or not file_id:
        raise InvalidParameter("'file_id' must be the id of a generated output.", param="file_id")
    file = await files.keep(
        gateway.db, member, file_id, files.check_purpose(purpose or "user_data")
    )
    return JSONResponse(file_object(gateway, request, file))


@router.post(
    "",
    response_model=None,
    responses={
        **ok(schemas.FileObject, 201, "The uploaded file."),
        **ok(schemas.FileObject, 200, "The output, kept with no expiry."),
        **errors(404, 415),
    },
    openapi_extra=request_body({"multipart/form-data": _UPLOAD, "application/json": _KEEP}),
)
async def create_file(request: Request, member: CurrentMember, gateway: GatewayDep) -> JSONResponse:
    """Upload an image (multipart ``file`` + ``purpose``), or keep an output (``file_id``)."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return await _upload(request, member, gateway)
    if media_type == "application/json":
        body = await json_object(request)
        return await _keep(gateway, request, member, body.get("file_id"), body.get("purpose"))
    raise InvalidRequest(
        "Send multipart/form-data with a 'file' to upload, "
        'or JSON {"file_id": …} to keep an output.',
        code="unsupported_media_type",
        status_code=415,
    )


@router.get("", response_model=None, responses=ok(schemas.FileList))
async def list_files(
    request: Request,
    member: CurrentMember,
    gateway: GatewayDep,
    limit: int = Query(default=20, ge=1, le=100, description="Files per page (1-100)."),
    after: str | None = Query(
        default=None,
        description="Cursor: the last id of the previous page.",
        json_schema_extra={"pattern": FILE_ID.pattern},
    ),
    purpose: Literal["output", "user_data", "reference", "source"] | None = Query(default=None),
    order: Literal["desc", "asc"] = Query(default="desc", description="By creation time."),
) -> dict[str, Any]:
    if after is not None and not FILE_ID.fullmatch(after):
        raise InvalidParameter(
            f"Invalid value for 'after': {after!r}. Give the last_id of the previous page.",
            param="after",
        )
    async with gateway.db.read_session() as session:
        page, has_more = await files.list_files(
            session,
            member.workspace_id,
            limit=limit,
            after=after,
            purpose=purpose,
            order=order,
            member_id=member.only_member,
        )
    data = [file_object(gateway, request, file) for file in page]
    return {
        "object": "list",
        "data": data,
        "first_id": page[0].id if page else None,
        "last_id": page[-1].id if page else None,
        "has_more": has_more,
    }


async def _member_file(gateway: Gateway, member: Principal, file_id: str) -> File:
    async with gateway.db.read_session() as session:
        file = await files.get_file(
            session, member.workspace_id, file_id, member_id=member.only_member
        )
    if file is None:
        raise files.not_found(file_id)
    return file


@router.get("/{file_id}", response_model=None, responses={**ok(schemas.FileObject), **errors(404)})
async def get_file(
    file_id: str, request: Request, member: CurrentMember, gateway: GatewayDep
) -> dict[str, Any]:
    return file_object(gateway, request, await _member_file(gateway, member, file_id))


@router.delete(
    "/{file_id}", response_model=None, responses={**ok(schemas.FileDeleted), **errors(404)}
)
async def delete_file(file_id: str, member: CurrentMember, gateway: GatewayDep) -> dict[str, Any]:
    await files.delete_file(
        gateway.db, gateway.blobs, member.workspace_id, file_id, member_id=member.only_member
    )
    return {"id": file_id, "object": "file", "deleted": True}


@router.get(
    "/{file_id}/content",
    response_model=None,
    response_class=Response,  # the answer is the image, never JSON
    responses={
        200: {
            "description": "The file's bytes.",
            "content": {media: {"schema": _BINARY} for media in _IMAGE_TYPES},
        },
        307: {"description": "S3 presigned URLs: the store's own link (Location)."},
        **errors(403, 404),
    },
    openapi_extra={"security": [{}, {"bearer": []}]},
)
async def file_content(
    file_id: str,
    request: Request,
    gateway: GatewayDep,
    expires: str | None = Query(default=None),
    kid: str | None = Query(default=None),
    signature: str | None = Query(default=None),
) -> StreamingResponse | RedirectResponse:
    if signature is not None or expires is not None or kid is not None:
        file = await _signed_file(gateway, file_id, expires, kid, signature)
    else:
        file = await _member_file(gateway, await current_member(request, gateway), file_id)
    svg = file.content_type == "image/svg+xml"
    if gateway.settings.s3_presigned_urls and not svg:
        # Let the store serve the bytes, for no longer than the rest of the link's life.
        ttl = max(1, int(expires) - int(time.time())) if expires and expires.isdigit() else 300
        url = await gateway.blobs.presigned_url(
            file.blob_key, min(ttl, gateway.settings.url_ttl_seconds)
        )
        if url is not None:
            return RedirectResponse(
                url, status_code=307, headers={"Cache-Control": "private, no-store"}
            )
    try:
        chunks = await gateway.blobs.open(file.blob_key)
    except BlobNotFound:
        raise files.not_found(file_id) from None
    headers = {"Content-Length": str(file.bytes), "Cache-Control": "private, max-age=300"}
    if svg:
        headers.update(SVG_HEADERS)
    else:
        headers["X-Content-Type-Options"] = "nosniff"
    return StreamingResponse(chunks, media_type=file.content_type, headers=headers)


async def _signed_file(
    gateway: Gateway, file_id: str, expires: str | None, kid: str | None, signature: str | None
) -> File:
    invalid = PermissionDenied("This link's signature is not valid.", code="invalid_signature")
    if expires is None or kid is None or signature is None or not expires.isdigit():
        raise invalid
    if not gateway.signer.knows(kid):
        await gateway.refresh_signer()  # rotated by another process since we loaded
    async with gateway.db.read_session() as session:
        file = await files.get_any(session, file_id)
    if file is None:
        # Links never outlive their file, so a link to a purged file has expired; say no
        # more than that, so a link cannot probe for other files' ids.
        if int(expires) < time.time():
            raise PermissionDenied(
                "This link has expired. Fetch the job or file again for a fresh one.",
                code="link_expired",
            )
        raise PermissionDenied(
            "This link is not valid: its signature does not match or its file was deleted.",
            code="invalid_signature",
        )
    gateway.signer.verify(file.id, file.workspace_id, int(expires), kid, signature)
    return file
