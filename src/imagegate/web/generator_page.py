"""The image generator, for every member: the page, and the member's own history.

The page's script submits through the HTTP API (dry run, generation, jobs, files) with
the console session, so a generation from here follows every rule a generation by API
key does; this module only reads what the page shows first.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select

from imagegate.api.common import signed_url
from imagegate.api.models import allowed_params
from imagegate.catalog import ModelSpec
from imagegate.gateway import Gateway
from imagegate.money import as_credits
from imagegate.services import billing, workspace
from imagegate.store.tables import File, Job, Member
from imagegate.web.render import page
from imagegate.web.session import User

router = APIRouter(include_in_schema=False)

HISTORY_PAGE = 12


def _enum(model: ModelSpec, name: str) -> list[Any]:
    spec = model.params.get(name)
    return list(spec.enum or []) if spec is not None and spec.enum else []


def generator_model(model: ModelSpec) -> dict[str, Any]:
    """What the form needs to know of a model: its sizes, options and abilities."""
    params = model.params
    quality = _enum(model, "quality")
    return {
        "id": model.slug,
        "name": model.name,
        "allowedParams": allowed_params(model),
        # A model whose native size is an aspect ratio is asked for one; others for a size.
        "size_kind": "aspect_ratio" if model.sizes.style == "aspect_ratio" else "size",
        "quality": quality,
        "quality_default": params["quality"].default if quality else None,
        "reference_images": model.reference_images,
        "actions": list(model.actions),
        "premium": model.premium,
        "deprecated": model.status in ("deprecated", "legacy"),
        "takes_prompt": model.prompt_field is not None,
        "image_param": next((n for n in ("image_url", "image") if n in params), None),
    }


@router.get("/generate")
async def generator(request: Request, user: User) -> Response:
    gateway: Gateway = request.app.state.gateway
    principal = user.principal
    async with gateway.db.read_session() as session:
        state = await workspace.governance(session, principal.workspace_id)
        member = await session.get(Member, principal.member_id)
        balance = await billing.balance(session, principal.workspace_id, limit=0)
    assert member is not None
    if not state.image_generation_enabled:
        return page(
            request,
            "generator_off.html",
            user,
            status_code=403,
        )
    usable = workspace.usable_models(gateway.catalog, state)
    models = [
        generator_model(model)
        for model in gateway.catalog
        if model.slug in usable and model.prompt_field is not None
    ]
    selected = member.selected_model
    choice = selected if selected in usable else state.default_model
    notice = None
    if selected is not None and selected not in usable:
        old = gateway.catalog.resolve(selected)
        new = gateway.catalog.resolve(state.default_model or "")
        notice = (
            f"Your selected model {old.name if old else selected} is no longer enabled; "
            f"switched to the workspace default {new.name if new else state.default_model}."
        )
    choices = gateway.catalog.choices.actions
    upscaler = choices.get("upscale")
    data = {
        "models": models,
        "model": choice,
        "default_model": state.default_model,
        "upscale_model": upscaler if upscaler in usable else None,
        "billing_mode": state.billing_mode,
        # The page records the switch (as a generation without a model would), once shown.
        "switched": notice is not None,
    }
    return page(
        request,
        "generator.html",
        user,
        data=data,
        models=models,
        choice=choice,
        model_notice=notice,
        available=as_credits(balance.available),
    )


def _history_entry(
    gateway: Gateway, request: Request, job: Job, outputs: list[File]
) -> dict[str, Any]:
    model = gateway.catalog.resolve(job.model)
    return {
        "job": job,
        "model": model.name if model else job.model,
        "prompt": (job.request.get("body") or {}).get("prompt") if job.request else None,
        "outputs": [
            {"id": file.id, "url": signed_url(gateway, request, file)[0], "file": file}
            for file in outputs
        ],
        "charged": as_credits(job.charged_amount or 0),
    }


@router.get("/generate/history")
async def history(request: Request, user: User) -> Response:
    """The member's own generations, newest first, a page at a time (for htmx)."""
    gateway: Gateway = request.app.state.gateway
    after = request.query_params.get("after")
    query = select(Job).where(
        Job.workspace_id == user.principal.workspace_id,
        Job.member_id == user.principal.member_id,
    )
    if after:
        query = query.where(Job.id < after)
    async with gateway.db.read_session() as session:
        jobs = list(
            (await session.execute(query.order_by(Job.id.desc()).limit(HISTORY_PAGE + 1))).scalars()
        )
        shown = jobs[:HISTORY_PAGE]
        files = (
            await session.execute(
                select(File)
                .where(File.job_id.in_([job.id for job in shown]), File.purpose == "output")
                .order_by(File.job_id, File.output_index)
            )
        ).scalars()
        by_job: dict[str, list[File]] = {}
        for file in files:
            by_job.setdefault(file.job_id or "", []).append(file)
    entries = [_history_entry(gateway, request, job, by_job.get(job.id, [])) for job in shown]
    more = shown[-1].id if len(jobs) > HISTORY_PAGE else None
    return page(request, "history.html", user, entries=entries, more=more, first=not after)
