"""Usage over time: images made and credits charged per day, by model and by member."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.store.tables import File, Job, Member, utcnow


@dataclass
class Totals:
    images: int = 0
    jobs: int = 0
    credits: int = 0  # millicredits charged (or recorded, for invoiced workspaces)


@dataclass
class Usage:
    days: list[date]
    by_day: dict[date, Totals] = field(default_factory=dict)
    by_model: dict[str, Totals] = field(default_factory=dict)
    by_member: dict[str, Totals] = field(default_factory=dict)
    member_names: dict[str, str] = field(default_factory=dict)
    total: Totals = field(default_factory=Totals)


async def usage(session: AsyncSession, workspace_id: str, days: int = 30) -> Usage:
    """The succeeded jobs of the last ``days`` days (UTC), added up."""
    today = utcnow().date()
    first = today - timedelta(days=days - 1)
    images = (
        select(File.job_id, func.count().label("n"))
        .where(File.workspace_id == workspace_id, File.purpose == "output")
        .group_by(File.job_id)
        .subquery()
    )
    rows = await session.execute(
        select(
            Job.created_at,
            Job.model,
            Job.member_id,
            Job.charged_amount,
            func.coalesce(images.c.n, 0),
        )
        .outerjoin(images, images.c.job_id == Job.id)
        .where(
            Job.workspace_id == workspace_id,
            Job.status == "succeeded",
            Job.created_at >= datetime.combine(first, time.min, UTC),
        )
    )
    result = Usage(days=[first + timedelta(days=i) for i in range(days)])
    by_day: dict[date, Totals] = defaultdict(Totals)
    by_model: dict[str, Totals] = defaultdict(Totals)
    by_member: dict[str, Totals] = defaultdict(Totals)
    for created_at, model, member_id, charged, n in rows.all():
        day = created_at.date()
        for totals in (by_day[day], by_model[model], by_member[member_id], result.total):
            totals.images += int(n)
            totals.jobs += 1
            totals.credits += int(charged or 0)
    result.by_day = dict(by_day)
    result.by_model = dict(sorted(by_model.items(), key=lambda kv: -kv[1].images))
    result.by_member = dict(sorted(by_member.items(), key=lambda kv: -kv[1].images))
    names = await session.execute(
        select(Member.id, Member.name).where(Member.workspace_id == workspace_id)
    )
    result.member_names = {member_id: name for member_id, name in names.all()}
    return result
