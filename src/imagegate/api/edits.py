"""``POST /v1/images/edits``: OpenAI-compatible image edits, multipart or JSON.

The source images (and the mask) are checked like any upload and kept as ``reference``
files of the workspace; the edit is then a job like any generation, whose provider gets
them as input images.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from typing import Any, BinaryIO

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from imagegate.api.common import json_object
from imagegate.api.deps import CurrentMember, GatewayDep
from imagegate.api.images import generate_response
from imagegate.api.responses import JSONResponse
from imagegate.errors import InvalidParameter, InvalidRequest, NotFound
from imagegate.gateway import Gateway
from imagegate.services import files
from imagegate.services.keys import Principal

router = APIRouter(prefix="/v1/images", tags=["images"])

MAX_SOURCE_IMAGES = 16
_INTEGERS = ("n", "seed", "output_compression", "partial_images")
_BOOLEANS = ("mock", "sync_mode")
_DATA_URI = re.compile(r"^data:(?P<type>[\w/+.-]+);base64,(?P<data>.+)$", re.S)


def _coerce(name: str, value: str) -> Any:
    """Form fields arrive as text; give the few numeric and boolean ones their type."""
    if "\x00" in value:
        raise InvalidParameter(
            f"Invalid value for {name!r}: NUL characters are not allowed.", param=name
        )
    if name in _INTEGERS:
        try:
            return int(value)
        except ValueError:
            raise InvalidParameter(
                f"Invalid value for {name!r}: {value!r} is not an integer.", param=name
            ) from None
    if name in _BOOLEANS:
        if value.lower() not in ("true", "false"):
            raise InvalidParameter(
                f"Invalid value for {name!r}: expected true or false.", param=name
            )
        return value.lower() == "true"
    return value


async def _store(
    gateway: Gateway,
    member: Principal,
    data: BinaryIO,
    size: int,
    filename: str | None,
    content_type: str | None,
) -> str:
    settings = gateway.settings
    file = await files.upload(
        gateway.db,
        gateway.blobs,
        member,
        data,
        size=size,
        filename=filename,
        declared_type=content_type,
        purpose="reference",
        max_bytes=settings.upload_max_bytes,
        max_pixels=settings.upload_max_pixels,
    )
    return file.id


async def _from_multipart(request: Request, gateway: Gateway, member: Principal) -> dict[str, Any]:
    try:
        form = await request.form(max_files=MAX_SOURCE_IMAGES + 1, max_fields=64)
    except StarletteHTTPException as exc:
        if exc.status_code != 400:
            raise
        raise InvalidRequest(
            f"The multipart body cannot be read: {exc.detail}",
            code="invalid_multipart",
            param="image",
        ) from None
    try:
        body: dict[str, Any] = {}
        sources: list[UploadFile] = []
        mask: UploadFile | None = None
        for name, value in form.multi_items():
            if name in ("image", "image[]"):
                if not isinstance(value, UploadFile):
                    raise InvalidParameter("'image' must be an uploaded image file.", param="image")
                sources.append(value)
            elif name == "mask":
                if not isinstance(value, UploadFile):
                    raise InvalidParameter("'mask' must be an uploaded image file.", param="mask")
                mask = value
            elif isinstance(value, UploadFile):
                raise InvalidParameter(f"Unexpected file in field {name!r}.", param=name)
            else:
                body[name] = _coerce(name, value)
        if len(sources) > MAX_SOURCE_IMAGES:
            raise InvalidParameter(
                f"At most {MAX_SOURCE_IMAGES} images can be edited at once.", param="image"
            )
        ids = []
        for index, upload in enumerate(sources):
            param = "image" if len(sources) == 1 else f"image[{index}]"
            try:
                ids.append(
                    await _store(
                        gateway,
                        member,
                        upload.file,
                        upload.size or 0,
                        upload.filename,
                        upload.content_type,
                    )
                )
            except InvalidRequest as exc:
                exc.param = param
                raise
        body["reference_files"] = ids
        if mask is not None:
            body["mask_file"] = await _store(
                gateway, member, mask.file, mask.size or 0, mask.filename, mask.content_type
            )
        return body
    finally:
        await form.close()


async def _json_image(gateway: Gateway, member: Principal, item: Any, param: str) -> str:
    """``{"file_id": …}`` or ``{"image_url": "data:…;base64,…"}`` as a file id."""
    if isinstance(item, dict) and isinstance(item.get("file_id"), str) and len(item) == 1:
        return str(item["file_id"])
    url = item.get("image_url") if isinstance(item, dict) and len(item) == 1 else None
    match = _DATA_URI.match(url) if isinstance(url, str) else None
    if match is None:
        raise InvalidParameter(
            f"Invalid value for {param!r}: give {{'file_id': …}} or "
            "{'image_url': 'data:image/png;base64,…'} (remote URLs are not fetched).",
            param=param,
        )
    try:
        data = base64.b64decode(match["data"], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameter(
            f"Invalid value for {param!r}: the data URI is not base64.", param=param
        ) from None
    try:
        return await _store(gateway, member, io.BytesIO(data), len(data), None, match["type"])
    except InvalidRequest as exc:
        exc.param = param
        raise


async def _from_json(request: Request, gateway: Gateway, member: Principal) -> dict[str, Any]:
    body = await json_object(request)
    images = body.pop("images", None)
    if not isinstance(images, list) or not images or len(images) > MAX_SOURCE_IMAGES:
        raise InvalidParameter(
            f"'images' is required: a list of 1 to {MAX_SOURCE_IMAGES} images.", param="images"
        )
    body["reference_files"] = [
        await _json_image(gateway, member, item, f"images[{i}]") for i, item in enumerate(images)
    ]
    mask = body.pop("mask", None)
    if mask is not None:
        body["mask_file"] = await _json_image(gateway, member, mask, "mask")
    return body


@router.post("/edits", response_model=None)
async def edit_image(request: Request, member: CurrentMember, gateway: GatewayDep) -> JSONResponse:
    """Edit images with a prompt: multipart (``image``/``image[]``, ``mask``) or JSON."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        body = await _from_multipart(request, gateway, member)
    elif media_type == "application/json":
        body = await _from_json(request, gateway, member)
        try:
            return await generate_response(request, gateway, member, body, action="edit")
        except NotFound as exc:
            # Name the file id where the caller wrote it: images[0].file_id, not ours.
            ids = body.get("reference_files") or []
            if exc.code == "file_not_found" and exc.param == "reference_files":
                index = next((i for i, f in enumerate(ids) if repr(f) in exc.message), None)
                if index is not None:
                    exc.param = f"images[{index}].file_id"
            elif exc.code == "file_not_found" and exc.param == "mask":
                exc.param = "mask.file_id"
            raise
    else:
        raise InvalidRequest(
            "Send multipart/form-data with 'image' files, or JSON with 'images'.",
            code="unsupported_media_type",
            status_code=415,
        )
    return await generate_response(request, gateway, member, body, action="edit")
