"""``/v1/jobs``: the async jobs API (submit, poll, history, cancel, webhook log)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy import select
from starlette.convertors import StringConvertor, register_url_convertor

from imagegate.api import schemas
from imagegate.api.common import (
    abandon_sync_mode,
    create_job_from_request,
    inline_data,
    is_sync_mode,
    job_object,
    json_object,
    output_object,
    prefer_wait,
    start_job,
    sync_mode_replayed,
)
from imagegate.api.deps import CurrentMember, GatewayDep, Session
from imagegate.api.openapi import (
    AUTHENTICATED,
    GENERATION_ERRORS,
    JOB_BODY,
    creating_work,
    errors,
    json_body,
)
from imagegate.api.responses import JSONResponse
from imagegate.api.schemas import ok
from imagegate.errors import Conflict, GenerationFailed, InvalidParameter, NotFound
from imagegate.services import generation, jobs, webhooks
from imagegate.store.tables import Job


class _ModelSlug(StringConvertor):
    """A model in ``/v1/jobs/{model}``: never a job id, so that ``POST /v1/jobs/{job_id}``
    is a 405 (only GET reads a job), not a submit to a model of that name."""

    regex = "(?!job_)[^/]+"


class _JobId(StringConvertor):
    """A job in ``/v1/jobs/{job_id}``: job ids start with ``job_``, model slugs never do."""

    regex = "job_[^/]*"


register_url_convertor("model_slug", _ModelSlug())
register_url_convertor("job_id", _JobId())

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=errors(*AUTHENTICATED))

STATUSES = ("queued", "running", "succeeded", "failed", "canceled", "expired")


def _not_found(job_id: str) -> NotFound:
    return NotFound(f"No job {job_id!r} in this workspace.", code="job_not_found", param="job_id")


@router.post(
    "/{model:model_slug}",
    response_model=None,
    responses={
        **ok(schemas.Job, 200, "The job, finished (with Prefer: wait) or replayed."),
        **ok(schemas.Job, 202, "The job, queued or running."),
        **errors(*GENERATION_ERRORS),
    },
    openapi_extra=creating_work(json_body(JOB_BODY)),
)
async def submit_job(
    model: str, request: Request, member: CurrentMember, gateway: GatewayDep
) -> JSONResponse:
    """Start a job with the model's native parameters plus the wrapper parameters.

    A ``sync_mode`` job keeps no outputs: its images come back inline in this answer, so
    it needs ``Prefer: wait``; one that does not finish within the wait is canceled."""
    body = await json_object(request)
    wait = prefer_wait(request, gateway)
    if body.get("sync_mode") is True and wait is None:
        raise InvalidParameter(
            "sync_mode images are never stored: they come back only in the answer to a "
            "request that waits for them. Send 'Prefer: wait=N', or drop sync_mode.",
            param="sync_mode",
        )
    submission = await create_job_from_request(
        request,
        gateway,
        member,
        body,
        choice={"model": model},
        planner=generation.plan_native,
        action="generate",
    )
    job = submission.job
    if wait is None:
        if submission.replayed:
            body_out = await _job_with_outputs(gateway, request, job)
        else:  # rendered before the job starts: a new job has no outputs yet
            body_out = job_object(job) | {"outputs": []}
        start_job(gateway, submission)
        return JSONResponse(body_out, status_code=200 if job.status in jobs.TERMINAL else 202)
    sync_mode = is_sync_mode(job)
    if sync_mode and submission.replayed:
        raise sync_mode_replayed(job)
    event = gateway.dispatcher.watch(job.id)
    job_id = job.id
    # A sync_mode job's images reach the request only from the attempt in this process.
    delivery = gateway.runner.expect_delivery(job_id) if sync_mode else None
    start_job(gateway, submission)
    try:
        job = await generation.wait_for_job(
            gateway.db,
            event,
            member.workspace_id,
            job_id,
            wait,
            finished=lambda: delivery.result().job if delivery and delivery.done() else None,
            runs_here=lambda: gateway.runner.runs(job_id),
            recheck_seconds=gateway.recheck_seconds(),
        )
    finally:
        gateway.dispatcher.unwatch(job_id)
        gateway.runner.forget_delivery(job_id)
    if not sync_mode:
        body_out = await _job_with_outputs(gateway, request, job)
        return JSONResponse(body_out, status_code=200 if job.status in jobs.TERMINAL else 202)
    if job.status not in jobs.TERMINAL:
        raise await abandon_sync_mode(gateway, job, wait)
    body_out = job_object(job) | {"outputs": []}
    if job.status == jobs.SUCCEEDED:
        if delivery is None or not delivery.done():
            raise GenerationFailed(
                "The sync_mode result was produced by another process and is lost; retry.",
                code="inline_result_lost",
                extra={"job_id": job.id},
            )
        revised = (job.result or {}).get("revised_prompts") or []
        body_out["outputs"] = inline_data(delivery.result().images, revised, "url")
    return JSONResponse(body_out, status_code=200)


async def _job_with_outputs(gateway: Any, request: Request, job: Job) -> dict[str, Any]:
    body = job_object(job)
    async with gateway.db.read_session() as session:
        files = await jobs.job_outputs(session, job.id)
    body["outputs"] = [output_object(gateway, request, file) for file in files]
    return body


@router.get("", response_model=None, responses=ok(schemas.JobList))
async def list_jobs(
    member: CurrentMember,
    gateway: GatewayDep,
    session: Session,
    status: str | None = Query(
        default=None,
        description="Only jobs in this state.",
        json_schema_extra={"enum": list(STATUSES)},
    ),
    model: str | None = Query(default=None, description="Only jobs of this model (slug)."),
    after: str | None = Query(
        default=None, description="Cursor: the last job id of the previous page."
    ),
    limit: int = Query(default=20, ge=1, le=100, description="Jobs per page."),
) -> dict[str, Any]:
    """The caller's jobs (an admin: the workspace's), newest first."""
    if status is not None and status not in STATUSES:
        raise InvalidParameter(
            f"Invalid value for 'status': {status!r}. Allowed: {', '.join(STATUSES)}.",
            param="status",
        )
    query = select(Job).where(Job.workspace_id == member.workspace_id)
    if member.only_member is not None:
        query = query.where(Job.member_id == member.only_member)
    if status is not None:
        query = query.where(Job.status == status)
    if model is not None:
        spec = gateway.catalog.resolve(model)
        query = query.where(Job.model == (spec.slug if spec else model))
    if after is not None:
        query = query.where(Job.id < after)
    rows = list((await session.execute(query.order_by(Job.id.desc()).limit(limit + 1))).scalars())
    page = rows[:limit]
    return {
        "object": "list",
        "data": [job_object(job) for job in page],
        "has_more": len(rows) > limit,
        "next_cursor": page[-1].id if len(rows) > limit else None,
    }


@router.get(
    "/{job_id:job_id}",
    response_model=None,
    # 405: a path that names no job names a model, which only POST takes.
    responses={**ok(schemas.Job), **errors(404, 405)},
)
async def get_job(
    job_id: Annotated[str, Path(pattern="^job_")],
    request: Request,
    member: CurrentMember,
    gateway: GatewayDep,
) -> dict[str, Any]:
    """A job's state, cost and outputs with fresh signed URLs."""
    async with gateway.db.read_session() as session:
        job = await jobs.get_job(session, member.workspace_id, job_id, member_id=member.only_member)
    if job is None:
        raise _not_found(job_id)
    return await _job_with_outputs(gateway, request, job)


@router.post(
    "/{job_id}/cancel",
    response_model=None,
    responses={**ok(schemas.Job), **errors(404, 409)},
)
async def cancel_job(
    job_id: str, request: Request, member: CurrentMember, gateway: GatewayDep
) -> dict[str, Any]:
    """Cancel a queued job at once, or a running one as far as its provider allows."""
    async with gateway.db.session() as session:
        job, canceled = await jobs.cancel(
            session, member.workspace_id, job_id, member_id=member.only_member
        )
    if job is None:
        raise _not_found(job_id)
    if not canceled:
        raise Conflict(
            f"Job {job_id!r} is already {job.status} and cannot be canceled.",
            code="job_not_cancelable",
            param="job_id",
        )
    gateway.dispatcher.cancel_local(job.id)
    return await _job_with_outputs(gateway, request, job)


@router.get(
    "/{job_id}/webhooks",
    response_model=None,
    responses={**ok(schemas.WebhookDeliveryList), **errors(404)},
)
async def job_webhooks(job_id: str, member: CurrentMember, session: Session) -> dict[str, Any]:
    """The delivery log of the job's webhook events."""
    job = await jobs.get_job(session, member.workspace_id, job_id, member_id=member.only_member)
    if job is None:
        raise _not_found(job_id)
    deliveries = await webhooks.deliveries_for_job(session, job_id)
    return {"object": "list", "data": [webhooks.delivery_object(d) for d in deliveries]}
