"""``POST /v1/images/upscale``: upscale one image, OpenAI-style (multipart or JSON).

The image may be a multipart file, a file id, a data URI or an http(s) URL (see
:mod:`imagegate.services.sources`). ``model`` defaults to the catalog's upscaler
(``topaz_upscale_image``); ``upscale_factor`` and the model's own parameters pass through.
The output is the input's size times the factor; outputs beyond what the model's price
covers (about 24 megapixels for Topaz) are refused with 400 ``upscale_too_large``.
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
    GENERATION_ERRORS,
    UPSCALE_JSON_BODY,
    UPSCALE_MULTIPART_BODY,
    creating_work,
    errors,
    request_body,
)
from imagegate.api.responses import JSONResponse
from imagegate.api.schemas import ok
from imagegate.errors import InvalidParameter, InvalidRequest
from imagegate.gateway import Gateway
from imagegate.services.generation import upscale_body

router = APIRouter(prefix="/v1/images", tags=["images"], responses=errors(*AUTHENTICATED))

_NUMBERS = ("upscale_factor", "face_enhancement_creativity", "face_enhancement_strength")


async def _from_multipart(request: Request) -> tuple[dict[str, Any], FormData]:
    form = await read_form(request, max_files=2, max_fields=64, param="image")
    body: dict[str, Any] = {}
    try:
        for name, value in form.multi_items():
            if name in ("image", "image_url"):
                if "image" in body:
                    raise InvalidParameter("Send one image to upscale.", param="image")
                body["image"] = source_part(value, "image")
            elif isinstance(value, UploadFile):
                raise InvalidParameter(f"Unexpected file in field {name!r}.", param=name)
            else:
                body[name] = text_field(name, value, _NUMBERS)
    except BaseException:
        await form.close()
        raise
    return body, form


def _prepare(gateway: Gateway, body: dict[str, Any]) -> dict[str, Any]:
    body.setdefault("model", gateway.catalog.choices.actions.get("upscale", "topaz_upscale_image"))
    return upscale_body(gateway.catalog, body)


@router.post(
    "/upscale",
    response_model=None,
    responses={
        **ok(schemas.ImagesResponse),
        **ok(schemas.Job, 202, "Prefer: respond-async (or a wait that ran out): the job."),
        **errors(*GENERATION_ERRORS, 415),
    },
    openapi_extra=creating_work(
        request_body(
            {"multipart/form-data": UPSCALE_MULTIPART_BODY, "application/json": UPSCALE_JSON_BODY}
        )
    ),
)
async def upscale_image(
    request: Request, member: CurrentMember, gateway: GatewayDep
) -> JSONResponse:
    """Upscale an image: multipart (``image`` file or text) or JSON (``image``)."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        body, form = await _from_multipart(request)
        try:
            return await generate_response(
                request, gateway, member, _prepare(gateway, body), action="upscale",
                source_names={"image_url": "image"},
            )  # fmt: skip
        finally:
            await form.close()
    if media_type == "application/json":
        body = await json_object(request)
        return await generate_response(
            request, gateway, member, _prepare(gateway, body), action="upscale",
            source_names={"image_url": "image"},
        )  # fmt: skip
    raise InvalidRequest(
        "Send multipart/form-data with an 'image' file, or JSON with 'image'.",
        code="unsupported_media_type",
        status_code=415,
    )
