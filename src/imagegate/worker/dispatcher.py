"""The embedded dispatcher: runs jobs inside the server process.

It only decides *when* a job id is handed to the runner; the job's lifecycle lives in
:mod:`imagegate.services.jobs`, so another dispatcher (a shared queue) can replace it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from imagegate.services import idempotency, jobs
from imagegate.services.webhooks import WebhookSender
from imagegate.store.db import Database
from imagegate.worker.runner import JobRunner
from imagegate.worker.tasks import cancel_and_wait

log = logging.getLogger("imagegate.dispatcher")

# Due jobs one look at the queue picks up.
_DUE_BATCH = 100


class EmbeddedDispatcher:
    def __init__(
        self,
        db: Database,
        runner: JobRunner,
        *,
        concurrency: int,
        poll_interval: float = 1.0,
        queued_ttl_seconds: float = 3600.0,
        idempotency_ttl_seconds: float = 48 * 3600.0,
        webhooks: WebhookSender | None = None,
        only: Collection[str] | None = None,
        elsewhere: Collection[str] = (),
    ) -> None:
        self.db = db
        # Jobs of which providers this process runs: ``only`` these (a local runner), or
        # none of ``elsewhere`` (local routes that another process serves).
        self.only = frozenset(only) if only is not None else None
        self.elsewhere = frozenset(elsewhere)
        self.runner = runner
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.queued_ttl_seconds = queued_ttl_seconds
        self.idempotency_ttl_seconds = idempotency_ttl_seconds
        self.webhooks = webhooks
        self._running: dict[str, asyncio.Task[bool]] = {}
        # Attempts this process may run at once; a job claimed as it was inserted takes its
        # slot at once (reserve), queued ones wait for one.
        self._free = concurrency
        self._freed = asyncio.Event()
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._pending: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._webhook_task: asyncio.Task[None] | None = None
        self._waiters: dict[str, asyncio.Event] = {}
        # False once a shutdown began: no new attempt starts here.
        self._accepting = True
        # How long the poll sleeps (longer while notifications wake this process), and
        # who else hears of jobs this process put back in the queue.
        self.poll_every: Callable[[], float] = lambda: self.poll_interval
        self.announce_queued: Callable[[list[str]], None] = lambda job_ids: None
        runner.on_finished = self.notify
        runner.on_requeued = self._submit_later

    def reserve(self) -> bool:
        """Take a slot for a job this process will claim as it inserts it; False when the
        dispatcher is not running or every slot is busy (then the job is queued)."""
        if not self._tasks or self._free <= 0 or not self._accepting:
            return False
        self._free -= 1
        return True

    def release(self) -> None:
        """Give back a slot taken by :meth:`reserve` or by the queue."""
        self._free += 1
        self._freed.set()

    def start_claimed(self, claim: jobs.Claim) -> None:
        """Run a job claimed when it was inserted, in the slot :meth:`reserve` took."""
        self._spawn(claim.job.id, claim)

    def submit(self, job_id: str) -> None:
        if job_id not in self._pending:
            self._pending.add(job_id)
            self._queue.put_nowait(job_id)

    @property
    def running(self) -> bool:
        """Whether this dispatcher takes jobs now (started, not shutting down)."""
        return bool(self._tasks) and self._accepting

    def offer(self, job_ids: list[str]) -> None:
        """Jobs queued elsewhere: try to take them when a slot is free (another worker may
        be first; the claim then finds nothing)."""
        if self.running:
            for job_id in job_ids:
                self.submit(job_id)

    def _submit_later(self, job_id: str, delay: float) -> None:
        if self.running:
            asyncio.get_running_loop().call_later(delay, self.submit, job_id)

    def notify(self, job_id: str) -> None:
        event = self._waiters.get(job_id)
        if event is not None:
            event.set()

    def notify_all(self) -> None:
        """Wake every request waiting here: each looks at its job again."""
        for event in self._waiters.values():
            event.set()

    def watch(self, job_id: str) -> asyncio.Event:
        """An event set whenever an attempt at ``job_id`` finishes in this process.

        Take it before submitting, so a fast job cannot finish unseen.
        """
        return self._waiters.setdefault(job_id, asyncio.Event())

    def unwatch(self, job_id: str) -> None:
        self._waiters.pop(job_id, None)

    async def start(self) -> None:
        self._accepting = True
        await self.recover()
        self._free = self.concurrency
        self._tasks = [asyncio.create_task(self._work()), asyncio.create_task(self._poll())]
        if self.webhooks is not None:
            self._webhook_task = asyncio.create_task(self._deliver_webhooks())

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks, self._webhook_task, *self._running.values())
        self._tasks, self._webhook_task = [], None
        await self.runner.stop()
        if self.webhooks is not None:
            await self.webhooks.close()

    async def wind_down(self, grace_seconds: float) -> list[str]:
        """Stop taking jobs, let the attempts running here finish within ``grace_seconds``,
        then stop the rest and hand their jobs back to the queue; the ids of jobs now
        queued that this process had meant to run (for other workers to take at once)."""
        self._accepting = False
        # Webhook deliveries go on until the process stops.
        await cancel_and_wait(*self._tasks)
        left = list(self._pending)
        self._pending.clear()
        while not self._queue.empty():
            self._queue.get_nowait()
        running = list(self._running.values())
        if running and grace_seconds > 0:
            log.info("waiting up to %gs for %d running jobs", grace_seconds, len(running))
            await asyncio.wait(running, timeout=grace_seconds)
        stopped = [task for task in self._running.values() if not task.done()]
        if stopped:
            log.info("stopping %d jobs that did not finish in time", len(stopped))
        await cancel_and_wait(*stopped)
        handed = await jobs.hand_back(self.db, self.runner.owner)
        for job_id in handed:
            log.info("job %s handed back to the queue", job_id, extra={"job_id": job_id})
        return handed + left

    def cancel_local(self, job_id: str) -> bool:
        """Stop this process's attempt at ``job_id`` (already canceled in the database)."""
        task = self._running.get(job_id)
        if task is None:
            return False
        task.cancel()
        return True

    async def recover(self) -> int:
        """Requeue what a crashed process left running, expire what waited too long,
        and pick up what is due (a batch); how many due jobs it found."""
        recovered = await jobs.recover_expired_leases(self.db)
        for job_id in recovered:
            log.info("recovered job %s from an expired lease", job_id, extra={"job_id": job_id})
        if recovered:
            self.announce_queued(recovered)
        for job_id in await jobs.expire_stale(self.db, self.queued_ttl_seconds):
            log.info("job %s expired in the queue", job_id)
        due = await jobs.due_queued(self.db, _DUE_BATCH, only=self.only, elsewhere=self.elsewhere)
        for job_id in due:
            self.submit(job_id)
        return len(due)

    async def drain(self, max_wait: float = 30.0) -> None:
        """Burst mode: run queued jobs (waiting for retries to fall due) until none is left."""
        deadline = asyncio.get_running_loop().time() + max_wait
        while True:
            await self.recover()
            if self._queue.empty():
                next_due = await jobs.next_due_in(self.db)
                if next_due is None or asyncio.get_running_loop().time() + next_due > deadline:
                    return
                await asyncio.sleep(next_due)
                continue
            while not self._queue.empty():
                job_id = self._queue.get_nowait()
                self._pending.discard(job_id)
                await self._run(job_id)
            if self.webhooks is not None:
                await self.webhooks.deliver_due()

    async def _work(self) -> None:
        """Hand queued jobs to the runner, each in a free slot."""
        while True:
            job_id = await self._queue.get()
            while self._free <= 0:
                self._freed.clear()
                await self._freed.wait()
            self._pending.discard(job_id)
            self._free -= 1
            self._spawn(job_id, None)

    def _spawn(self, job_id: str, claim: jobs.Claim | None) -> None:
        task = asyncio.create_task(self._attempt(job_id, claim))
        self._running[job_id] = task

    async def _attempt(self, job_id: str, claim: jobs.Claim | None) -> bool:
        try:
            return await self.runner.run(job_id, claim)
        except asyncio.CancelledError:
            log.info("job %s: attempt stopped", job_id)
            return False
        except Exception:
            log.exception("job %s: runner crashed", job_id)
            return False
        finally:
            if self._running.get(job_id) is asyncio.current_task():
                del self._running[job_id]
            self.release()

    async def _run(self, job_id: str) -> None:
        """Run one job in the caller's task (burst mode)."""
        task = asyncio.create_task(self.runner.run(job_id))
        self._running[job_id] = task
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
            log.info("job %s: attempt stopped after cancel", job_id)
        finally:
            self._running.pop(job_id, None)

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        purge_at = loop.time()
        backlog = False
        while True:
            # A full batch found: more may wait (a worker that starts on a backlog, or
            # notifications lost), so look again soon.
            await asyncio.sleep(self.poll_interval if backlog else self.poll_every())
            try:
                backlog = await self.recover() >= _DUE_BATCH
                if loop.time() >= purge_at:
                    purge_at = loop.time() + 600  # about every ten minutes
                    await idempotency.purge(self.db, self.idempotency_ttl_seconds)
            except Exception:
                log.exception("dispatcher poll failed")

    async def _deliver_webhooks(self) -> None:
        assert self.webhooks is not None
        while True:
            try:
                sent = await self.webhooks.deliver_due()
            except Exception:
                log.exception("webhook delivery failed")
                sent = 0
            if sent == 0:
                await asyncio.sleep(self.poll_interval / 4)
