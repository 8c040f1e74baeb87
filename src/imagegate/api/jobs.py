"""``/v1/jobs``: the async jobs API (submit, poll, history, cancel, webhook log)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import select

from imagegate.api.common import (
    create_job_from_request,
    job_object,
    json_object,
    output_object,
    prefer_wait,
    start_job,
)
from imagegate.api.deps import CurrentMember, GatewayDep, Session
from imagegate.api.responses import JSONResponse
from imagegate.errors import Conflict, InvalidParameter, NotFound
from imagegate.services import generation, jobs, webhooks
from imagegate.store.tables import Job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

STATUSES = ("queued", "running", "succeeded", "failed", "canceled", "expired")


def _not_found(job_id: str) -> NotFound:
    return NotFound(f"No job {job_id!r} in this workspace.", code="job_not_found", param="job_id")


@router.post("/{model}", response_model=None)
async def submit_job(
    model: str, request: Request, member: CurrentMember, gateway: GatewayDep
) -> JSONResponse:
    """Start a job with the model's native parameters plus the wrapper parameters."""
    body = await json_object(request)
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
    wait = prefer_wait(request, gateway)
    if wait is None:
        if submission.replayed:
            body_out = await _job_with_outputs(gateway, request, job)
        else:  # rendered before the job starts: a new job has no outputs yet
            body_out = job_object(job) | {"outputs": []}
        start_job(gateway, submission)
        return JSONResponse(body_out, status_code=200 if job.status in jobs.TERMINAL else 202)
    event = gateway.dispatcher.watch(job.id)
    start_job(gateway, submission)
    try:
        job_id = job.id
        job = await generation.wait_for_job(
            gateway.db,
            event,
            member.workspace_id,
            job_id,
            wait,
            runs_here=lambda: gateway.runner.runs(job_id),
            recheck_seconds=gateway.recheck_seconds(),
        )
    finally:
        gateway.dispatcher.unwatch(job.id)
    body_out = await _job_with_outputs(gateway, request, job)
    status = 200 if job.status in jobs.TERMINAL else 202
    return JSONResponse(body_out, status_code=status)


async def _job_with_outputs(gateway: Any, request: Request, job: Job) -> dict[str, Any]:
    body = job_object(job)
    async with gateway.db.read_session() as session:
        files = await jobs.job_outputs(session, job.id)
    body["outputs"] = [output_object(gateway, request, file) for file in files]
    return body


@router.get("")
async def list_jobs(
    member: CurrentMember,
    gateway: GatewayDep,
    session: Session,
    status: str | None = Query(default=None, description="Only jobs in this state."),
    model: str | None = Query(default=None, description="Only jobs of this model (slug)."),
    after: str | None = Query(
        default=None, description="Cursor: the last job id of the previous page."
    ),
    limit: int = Query(default=20, ge=1, le=100, description="Jobs per page."),
) -> dict[str, Any]:
    """The workspace's jobs, newest first."""
    if status is not None and status not in STATUSES:
        raise InvalidParameter(
            f"Invalid value for 'status': {status!r}. Allowed: {', '.join(STATUSES)}.",
            param="status",
        )
    query = select(Job).where(Job.workspace_id == member.workspace_id)
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


@router.get("/{job_id}")
async def get_job(
    job_id: str, request: Request, member: CurrentMember, gateway: GatewayDep
) -> dict[str, Any]:
    """A job's state, cost and outputs with fresh signed URLs."""
    async with gateway.db.read_session() as session:
        job = await jobs.get_job(session, member.workspace_id, job_id)
    if job is None:
        raise _not_found(job_id)
    return await _job_with_outputs(gateway, request, job)


@router.post("/{job_id}/cancel")
async def cancel_job(
    job_id: str, request: Request, member: CurrentMember, gateway: GatewayDep
) -> dict[str, Any]:
    """Cancel a queued job at once, or a running one as far as its provider allows."""
    async with gateway.db.session() as session:
        job, canceled = await jobs.cancel(session, member.workspace_id, job_id)
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


@router.get("/{job_id}/webhooks")
async def job_webhooks(job_id: str, member: CurrentMember, session: Session) -> dict[str, Any]:
    """The delivery log of the job's webhook events."""
    if await jobs.get_job(session, member.workspace_id, job_id) is None:
        raise _not_found(job_id)
    deliveries = await webhooks.deliveries_for_job(session, job_id)
    return {"object": "list", "data": [webhooks.delivery_object(d) for d in deliveries]}
