"""``/v1/images``: the OpenAI-compatible Images API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from imagegate.api import schemas
from imagegate.api.common import (
    abandon_sync_mode,
    create_job_from_request,
    images_data,
    inline_data,
    is_sync_mode,
    job_object,
    json_object,
    prefer_wait,
    start_job,
    sync_mode_replayed,
)
from imagegate.api.deps import CurrentMember, GatewayDep
from imagegate.api.openapi import (
    AUTHENTICATED,
    GENERATION_ERRORS,
    IMAGES_BODY,
    creating_work,
    errors,
    json_body,
)
from imagegate.api.pricing import dry_run, estimate_response
from imagegate.api.responses import JSONResponse
from imagegate.api.schemas import ok
from imagegate.errors import GenerationFailed, InvalidParameter, UpstreamError, error_for_job
from imagegate.gateway import Gateway
from imagegate.money import as_credits
from imagegate.services import generation, jobs, model_choice
from imagegate.services.keys import Principal

router = APIRouter(prefix="/v1/images", tags=["images"], responses=errors(*AUTHENTICATED))


def _fallback(choice: model_choice.ModelChoice | None) -> dict[str, Any]:
    """Says so in the response when a member's disabled selection gave way to the default."""
    if choice is None or choice.fallback_from is None:
        return {}
    return {
        "model_fallback": {
            "from": choice.fallback_from,
            "to": choice.model.slug,
            "reason": "model_not_enabled",
            "message": choice.notice(),
        }
    }


@router.post(
    "/generations",
    response_model=None,
    responses={
        200: {
            "description": "The images; with ?dry_run=true, the estimate instead.",
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {"$ref": "#/components/schemas/ImagesResponse"},
                            {"$ref": "#/components/schemas/Estimate"},
                        ]
                    }
                }
            },
        },
        **ok(schemas.Job, 202, "Prefer: respond-async (or a wait that ran out): the job."),
        **errors(*GENERATION_ERRORS),
    },
    openapi_extra=creating_work(json_body(IMAGES_BODY), estimates=True),
)
async def create_image(
    request: Request, member: CurrentMember, gateway: GatewayDep
) -> JSONResponse:
    body = await json_object(request)
    if dry_run(request):
        return await estimate_response(gateway, member, body)
    return await generate_response(request, gateway, member, body, action="generate")


async def generate_response(
    request: Request,
    gateway: Gateway,
    member: Principal,
    body: dict[str, Any],
    *,
    action: str,
    source_names: dict[str, str] | None = None,
) -> JSONResponse:
    """Create the job (``generate`` or ``edit``), wait for it, and answer as OpenAI does."""
    response_format = body.get("response_format") or "b64_json"
    if response_format not in generation.RESPONSE_FORMATS:
        raise InvalidParameter(
            f"Invalid value for 'response_format': {response_format!r}. Allowed: url, b64_json.",
            param="response_format",
        )
    respond_async = "respond-async" in request.headers.get("prefer", "")
    wait = prefer_wait(request, gateway)
    planners = {
        "generate": generation.plan_openai,
        "edit": generation.plan_edit,
        "upscale": generation.plan_upscale,
    }
    plan_for = planners[action]
    if body.get("sync_mode") is True and respond_async:
        raise InvalidParameter(
            "sync_mode images come back only in this response; drop 'Prefer: respond-async'.",
            param="sync_mode",
        )
    submission = await create_job_from_request(
        request,
        gateway,
        member,
        body,
        choice={name: body.get(name) for name in ("model", "tier", "use_case")},
        planner=lambda model, body: plan_for(
            model, body, region=generation.preferred_region(gateway.catalog, body)
        ),
        action=action,
        source_names=source_names,
    )
    job = submission.job
    event_job = job.id
    headers = generation.deprecation_headers(
        gateway.catalog.resolve(job.model), job.request["plan"].get("notices") or []
    )
    fallback = _fallback(submission.choice)
    if fallback:
        headers["X-Imagegate-Model-Fallback"] = (
            f"{fallback['model_fallback']['from']} -> {job.model}"
        )
    waits = not respond_async or wait is not None
    sync_mode = is_sync_mode(job)
    if sync_mode and submission.replayed:
        raise sync_mode_replayed(job)
    event = gateway.dispatcher.watch(job.id)
    # A job this process runs hands its success straight back: no reading it back.
    delivery = gateway.runner.expect_delivery(job.id) if waits else None
    try:
        start_job(gateway, submission)
        if not waits:
            # The jobs API's shape: a job just created has no outputs yet.
            accepted = job_object(job) | {"outputs": []} | fallback
            return JSONResponse(accepted, status_code=202, headers=headers)
        timeout = wait if wait is not None else gateway.settings.sync_timeout_seconds
        job = await generation.wait_for_job(
            gateway.db,
            event,
            member.workspace_id,
            job.id,
            timeout,
            just_submitted=not submission.replayed,
            finished=lambda: delivery.result().job if delivery and delivery.done() else None,
            runs_here=lambda: gateway.runner.runs(event_job),
            recheck_seconds=gateway.recheck_seconds(),
        )
    finally:
        gateway.dispatcher.unwatch(event_job)
        gateway.runner.forget_delivery(event_job)
    if job.status not in jobs.TERMINAL:
        if sync_mode:
            raise await abandon_sync_mode(gateway, job, timeout)
        if respond_async or wait is not None:
            pending = job_object(job) | {"outputs": []} | fallback
            return JSONResponse(pending, status_code=202, headers=headers)
        raise UpstreamError(
            f"The generation did not finish within {timeout:g}s; poll GET /v1/jobs/{job.id}.",
            code="generation_timeout",
            status_code=504,
            extra={"job_id": job.id},
        )
    if job.status != jobs.SUCCEEDED:
        error = error_for_job(job.error_code, job.error_message, job.provider_reason)
        error.extra["job_id"] = job.id
        raise error
    plan_info = job.request["plan"]
    delivered = delivery.result() if delivery is not None and delivery.done() else None
    if sync_mode:
        if delivered is None:
            raise GenerationFailed(
                "The sync_mode result was produced by another process and is lost; retry.",
                code="inline_result_lost",
                extra={"job_id": job.id},
            )
        images = delivered.images
        revised = (job.result or {}).get("revised_prompts") or []
        data = inline_data(images, revised, response_format)
        dims = (
            (images[0].width, images[0].height)
            if images
            else (plan_info["width"], plan_info["height"])
        )
    else:
        if delivered is not None:
            outputs = delivered.files
        else:
            async with gateway.db.read_session() as session:
                outputs = await jobs.job_outputs(session, job.id)
        in_hand = delivered.images if delivered is not None else None
        data = await images_data(gateway, request, job, outputs, response_format, in_hand)
        dims = (plan_info["width"], plan_info["height"])
        if outputs:
            dims = (outputs[0].width or dims[0], outputs[0].height or dims[1])
    payload: dict[str, Any] = {
        "created": int(job.created_at.timestamp()),
        "data": data,
        "id": job.id,
        "job_id": job.id,
        "model": job.model,
        "width": dims[0],
        "height": dims[1],
        "output_format": plan_info["output_format"],
        "estimated_cost": as_credits(job.estimated_cost),
        "charged_amount": as_credits(job.charged_amount or 0),
        **fallback,
    }
    return JSONResponse(payload, headers=headers)
