"""``/v1/files``: file content, by API key or by signed link."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from imagegate.api.deps import GatewayDep, current_member
from imagegate.errors import NotFound, PermissionDenied
from imagegate.store.tables import File

router = APIRouter(prefix="/v1/files", tags=["files"])

SVG_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
    "Content-Disposition": "attachment",
}


@router.get("/{file_id}/content", response_model=None)
async def file_content(
    file_id: str,
    request: Request,
    gateway: GatewayDep,
    expires: int | None = Query(default=None),
    kid: str | None = Query(default=None),
    signature: str | None = Query(default=None),
) -> StreamingResponse:
    async with gateway.db.session() as session:
        file = (await session.execute(select(File).where(File.id == file_id))).scalar_one_or_none()
    if signature is not None or expires is not None or kid is not None:
        if file is None or expires is None or kid is None or signature is None:
            raise PermissionDenied("This link's signature is not valid.", code="invalid_signature")
        gateway.signer.verify(file.id, file.workspace_id, expires, kid, signature)
    else:
        member = await current_member(request, gateway)
        if file is None or file.workspace_id != member.workspace_id:
            raise NotFound(
                f"No file {file_id!r} in this workspace.", code="file_not_found", param="file_id"
            )
    headers = {"Content-Length": str(file.bytes), "Cache-Control": "private, max-age=300"}
    if file.content_type == "image/svg+xml":
        headers.update(SVG_HEADERS)
    return StreamingResponse(
        gateway.blobs.stream(file.blob_key), media_type=file.content_type, headers=headers
    )
