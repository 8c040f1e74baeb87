"""``/v1/jobs``: poll a job."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from imagegate.api.common import job_object, output_object
from imagegate.api.deps import CurrentMember, GatewayDep, Session
from imagegate.errors import NotFound
from imagegate.services import jobs

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("/{job_id}")
async def get_job(
    job_id: str, request: Request, member: CurrentMember, gateway: GatewayDep, session: Session
) -> dict[str, Any]:
    job = await jobs.get_job(session, member.workspace_id, job_id)
    if job is None:
        raise NotFound(
            f"No job {job_id!r} in this workspace.", code="job_not_found", param="job_id"
        )
    body = job_object(job)
    files = await jobs.job_outputs(session, job.id)
    body["outputs"] = [output_object(gateway, request, file) for file in files]
    return body
