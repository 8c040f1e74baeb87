"""Helpers for routers: reading JSON bodies, rendering jobs and their outputs."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson
import pybase64
from fastapi import Request

from imagegate.api.responses import Base64Text
from imagegate.errors import InvalidParameter, InvalidRequest, UpstreamError
from imagegate.gateway import Gateway
from imagegate.money import as_credits
from imagegate.observe import context
from imagegate.providers.base import GeneratedImage
from imagegate.services import generation, idempotency, jobs, webhooks
from imagegate.services.keys import Principal
from imagegate.store.tables import File, Job, utcnow

# No request of ours nests deeper than a few levels; a bound here keeps every recursive
# walk of a body (the idempotency fingerprint, the NUL check, the JSON columns) safe.
MAX_JSON_DEPTH = 32


async def json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    if too_deep(body, MAX_JSON_DEPTH):
        raise InvalidRequest(
            f"The request body nests deeper than {MAX_JSON_DEPTH} levels.", code="invalid_json"
        )
    if b"\\u0000" in raw:
        param = _nul_path(body)
        raise InvalidParameter(
            f"Invalid value for {param!r}: NUL characters are not allowed.", param=param
        )
    return body


def too_deep(value: Any, limit: int) -> bool:
    """Whether objects and arrays in a decoded JSON value nest deeper than ``limit``
    (walked without recursion, so any depth is safe to ask about)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _nul_path(value: Any, path: str = "") -> str | None:
    """Where in a decoded JSON value the first NUL character is (``images[0].file_id``)."""
    if isinstance(value, str):
        return (path or None) if "\x00" in value else None
    if isinstance(value, dict):
        children = [(f"{path}.{k}" if path else str(k), v) for k, v in value.items()]
    elif isinstance(value, list):
        children = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
    else:
        return None
    for child_path, child in children:
        if "\x00" in child_path:
            return child_path
        found = _nul_path(child, child_path)
        if found:
            return found
    return None


_PREFER_WAIT = re.compile(r"\bwait=([0-9]+)")


def prefer_wait(request: Request, gateway: Gateway) -> float | None:
    """Seconds asked for with ``Prefer: wait=N``, at most the synchronous timeout
    (RFC 7240 lets a server wait less); None when not asked."""
    found = _PREFER_WAIT.search(request.headers.get("prefer", ""))
    if found is None:
        return None
    return min(float(found.group(1)), gateway.settings.sync_timeout_seconds)


def base_url(gateway: Gateway, request: Request) -> str:
    return gateway.settings.public_url or str(request.base_url).rstrip("/")


def signed_url(gateway: Gateway, request: Request, file: File) -> tuple[str, int]:
    ttl = gateway.settings.url_ttl_seconds
    if file.expires_at is not None:  # a link never outlives its file
        ttl = max(1, min(ttl, int((file.expires_at - utcnow()).total_seconds())))
    link = gateway.signer.sign(file.id, file.workspace_id, ttl)
    return f"{base_url(gateway, request)}/v1/files/{file.id}/content?{link.query()}", link.expires


def timestamp(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


def file_object(gateway: Gateway, request: Request, file: File) -> dict[str, Any]:
    url, expires = signed_url(gateway, request, file)
    return {
        "id": file.id,
        "object": "file",
        "purpose": file.purpose,
        "status": "processed",  # OpenAI's file objects carry one; ours are usable at once
        "filename": file.filename,
        "bytes": file.bytes,
        "content_type": file.content_type,
        "width": file.width,
        "height": file.height,
        "sha256": file.sha256,
        "job_id": file.job_id,
        "created_at": timestamp(file.created_at),
        "expires_at": timestamp(file.expires_at),
        "url": url,
        "url_expires_at": expires,
    }


def _base64(image: GeneratedImage) -> bytes | memoryview:
    """The image in base64: as the upstream sent it, or encoded now."""
    return image.b64 if image.b64 is not None else pybase64.b64encode(image.data)


def encoded(image: GeneratedImage) -> Base64Text:
    """The image in base64 for an answer (written into it as it is)."""
    return Base64Text(_base64(image))


def inline_data(
    images: list[GeneratedImage], revised: list[str | None], response_format: str
) -> list[dict[str, Any]]:
    """sync_mode results: each image inline (b64_json, or a data URI as ``url``), never stored."""
    data = []
    for index, image in enumerate(images):
        item: dict[str, Any]
        if response_format == "b64_json":
            item = {"b64_json": encoded(image)}
        else:
            text = bytes(_base64(image)).decode("ascii")
            item = {"url": f"data:{image.content_type};base64,{text}"}
        if index < len(revised) and revised[index]:
            item["revised_prompt"] = revised[index]
        item.update(width=image.width, height=image.height, content_type=image.content_type)
        data.append(item)
    return data


SYNC_MODE_NOT_KEPT = (
    "sync_mode images are returned once, in the answer to the request that made them, "
    "and are not kept."
)


def is_sync_mode(job: Job) -> bool:
    return bool(job.request["plan"].get("sync_mode"))


def sync_mode_replayed(job: Job) -> InvalidRequest:
    """The answer to a replay of a sync_mode request: its images were never kept."""
    return InvalidRequest(
        f"{SYNC_MODE_NOT_KEPT} This Idempotency-Key already made job {job.id}; "
        "send a new key to generate again.",
        code="sync_mode_not_kept",
        param="sync_mode",
        status_code=410,
        extra={"job_id": job.id},
    )


async def abandon_sync_mode(gateway: Gateway, job: Job, timeout: float) -> UpstreamError:
    """Cancel a sync_mode job whose request stops waiting (its images could reach no one,
    and a canceled job is not charged); the error to answer with."""
    async with gateway.db.session() as session:
        await jobs.cancel(session, job.workspace_id, job.id)
    gateway.dispatcher.cancel_local(job.id)
    return UpstreamError(
        f"The sync_mode job did not finish within {timeout:g}s and was canceled, since its "
        "images could be delivered to no one; nothing is charged for it.",
        code="generation_timeout",
        status_code=504,
        extra={"job_id": job.id},
    )


def output_object(gateway: Gateway, request: Request, file: File) -> dict[str, Any]:
    url, expires = signed_url(gateway, request, file)
    return {
        "file_id": file.id,
        "url": url,
        "url_expires_at": expires,
        "width": file.width,
        "height": file.height,
        "content_type": file.content_type,
        "bytes": file.bytes,
        "expires_at": timestamp(file.expires_at),
    }


async def images_data(
    gateway: Gateway,
    request: Request,
    job: Job,
    files: list[File],
    response_format: str,
    images: list[GeneratedImage] | None = None,
) -> list[dict[str, Any]]:
    """The ``data`` of an Images API answer; ``images``: the outputs' bytes when at hand
    (the job ran in this process), else ``b64_json`` reads them back from the store."""
    revised = (job.result or {}).get("revised_prompts") or []
    data = []
    for index, file in enumerate(files):
        item: dict[str, Any] = {}
        if response_format == "b64_json":
            if images is not None:
                item["b64_json"] = encoded(images[index])
            else:
                data_bytes = await gateway.blobs.read(file.blob_key)
                item["b64_json"] = Base64Text(pybase64.b64encode(data_bytes))
        else:
            item["url"], _ = signed_url(gateway, request, file)
        output = file.output_index or 0
        if output < len(revised) and revised[output]:
            item["revised_prompt"] = revised[output]
        item.update(
            file_id=file.id, width=file.width, height=file.height, content_type=file.content_type
        )
        data.append(item)
    return data


def job_object(job: Job) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": job.id,
        "job_id": job.id,
        "object": "job",
        "model": job.model,
        "status": job.status,
        "created_at": int(job.created_at.timestamp()),
        "started_at": int(job.started_at.timestamp()) if job.started_at else None,
        "finished_at": int(job.finished_at.timestamp()) if job.finished_at else None,
        "attempt": job.attempt,
        "estimated_cost": as_credits(job.estimated_cost),
        "charged_amount": None if job.charged_amount is None else as_credits(job.charged_amount),
    }
    if is_sync_mode(job):
        body["sync_mode"] = True
        body["notice"] = SYNC_MODE_NOT_KEPT
    if job.status in ("failed", "canceled", "expired"):
        body["error"] = {
            "code": job.error_code,
            "message": job.error_message,
            "provider_reason": job.provider_reason,
        }
    return body


async def create_job_from_request(
    request: Request,
    gateway: Gateway,
    member: Principal,
    body: dict[str, Any],
    *,
    choice: dict[str, Any],
    planner: generation.Planner,
    action: str,
    source_names: dict[str, str] | None = None,
) -> generation.Submission:
    """The shared path of every POST that creates work: idempotency, webhook, plan, hold.

    Source images in the body (uploads, data URIs, URLs) are resolved by the generation
    service through ``gateway.sources``; ``source_names`` says how to name their fields
    in errors (the edits route's ``image``).

    When this process has a free worker slot the job is inserted already claimed by it;
    :func:`start_job` then runs it without a round through the queue.
    """
    key = idempotency.request_key(request.headers.get("idempotency-key"), body)
    webhook_url = body.pop("webhook_url", None)
    if webhook_url is not None:
        webhook_url = await webhooks.validate_url(
            webhook_url,
            allow_loopback=gateway.settings.webhooks_allow_loopback,
            allowed_hosts=gateway.settings.fetch_allowed_hosts,
        )
    reserved = gateway.dispatcher.reserve()
    lease = generation.Lease(
        gateway.runner.owner, gateway.runner.lease_seconds, gateway.dispatcher.elsewhere
    )
    submission: generation.Submission | None = None
    try:
        submission = await generation.create_job(
            gateway.db,
            gateway.catalog,
            member,
            choice=choice,
            body=body,
            planner=planner,
            endpoint=request.url.path,
            action=action,
            idempotency_key=key,
            webhook_url=webhook_url,
            max_attempts=gateway.settings.max_attempts,
            lease=lease if reserved else None,
            memo=gateway.governance,
            source_images=gateway.sources,
            source_names=source_names,
            upscale_max_pixels=gateway.settings.upscale_max_output_pixels,
            configured=gateway.providers.configured(),
        )
        return submission
    finally:
        if reserved and (submission is None or submission.claim is None):
            gateway.dispatcher.release()


def start_job(gateway: Gateway, submission: generation.Submission) -> None:
    """Set a just-created job going: in its reserved slot, or through the queue."""
    job = submission.job
    context.job_id.set(job.id)  # the request's later log lines are about the job
    if not submission.replayed:
        gateway.metrics.job("queued", job.model, job.provider)
        if job.charge_policy == "charge":
            gateway.metrics.credits.labels("held").inc(job.estimated_cost)
    if submission.claim is not None:
        gateway.dispatcher.start_claimed(submission.claim)
    elif not submission.replayed and job.provider not in gateway.dispatcher.elsewhere:
        gateway.queue_job(job.id)
