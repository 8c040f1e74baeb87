"""A Hypothesis state machine over grant, hold, capture, release and expire: the
ledger's invariants hold after every step, on the real database."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from imagegate.catalog import load_catalog
from imagegate.errors import InsufficientCredits
from imagegate.ids import new_id
from imagegate.services import billing
from imagegate.services.bootstrap import bootstrap
from imagegate.store.db import Database, insert_rows
from imagegate.store.tables import CreditAccount, CreditHold, Job, Member, Workspace

amounts = st.integers(min_value=1, max_value=50_000)


def test_ledger_invariants(tmp_path: Path, database_url: str) -> None:
    loop = asyncio.new_event_loop()
    db = Database(database_url)
    loop.run_until_complete(db.migrate())

    async def setup() -> tuple[str, str]:
        async with db.session() as session:
            await bootstrap(session, load_catalog(), "ledger")
            workspace = (await session.execute(select(Workspace))).scalar_one()
            member = (await session.execute(select(Member))).scalar_one()
            return workspace.id, member.id

    workspace_id, member_id = loop.run_until_complete(setup())
    run = loop.run_until_complete

    class Ledger(RuleBasedStateMachine):
        holds = Bundle("holds")

        def __init__(self) -> None:
            super().__init__()
            self.model_available = run(self._available())
            self.model_held: dict[str, int] = {}
            self.model_held_total = run(self._held())

        async def _available(self) -> int:
            async with db.read_session() as session:
                account = await session.get(CreditAccount, workspace_id)
                return account.available if account else 0

        async def _held(self) -> int:
            async with db.read_session() as session:
                account = await session.get(CreditAccount, workspace_id)
                return account.held if account else 0

        @rule(amount=amounts)
        def grant(self, amount: int) -> None:
            async def go() -> None:
                async with db.session() as session:
                    await billing.grant(
                        session, workspace_id, amount, member_id=member_id, note=None
                    )

            run(go())
            self.model_available += amount

        @rule(target=holds, amount=amounts)
        def hold(self, amount: int) -> str:
            job_id = new_id("job")

            async def go() -> bool:
                try:
                    async with db.transaction() as tx:
                        await insert_rows(
                            tx,
                            Job(
                                id=job_id,
                                workspace_id=workspace_id,
                                member_id=member_id,
                                model="m",
                                provider="mock",
                                request={},
                                params={},
                                estimated_cost=amount,
                            ),
                        )
                        await billing.hold(tx, workspace_id, job_id, amount)
                    return True
                except InsufficientCredits:
                    return False

            placed = run(go())
            assert placed == (amount <= self.model_available)
            if placed:
                self.model_available -= amount
                self.model_held[job_id] = amount
                self.model_held_total += amount
            return job_id

        @rule(job_id=holds, actual=st.integers(min_value=0, max_value=60_000))
        def capture(self, job_id: str, actual: int) -> None:
            async def go() -> int:
                async with db.transaction() as tx:
                    return await billing.capture(tx, job_id, actual)

            charged = run(go())
            held = self.model_held.pop(job_id, None)
            if held is None:
                assert charged == 0  # settled already, or never held: nothing moves
                return
            assert charged == min(actual, held)
            self.model_held_total -= held
            self.model_available += held - charged

        @rule(job_id=holds)
        def release(self, job_id: str) -> None:
            async def go() -> int:
                async with db.transaction() as tx:
                    return await billing.release(tx, job_id, note="expired")

            released = run(go())
            held = self.model_held.pop(job_id, None)
            assert released == (held or 0)
            if held is not None:
                self.model_held_total -= held
                self.model_available += held

        @invariant()
        def balances_match_the_ledger(self) -> None:
            async def check() -> None:
                async with db.read_session() as session:
                    account = await session.get(CreditAccount, workspace_id)
                    available = account.available if account else 0
                    held = account.held if account else 0
                    totals = await billing.totals(session, workspace_id)
                    open_holds = (
                        await session.execute(
                            select(func.coalesce(func.sum(CreditHold.amount), 0)).where(
                                CreditHold.workspace_id == workspace_id, CreditHold.status == "held"
                            )
                        )
                    ).scalar_one()
                assert available >= 0 and held >= 0
                assert (available, held) == (self.model_available, self.model_held_total)
                assert held == open_holds
                assert available + held == totals.get("grant", 0) - totals.get("capture", 0)
                assert totals.get("hold", 0) == (
                    totals.get("capture", 0) + totals.get("release", 0) + held
                )

            run(check())

    try:
        run_state_machine_as_test(
            Ledger, settings=hsettings(max_examples=25, stateful_step_count=25, deadline=None)
        )
    finally:
        loop.run_until_complete(db.close())
        loop.close()
