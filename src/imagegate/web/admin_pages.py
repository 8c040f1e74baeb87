"""The other admin pages: workspace settings, members and invites, API keys, credits,
usage and the audit log. Each change goes through the same service as the admin API."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from imagegate.api.credits import parse_credits
from imagegate.errors import ImagegateError, InvalidParameter
from imagegate.gateway import Gateway
from imagegate.money import as_credits
from imagegate.services import accounts, billing, members, usage, workspace
from imagegate.services.accounts import SignedIn
from imagegate.web import flash
from imagegate.web.render import page
from imagegate.web.session import Admin, AdminForm, text

router = APIRouter(include_in_schema=False)

BILLING_MODES = {
    "prepaid": "Prepaid: every generation is charged against credits",
    "flat": "Flat plan: standard models included, premium models charged against credits",
    "invoiced": "Invoiced: usage is recorded for the invoice, nothing is blocked",
}
REGION_POLICIES = {"any": "Any region", "eu_only": "EU hosting only"}


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def _page(request: Request, template: str, user: SignedIn, **context: Any) -> Response:
    response = page(request, template, user, notice=flash.notice(request), **context)
    flash.take(request, response)
    return response


def invite_url(request: Request, gateway: Gateway, token: str) -> str:
    base = gateway.settings.public_url or str(request.base_url).rstrip("/")
    return f"{base}/invite/{token}"


# ---- workspace settings ---------------------------------------------------------------


async def _settings_page(
    request: Request,
    user: SignedIn,
    *,
    error: str | None = None,
    needs_replacement: bool = False,
    status_code: int = 200,
) -> Response:
    gateway = _gateway(request)
    async with gateway.db.read_session() as session:
        state = await workspace.governance(session, user.principal.workspace_id)
    eu_models = [
        (m.slug, m.name) for m in gateway.catalog if m.slug in state.enabled and m.region == "eu"
    ]
    return _page(
        request,
        "workspace.html",
        user,
        state=state,
        billing_modes=BILLING_MODES,
        region_policies=REGION_POLICIES,
        error=error,
        needs_replacement=needs_replacement,
        eu_models=eu_models,
        status_code=status_code,
    )


@router.get("/settings/workspace")
async def settings_page(request: Request, user: Admin) -> Response:
    return await _settings_page(request, user)


@router.post("/settings/workspace")
async def update_settings(request: Request, user: Admin, form: AdminForm) -> Response:
    gateway = _gateway(request)
    margin = text(form, "margin_percent")
    changes: dict[str, Any] = {
        "image_generation_enabled": text(form, "image_generation_enabled") == "on",
        "billing_mode": text(form, "billing_mode"),
        "region_policy": text(form, "region_policy"),
    }
    try:
        if changes["billing_mode"] not in BILLING_MODES:
            raise InvalidParameter("Choose a billing mode from the list.")
        if changes["region_policy"] not in REGION_POLICIES:
            raise InvalidParameter("Choose a region policy from the list.")
        if not margin.isdigit() or not 0 <= int(margin) <= 1000:
            raise InvalidParameter("The margin is a whole percentage from 0 to 1000.")
        changes["margin_percent"] = int(margin)
        async with gateway.db.session() as session:
            change = await workspace.update_settings(
                session,
                gateway.catalog,
                user.principal,
                changes,
                text(form, "replacement") or None,
            )
    except ImagegateError as exc:
        return await _settings_page(
            request,
            user,
            error=exc.message,
            needs_replacement=exc.code == "default_model_requires_replacement",
            status_code=exc.status_code,
        )
    notice = "Workspace settings saved." if change.changed else "Nothing changed."
    disabled = sorted(
        set(change.before.get("enabled_models", [])) - set(change.after.get("enabled_models", []))
    )
    if disabled:
        notice += f" Turned off (not hosted in the EU): {', '.join(disabled)}."
    return flash.redirect(request, "/settings/workspace", notice)


# ---- members and invites --------------------------------------------------------------


async def _members_page(
    request: Request,
    user: SignedIn,
    *,
    error: str | None = None,
    link: tuple[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    gateway = _gateway(request)
    async with gateway.db.read_session() as session:
        rows = await members.list_members(session, user.principal.workspace_id)
        logins = await accounts.logins(session, user.principal.workspace_id)
        invites = await accounts.pending_invites(session, user.principal.workspace_id)
    return _page(
        request,
        "members.html",
        user,
        rows=rows,
        logins=logins,
        invites=invites,
        link=link,
        error=error,
        status_code=status_code,
    )


@router.get("/settings/members")
async def members_page(request: Request, user: Admin) -> Response:
    return await _members_page(request, user)


@router.post("/settings/members")
async def invite_member(request: Request, user: Admin, form: AdminForm) -> Response:
    """A new member and a one-time link for them to set their password (shown once)."""
    gateway = _gateway(request)
    name, role = text(form, "name").strip(), text(form, "role")
    if not name or len(name) > 200 or role not in members.ROLES:
        return await _members_page(
            request, user, error="Give a name (up to 200 characters) and a role.", status_code=400
        )
    async with gateway.db.session() as session:
        member = await members.add_member(session, user.principal, name, role)
        _, token = await accounts.create_invite(
            session, user.principal, user.principal.workspace_id, member.id
        )
    return await _members_page(
        request, user, link=(member.name, invite_url(request, gateway, token)), status_code=201
    )


@router.post("/settings/members/{member_id}/invite")
async def new_invite(request: Request, member_id: str, user: Admin, form: AdminForm) -> Response:
    """A new link for an existing member: to set a first password, or a forgotten one."""
    gateway = _gateway(request)
    try:
        async with gateway.db.session() as session:
            member = await members.get_member(session, user.principal.workspace_id, member_id)
            _, token = await accounts.create_invite(
                session, user.principal, user.principal.workspace_id, member.id
            )
    except ImagegateError as exc:
        return await _members_page(request, user, error=exc.message, status_code=exc.status_code)
    return await _members_page(
        request, user, link=(member.name, invite_url(request, gateway, token)), status_code=201
    )


@router.post("/settings/members/{member_id}/role")
async def set_role(request: Request, member_id: str, user: Admin, form: AdminForm) -> Response:
    gateway = _gateway(request)
    try:
        async with gateway.db.session() as session:
            change = await members.set_member_role(
                session, user.principal, member_id, text(form, "role")
            )
    except ImagegateError as exc:
        return await _members_page(request, user, error=exc.message, status_code=exc.status_code)
    gateway.principals.clear()  # the member's keys now carry the new role
    after = change.after
    notice = f"{after['name']} is now {'an admin' if after['role'] == 'admin' else 'a member'}."
    return flash.redirect(request, "/settings/members", notice if change.changed else None)


@router.post("/settings/members/{member_id}/revoke-sign-in")
async def revoke_sign_in(
    request: Request, member_id: str, user: Admin, form: AdminForm
) -> Response:
    """Sign a member out everywhere and remove their password (a departing colleague)."""
    gateway = _gateway(request)
    try:
        async with gateway.db.session() as session:
            member = await members.get_member(session, user.principal.workspace_id, member_id)
            await accounts.revoke_sign_in(session, user.principal, member_id)
    except ImagegateError as exc:
        return await _members_page(request, user, error=exc.message, status_code=exc.status_code)
    return flash.redirect(
        request,
        "/settings/members",
        f"{member.name} can no longer sign in to the console (their API keys are unchanged).",
    )


@router.post("/settings/invites/{invite_id}/revoke")
async def revoke_invite(request: Request, invite_id: str, user: Admin, form: AdminForm) -> Response:
    gateway = _gateway(request)
    try:
        async with gateway.db.session() as session:
            await accounts.revoke_invite(session, user.principal, invite_id)
    except ImagegateError as exc:
        return await _members_page(request, user, error=exc.message, status_code=exc.status_code)
    return flash.redirect(request, "/settings/members", "The invite link is revoked.")


# ---- API keys -------------------------------------------------------------------------


async def _keys_page(
    request: Request,
    user: SignedIn,
    *,
    error: str | None = None,
    secret: tuple[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    gateway = _gateway(request)
    async with gateway.db.read_session() as session:
        keys = await members.list_keys(session, user.principal.workspace_id)
        rows = await members.list_members(session, user.principal.workspace_id)
    return _page(
        request,
        "keys.html",
        user,
        keys=list(reversed(keys)),
        members=[member for member, _ in rows],
        secret=secret,
        error=error,
        status_code=status_code,
    )


@router.get("/settings/keys")
async def keys_page(request: Request, user: Admin) -> Response:
    return await _keys_page(request, user)


@router.post("/settings/keys")
async def create_key(request: Request, user: Admin, form: AdminForm) -> Response:
    gateway = _gateway(request)
    name = text(form, "name").strip() or "api key"
    try:
        async with gateway.db.session() as session:
            key, secret = await members.add_key(
                session, user.principal, text(form, "member_id"), name[:200]
            )
    except ImagegateError as exc:
        return await _keys_page(request, user, error=exc.message, status_code=exc.status_code)
    return await _keys_page(request, user, secret=(key.name, secret), status_code=201)


@router.post("/settings/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str, user: Admin, form: AdminForm) -> Response:
    gateway = _gateway(request)
    try:
        async with gateway.db.session() as session:
            key, _ = await members.revoke_key(session, user.principal, key_id)
    except ImagegateError as exc:
        return await _keys_page(request, user, error=exc.message, status_code=exc.status_code)
    gateway.principals.clear()  # the key stops working at once
    return flash.redirect(request, "/settings/keys", f"The key {key.prefix}… is revoked.")


# ---- credits --------------------------------------------------------------------------


async def _credits_page(
    request: Request, user: SignedIn, *, error: str | None = None, status_code: int = 200
) -> Response:
    gateway = _gateway(request)
    async with gateway.db.read_session() as session:
        balance = await billing.balance(session, user.principal.workspace_id, limit=100)
        state = await workspace.governance(session, user.principal.workspace_id)
        rows = await members.list_members(session, user.principal.workspace_id)
    names = {member.id: member.name for member, _ in rows}
    return _page(
        request,
        "credits.html",
        user,
        balance=balance,
        credits=billing.credits_text,
        names=names,
        billing_mode=BILLING_MODES.get(state.billing_mode, state.billing_mode),
        error=error,
        status_code=status_code,
    )


@router.get("/settings/credits")
async def credits_page(request: Request, user: Admin) -> Response:
    return await _credits_page(request, user)


_CREDITS = re.compile(r"^\d{1,12}(\.\d{1,3})?$")


def _form_credits(value: str) -> int:
    """A form's credit amount as the API reads a JSON number (a form field is text)."""
    if not _CREDITS.match(value):
        raise InvalidParameter(
            "Invalid value for 'amount': a positive number of credits with at most 3 decimals.",
            param="amount",
        )
    # Up to 12 digits and 3 decimals survive the float exactly (shortest repr round trip).
    return parse_credits(float(value) if "." in value else int(value))


@router.post("/settings/credits")
async def grant_credits(request: Request, user: Admin, form: AdminForm) -> Response:
    gateway = _gateway(request)
    note = text(form, "note").strip()[:500] or None
    try:
        amount = _form_credits(text(form, "amount").strip())
        async with gateway.db.session() as session:
            await billing.grant(
                session,
                user.principal.workspace_id,
                amount,
                member_id=user.principal.member_id,
                note=note,
            )
    except ImagegateError as exc:
        return await _credits_page(request, user, error=exc.message, status_code=exc.status_code)
    return flash.redirect(
        request, "/settings/credits", f"Granted {billing.credits_text(amount)} credits."
    )


# ---- usage ----------------------------------------------------------------------------


def chart(report: usage.Usage, height: int = 120) -> dict[str, Any]:
    """Bars per day for an SVG chart (drawn by the template; no script, no inline style)."""
    peak = max((t.images for t in report.by_day.values()), default=0) or 1
    width = 100 / max(len(report.days), 1)
    bars = []
    for i, day in enumerate(report.days):
        totals = report.by_day.get(day, usage.Totals())
        h = round(totals.images / peak * (height - 20), 1)
        bars.append(
            {
                "x": round(i * width, 3),
                "w": round(width * 0.8, 3),
                "y": round(height - 16 - h, 1),
                "h": h,
                "day": day.isoformat(),
                "images": totals.images,
                "credits": billing.credits_text(totals.credits),
            }
        )
    return {"bars": bars, "peak": peak, "height": height}


@router.get("/settings/usage")
async def usage_page(request: Request, user: Admin) -> Response:
    gateway = _gateway(request)
    days = request.query_params.get("days", "30")
    span = int(days) if days in ("7", "30", "90") else 30
    async with gateway.db.read_session() as session:
        report = await usage.usage(session, user.principal.workspace_id, span)
    names = {model.slug: model.name for model in gateway.catalog}
    return _page(
        request,
        "usage.html",
        user,
        report=report,
        span=span,
        chart=chart(report),
        credits=billing.credits_text,
        model_names=names,
        as_credits=as_credits,
    )


# ---- audit log ------------------------------------------------------------------------


@router.get("/settings/audit")
async def audit_page(request: Request, user: Admin) -> Response:
    gateway = _gateway(request)
    before_text = request.query_params.get("before", "")
    before = int(before_text) if before_text.isdigit() else None
    limit = 50
    async with gateway.db.read_session() as session:
        rows = await workspace.list_audit(
            session, user.principal.workspace_id, limit=limit, before=before
        )
    next_before = rows[-1][0].id if len(rows) == limit else None
    return _page(request, "audit.html", user, rows=rows, next_before=next_before)
