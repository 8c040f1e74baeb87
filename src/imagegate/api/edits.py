"""``POST /v1/images/edits``: OpenAI-compatible image edits, multipart or JSON.

Each source image (and the mask) may be a multipart file, a file id, a data URI or an
http(s) URL; the generation service resolves them (:mod:`imagegate.services.sources`)
after everything else about the request was checked, and keeps them only as long as the
job needs them. The edit is then a job like any generation, whose provider gets them as
input images.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import FormData, UploadFile

from imagegate.api import schemas
from imagegate.api.common import json_object
from imagegate.api.deps import CurrentMember, GatewayDep
from imagegate.api.images import generate_response
from imagegate.api.multipart import read_form, source_part, text_field
from imagegate.api.openapi import (
    AUTHENTICATED,
    EDITS_JSON_BODY,
    EDITS_MULTIPART_BODY,
    GENERATION_ERRORS,
    creating_work,
    errors,
    request_body,
)
from imagegate.api.responses import JSONResponse
from imagegate.api.schemas import ok
from imagegate.errors import InvalidParameter, InvalidRequest, NotFound
from imagegate.services.sources import source_form

router = APIRouter(prefix="/v1/images", tags=["images"], responses=errors(*AUTHENTICATED))

MAX_SOURCE_IMAGES = 16
_MULTIPART_NAMES = {"reference_files": "image"}
_JSON_NAMES = {"reference_files": "images"}


async def _from_multipart(request: Request) -> tuple[dict[str, Any], FormData]:
    form = await read_form(request, max_files=MAX_SOURCE_IMAGES + 1, max_fields=64, param="image")
    body: dict[str, Any] = {}
    images: list[Any] = []
    try:
        for name, value in form.multi_items():
            if name in ("image", "image[]"):
                images.append(source_part(value, "image"))
            elif name == "mask":
                body["mask"] = source_part(value, "mask")
            elif isinstance(value, UploadFile):
                raise InvalidParameter(f"Unexpected file in field {name!r}.", param=name)
            else:
                body[name] = text_field(name, value)
        if len(images) > MAX_SOURCE_IMAGES:
            raise InvalidParameter(
                f"At most {MAX_SOURCE_IMAGES} images can be edited at once.", param="image"
            )
    except BaseException:
        await form.close()
        raise
    if images:
        body["reference_files"] = images
    return body, form


def _json_image(item: Any, param: str) -> str:
    """``{"file_id": …}``, ``{"image_url": …}`` (a data URI or an http(s) URL) or the
    string itself, as a source value."""
    if isinstance(item, dict) and len(item) == 1:
        item = item.get("file_id", item.get("image_url"))
    if not isinstance(item, str) or source_form(item) is None:
        raise InvalidParameter(
            f"Invalid value for {param!r}: give {{'file_id': …}} or {{'image_url': …}} "
            "(an http(s) URL or a data URI).",
            code="invalid_image_source",
            param=param,
        )
    return item


async def _from_json(request: Request) -> dict[str, Any]:
    body = await json_object(request)
    images = body.pop("images", None)
    if not isinstance(images, list) or not images or len(images) > MAX_SOURCE_IMAGES:
        raise InvalidParameter(
            f"'images' is required: a list of 1 to {MAX_SOURCE_IMAGES} images.", param="images"
        )
    body["reference_files"] = [_json_image(item, f"images[{i}]") for i, item in enumerate(images)]
    mask = body.pop("mask", None)
    if mask is not None:
        body["mask"] = _json_image(mask, "mask")
    return body


@router.post(
    "/edits",
    response_model=None,
    responses={
        **ok(schemas.ImagesResponse),
        **ok(schemas.Job, 202, "Prefer: respond-async (or a wait that ran out): the job."),
        **errors(*GENERATION_ERRORS, 415),
    },
    openapi_extra=creating_work(
        request_body(
            {"multipart/form-data": EDITS_MULTIPART_BODY, "application/json": EDITS_JSON_BODY}
        )
    ),
)
async def edit_image(request: Request, member: CurrentMember, gateway: GatewayDep) -> JSONResponse:
    """Edit images with a prompt: multipart (``image``/``image[]``, ``mask``) or JSON."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        body, form = await _from_multipart(request)
        try:
            return await generate_response(
                request, gateway, member, body, action="edit", source_names=_MULTIPART_NAMES
            )
        finally:
            await form.close()
    if media_type == "application/json":
        body = await _from_json(request)
        try:
            return await generate_response(
                request, gateway, member, body, action="edit", source_names=_JSON_NAMES
            )
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
    raise InvalidRequest(
        "Send multipart/form-data with 'image' files, or JSON with 'images'.",
        code="unsupported_media_type",
        status_code=415,
    )
