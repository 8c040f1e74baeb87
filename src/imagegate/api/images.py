"""``/v1/images``: the OpenAI-compatible Images API."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from imagegate.api.responses import JSONResponse

from imagegate.api.common import images_data, job_object, json_object
from imagegate.api.deps import CurrentMember, GatewayDep
from imagegate.api.pricing import dry_run, estimate_response
from imagegate.errors import InvalidParameter, UpstreamError, error_for_job
from imagegate.services import generation, jobs

router = APIRouter(prefix="/v1/images", tags=["images"])

_WAIT = re.compile(r"\bwait=(\d+)")


def _prefer(request: Request) -> tuple[bool, float | None]:
    prefer = request.headers.get("prefer", "")
    wait = _WAIT.search(prefer)
    return "respond-async" in prefer, float(wait.group(1)) if wait else None


@router.post("/generations", response_model=None)
async def create_image(request: Request, member: CurrentMember, gateway: GatewayDep) -> JSONResponse:
    body = await json_object(request)
    response_format = body.get("response_format") or "b64_json"
    if response_format not in generation.RESPONSE_FORMATS:
        raise InvalidParameter(
            f"Invalid value for 'response_format': {response_format!r}. Allowed: url, b64_json.",
            param="response_format",
        )
    respond_async, wait = _prefer(request)
    if dry_run(request):
        return await estimate_response(gateway, member, body)
    async with gateway.db.session() as session:
        model, chosen = await generation.choose_model(session, gateway.catalog, member, body)
        await generation.check_usable(session, member, model)
        region = generation.preferred_region(gateway.catalog, body)
        plan = generation.plan_openai(model, body, region=region)
        plan.notices[:0] = chosen
        job = await generation.submit(session, member, plan, body, action="generate")
    headers = generation.deprecation_headers(plan)
    event = gateway.dispatcher.watch(job.id)
    try:
        gateway.dispatcher.submit(job.id)
        if respond_async and wait is None:
            return JSONResponse(job_object(job), status_code=202, headers=headers)
        timeout = wait if wait is not None else gateway.settings.sync_timeout_seconds
        job = await generation.wait_for_job(
            gateway.db, event, member.workspace_id, job.id, timeout
        )
    finally:
        gateway.dispatcher.unwatch(job.id)
    if job.status not in jobs.TERMINAL:
        if respond_async or wait is not None:
            return JSONResponse(job_object(job), status_code=202, headers=headers)
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
    async with gateway.db.session() as session:
        files = await jobs.job_outputs(session, job.id)
    data = await images_data(gateway, request, job, files, response_format)
    first = files[0] if files else None
    payload: dict[str, Any] = {
        "created": int(job.created_at.timestamp()),
        "data": data,
        "id": job.id,
        "job_id": job.id,
        "model": job.model,
        "width": first.width if first else plan.width,
        "height": first.height if first else plan.height,
        "output_format": plan.output_format,
        "estimated_cost": job.estimated_cost / 1000,
        "charged_amount": (job.charged_amount or 0) / 1000,
    }
    return JSONResponse(payload, headers=headers)
