"""One attempt at one job: claim it, call the provider, store outputs, record the outcome."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from PIL import Image, UnidentifiedImageError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from tenacity import AsyncRetrying, retry_if_exception, wait_random_exponential

from imagegate.blobs import BlobStore
from imagegate.catalog import Catalog, ModelSpec
from imagegate.catalog.pricing import actual_cost
from imagegate.catalog.spec import Route
from imagegate.errors import (
    ContentPolicyViolation,
    ImagegateError,
    InvalidRequest,
    ProviderNotConfigured,
    TransientUpstreamError,
    UpstreamError,
)
from imagegate.ids import new_id
from imagegate.observe import context, tracing
from imagegate.observe.metrics import Metrics
from imagegate.providers.base import (
    GeneratedImage,
    ProviderRequest,
    ProviderResult,
    SubmittedCallback,
)
from imagegate.providers.http import ReadLimit
from imagegate.providers.registry import ProviderRegistry
from imagegate.services import files as file_service
from imagegate.services import jobs, routing, workspace
from imagegate.store.db import Database
from imagegate.store.tables import File, Job, utcnow
from imagegate.worker.tasks import cancel_and_wait

log = logging.getLogger("imagegate.worker")

T = TypeVar("T")

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/svg+xml": "svg"}


def backoff_seconds(
    attempt: int, retry_after: float | None, base: float = 1.0, cap: float = 60.0
) -> float:
    """Full-jitter exponential backoff, never sooner than the upstream's Retry-After."""
    delay = random.uniform(0, min(cap, base * 2 ** (attempt - 1)))
    return max(delay, retry_after or 0.0)


def _busy(exc: BaseException) -> bool:
    """Whether a database error only says "busy": every pooled connection was taken for
    the whole pool timeout, or SQLite's write lock for its whole busy timeout. Nothing
    was written then, so the step can simply be tried again."""
    if isinstance(exc, PoolTimeout):
        return True
    return isinstance(exc, OperationalError) and "database is locked" in str(exc.orig)


async def patiently(step: Callable[[], Awaitable[T]], what: str, cap: float = 5.0) -> T:
    """Run a database step of an attempt, waiting out a busy database with jittered
    backoff: a task that gave up there would leave its job running until its lease ran
    out. A stopped attempt (a cancel, a lost lease) stops waiting too."""
    retrying = AsyncRetrying(
        retry=retry_if_exception(_busy),
        wait=wait_random_exponential(multiplier=0.05, max=cap),
        before_sleep=lambda state: log.warning(
            "database busy (%s); retrying %s (try %d)",
            state.outcome.exception() if state.outcome else None,
            what,
            state.attempt_number,
        ),
        reraise=True,
    )
    async for trying in retrying:
        with trying:
            return await step()
    raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover


def _measure(image: GeneratedImage) -> tuple[int, int]:
    """An output's true width and height, from its header (microseconds: Pillow reads no
    pixels to open an image)."""
    if image.content_type == "image/svg+xml":
        return image.width, image.height
    try:
        with Image.open(io.BytesIO(image.data)) as opened:
            width, height = opened.size
    except UnidentifiedImageError:
        raise UpstreamError(
            "The provider answered with an output that is not an image.",
            code="upstream_bad_response",
        ) from None
    return width, height


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """A success handed to the request waiting for it in this process: the job as it
    ended, its stored outputs (none for sync_mode) and the images themselves."""

    job: Job
    files: list[File]
    images: list[GeneratedImage]


class JobRunner:
    def __init__(
        self,
        db: Database,
        catalog: Catalog,
        providers: ProviderRegistry,
        blobs: BlobStore,
        *,
        lease_seconds: float,
        owner: str | None = None,
        retry_base_seconds: float = 1.0,
        retry_max_seconds: float = 60.0,
        provider_concurrency: int = 8,
        on_finished: Callable[[str], None] = lambda job_id: None,
        on_requeued: Callable[[str, float], None] = lambda job_id, delay: None,
        output_retention_seconds: int = 7 * 24 * 3600,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.providers = providers
        self.blobs = blobs
        self.lease_seconds = lease_seconds
        self.owner = owner or new_id("wrk")
        self.retry_base_seconds = retry_base_seconds
        self.retry_max_seconds = retry_max_seconds
        self.on_finished = on_finished
        self.on_requeued = on_requeued
        self.provider_concurrency = provider_concurrency
        # Which jobs this process may claim, by provider: only those of a local runner's
        # route, or none of the local routes that another process serves (gateway.py).
        self.only_providers: frozenset[str] | None = None
        self.elsewhere_providers: frozenset[str] = frozenset()
        self._limits: dict[str, asyncio.Semaphore] = {}
        self.output_retention_seconds = output_retention_seconds
        # Attempts running here, renewed together by one heartbeat; those past their
        # provider call (recording the outcome) are never stopped for a lost lease.
        self._active: dict[str, tuple[jobs.Claim, asyncio.Task[None]]] = {}
        self._finishing: set[str] = set()
        self._heartbeat_task: asyncio.Task[None] | None = None
        # Successes handed to a request waiting in this process, so it need not read back
        # the job, its outputs and their bytes (sync_mode images exist only here).
        self._deliveries: dict[str, asyncio.Future[Delivery]] = {}
        # A signed link to an input image (set by the gateway where a public URL is set).
        self.input_link: Callable[[File], str | None] | None = None
        self.metrics: Metrics | None = None  # set by the gateway

    def expect_delivery(self, job_id: str) -> asyncio.Future[Delivery]:
        """Where the job's success will arrive if it happens in this process; take it
        before the job can run."""
        return self._deliveries.setdefault(job_id, asyncio.get_running_loop().create_future())

    def forget_delivery(self, job_id: str) -> None:
        self._deliveries.pop(job_id, None)

    def runs(self, job_id: str) -> bool:
        """Whether an attempt at ``job_id`` runs in this process now."""
        return job_id in self._active

    async def run(self, job_id: str, claim: jobs.Claim | None = None) -> bool:
        """Run the job if it can be claimed (or with ``claim``, taken when it was inserted);
        True if this call ran an attempt."""
        if claim is None:
            claim = await patiently(
                lambda: jobs.claim(
                    self.db,
                    job_id,
                    self.owner,
                    self.lease_seconds,
                    only=self.only_providers,
                    elsewhere=self.elsewhere_providers,
                ),
                f"the claim of {job_id}",
            )
        if claim is None:
            return False
        self._ensure_heartbeat()
        context.job_id.set(job_id)  # this task's log lines are about the job
        if self.metrics is not None:
            self.metrics.job("running", claim.job.model, claim.job.provider)
            self.metrics.attempts_running.inc()
        attempt = asyncio.create_task(self._attempt_in_scope(claim))
        self._active[job_id] = (claim, attempt)
        try:
            await attempt
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this run itself is being stopped (job canceled, shutdown)
            # else the heartbeat stopped the attempt: the job is no longer ours
        finally:
            if self._active.get(job_id, (None, None))[1] is attempt:
                del self._active[job_id]
            self._finishing.discard(job_id)
            if self.metrics is not None:
                self.metrics.attempts_running.dec()
            self.on_finished(job_id)
        return True

    async def _attempt_in_scope(self, claim: jobs.Claim) -> None:
        # A large upstream body's read slot is kept until the outputs are stored: the
        # decoded images are in memory until then (see ReadLimit).
        job = claim.job
        with tracing.span("job.attempt", job_id=job.id, model=job.model, attempt=claim.attempt):
            async with ReadLimit.attempt():
                await self._attempt(claim)

    def _ensure_heartbeat(self) -> None:
        if self._heartbeat_task is None or self._heartbeat_task.done():
            self._heartbeat_task = asyncio.create_task(self._heartbeat())

    async def stop(self) -> None:
        """Stop the lease renewals (the dispatcher stops the attempts)."""
        await cancel_and_wait(self._heartbeat_task)
        self._heartbeat_task = None

    async def _heartbeat(self) -> None:
        """Renew every lease this process holds with one statement, every third of a lease.

        An attempt whose job is no longer ours (canceled, expired and taken over) is
        stopped, which lets its adapter cancel the upstream work too.
        """
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            if not self._active:
                continue
            # Only attempts that held their claim before the renewal can be judged by it.
            before = dict(self._active)
            try:
                owned = await jobs.renew_owned(self.db, self.owner, self.lease_seconds)
            except Exception:
                log.exception("renewing the leases of %d jobs failed", len(before))
                continue
            for job_id, (claim, attempt) in before.items():
                lost = (job_id, claim.attempt) not in owned
                if lost and not attempt.done() and job_id not in self._finishing:
                    log.warning(
                        "lost the lease on %s (attempt %s); stopping it", job_id, claim.attempt
                    )
                    attempt.cancel()

    def _routes(self, job: Job, model: ModelSpec, region_policy: str | None) -> list[Route]:
        """The routes an attempt may try, in order: every route of the model that the plan's
        region (a use_case's, or the EU policy at submit) and the workspace's region policy
        now allow, or the one chosen (mock). Falling back outside the region would break
        the hosting promise, so there is no such fallback.
        """
        if job.request["plan"].get("mock") or not any(
            route.provider == job.provider for route in model.routes
        ):
            return [Route(provider=job.provider, upstream_id=model.routes[0].upstream_id)]
        region = job.request["plan"].get("region")
        policy = routing.policy_region(region_policy) if region_policy else None
        return routing.allowed_routes(model, region, policy)

    def _request(
        self, claim: jobs.Claim, model: ModelSpec, route: Route, on_submitted: SubmittedCallback
    ) -> ProviderRequest:
        job = claim.job
        plan: dict[str, Any] = job.request["plan"]
        limit = model.limits.references
        params = job.params
        if limit is not None and limit.field in params:
            # The images travel as inputs; each adapter sends them as its upstream takes them.
            params = {k: v for k, v in params.items() if k != limit.field}
        return ProviderRequest(
            job_id=job.id,
            model=model.slug,
            upstream_model=route.upstream_id,
            # A jobs-API request to an editor or an upscaler is that model's action.
            action=job.action if job.action in model.actions else model.actions[0],
            params=params,
            input_field=limit.field if limit is not None else None,
            input_list=limit is None or "array" in model.params[limit.field].types,
            n=plan["n"],
            width=plan["width"],
            height=plan["height"],
            output_format=plan["output_format"],
            timeout_s=model.timeout_s,
            prompt=job.params.get(model.prompt_field) if model.prompt_field else None,
            seed=job.params.get(model.seed_field) if model.seed_field else None,
            region=route.region,
            on_submitted=on_submitted,
        )

    async def _attempt(self, claim: jobs.Claim) -> None:
        """Try the model's routes in order: a transient failure (or a provider without
        credentials, or an upstream fault of its own) moves to the next route; a refusal or
        a rejected parameter ends the job at once. When every route failed transiently, the
        job is re-queued with backoff."""
        job = claim.job
        model = self.catalog.resolve(job.model)
        if model is None:
            message = f"Model {job.model!r} is no longer in the catalog."
            await self._fail(claim, code="model_not_found", message=message)
            return
        region_policy: str | None = None
        try:
            if not claim.checked:
                # The rules as they are now: a model disabled after submit is not used.
                state = await patiently(
                    lambda: workspace.check_job_allowed(
                        self.db,
                        self.catalog,
                        job.workspace_id,
                        job.model,
                        mock=bool(job.request["plan"].get("mock")),
                    ),
                    f"the checks of {job.id}",
                )
                region_policy = state.region_policy if state is not None else None
            references = job.request["plan"].get("reference_files") or []
            inputs = (
                await patiently(
                    lambda: file_service.load_inputs(
                        self.db, self.blobs, job.workspace_id, references, link=self.input_link
                    ),
                    f"the inputs of {job.id}",
                )
                if references
                else ()
            )
            mask_file = job.request["plan"].get("mask_file")
            masks = (
                await patiently(
                    lambda: file_service.load_inputs(
                        self.db, self.blobs, job.workspace_id, [mask_file], link=self.input_link
                    ),
                    f"the mask of {job.id}",
                )
                if mask_file
                else ()
            )
        except ImagegateError as exc:
            await self._fail(claim, code=exc.code, message=exc.message)
            return
        noted: list[str] = []

        def recorder(provider: str) -> SubmittedCallback:
            async def on_submitted(provider_request_id: str) -> None:
                noted.append(provider_request_id)
                await patiently(
                    lambda: jobs.note_provider_request(
                        self.db, claim, provider, provider_request_id
                    ),
                    f"the provider request of {job.id}",
                )

            return on_submitted

        transient: tuple[str, str, float | None] | None = None
        final: ImagegateError | None = None
        routes = self._routes(job, model, region_policy)
        if not routes:
            message = f"No route of {model.slug!r} runs in the region this job must stay in."
            await self._fail(claim, code="region_not_allowed", message=message)
            return
        for route in routes:
            try:
                provider = self.providers.get(route.provider)
            except ProviderNotConfigured as exc:
                final = final or exc
                continue
            request = self._request(claim, model, route, recorder(route.provider))
            if inputs or masks:
                mask = masks[0] if masks else None
                request = dataclasses.replace(request, inputs=tuple(inputs), mask=mask)
            limit = self._limits.setdefault(
                route.provider, asyncio.Semaphore(self.provider_concurrency)
            )
            try:
                result = await self._generate(provider, request, limit, route.provider)
                if len(result.images) == 0:
                    raise UpstreamError(
                        "The provider returned no image.", code="upstream_empty_result"
                    )
            except TimeoutError:
                message = f"{route.provider} did not answer within {request.timeout_s:g}s."
                transient = ("upstream_timeout", message, None)
            except TransientUpstreamError as exc:
                transient = (exc.code, exc.message, exc.retry_after)
            except (InvalidRequest, ContentPolicyViolation) as exc:
                reason = exc.extra.get("provider_reason")
                await self._fail(claim, code=exc.code, message=exc.message, provider_reason=reason)
                return
            except UpstreamError as exc:
                final = exc
            except ImagegateError as exc:
                await self._fail(claim, code=exc.code, message=exc.message)
                return
            except Exception:
                log.exception("job %s: provider %s crashed", job.id, route.provider)
                message = "The generation failed unexpectedly."
                await self._fail(claim, code="internal_error", message=message)
                return
            else:
                try:
                    await self._store(claim, request, result, route.provider, noted)
                except UpstreamError as exc:  # an output the provider sent broken
                    await self._fail(claim, code=exc.code, message=exc.message)
                except Exception:
                    log.exception("job %s: storing the outputs failed", job.id)
                    await self._fail(
                        claim, code="internal_error", message="Storing the images failed."
                    )
                return
            log.info("job %s: route %s failed; trying the next route", job.id, route.provider)
        if transient is not None:
            await self._retry_or_fail(claim, *transient)
        elif final is not None:
            await self._fail(claim, code=final.code, message=final.message)

    async def _generate(
        self,
        provider: Any,
        request: ProviderRequest,
        limit: asyncio.Semaphore,
        provider_name: str,
    ) -> ProviderResult:
        """One provider call in the provider's slot, timed for the metrics."""
        async with limit:
            started = time.perf_counter()
            error: str | None = "internal_error"
            try:
                result: ProviderResult = await asyncio.wait_for(
                    provider.generate(request), request.timeout_s
                )
                error = None
                return result
            except ImagegateError as exc:
                error = exc.code
                raise
            except TimeoutError:
                error = "upstream_timeout"
                raise
            except asyncio.CancelledError:
                error = None
                raise
            finally:
                if self.metrics is not None:
                    seconds = time.perf_counter() - started
                    self.metrics.provider_call(provider_name, request.model, seconds, error)

    async def _fail(self, claim: jobs.Claim, **kwargs: Any) -> bool:
        self._finishing.add(claim.job.id)

        async def record() -> bool:
            async with self.db.session() as session:
                return await jobs.fail(session, claim, **kwargs)

        failed = await patiently(record, f"the outcome of {claim.job.id}")
        if failed and self.metrics is not None:
            state = "retried" if kwargs.get("retry_at") is not None else "failed"
            self.metrics.job(state, claim.job.model, claim.job.provider)
        if failed and kwargs.get("retry_at") is None:
            await self._release_sources(claim.job)
        return failed

    async def _release_sources(self, job: Job) -> None:
        """Delete the images sent with the job's request once it has ended (they expire
        anyway; a job canceled or expired elsewhere leaves them to that)."""
        plan = job.request["plan"]
        ids = [*(plan.get("reference_files") or []), *filter(None, [plan.get("mask_file")])]
        if ids:
            try:
                await file_service.delete_sources(self.db, self.blobs, ids, job.workspace_id)
            except Exception:
                log.exception("job %s: deleting its source images failed", job.id)

    async def _retry_or_fail(
        self, claim: jobs.Claim, code: str, message: str, retry_after: float | None
    ) -> None:
        if claim.attempt >= claim.job.max_attempts:
            await self._fail(claim, code=code, message=message)
            return
        delay = backoff_seconds(
            claim.attempt, retry_after, self.retry_base_seconds, self.retry_max_seconds
        )
        retry_at = utcnow() + timedelta(seconds=delay)
        if await self._fail(claim, code=code, message=message, retry_at=retry_at):
            self.on_requeued(claim.job.id, delay)

    def _actual_cost(
        self, claim: jobs.Claim, sizes: Sequence[tuple[int | None, int | None]]
    ) -> int:
        """The price of what was really returned: each image at its true dimensions."""
        job = claim.job
        model = self.catalog.resolve(job.model)
        if job.request["plan"].get("mock") or model is None:
            return 0
        plan = job.request["plan"]
        outputs = [(w or plan["width"], h or plan["height"]) for w, h in sizes]
        return actual_cost(model, job.params, outputs)

    async def _succeed(
        self,
        claim: jobs.Claim,
        result: ProviderResult,
        provider: str,
        noted: list[str],
        files: list[File],
        sizes: Sequence[tuple[int | None, int | None]],
    ) -> bool:
        """Record the success (and the outputs), then hand it to a request waiting here."""
        job = claim.job
        self._finishing.add(job.id)
        outcome: dict[str, Any] = {
            "revised_prompts": [image.revised_prompt for image in result.images],
            "usage": result.usage,
            "provider": provider,
        }
        if not files:
            outcome["inline_outputs"] = len(result.images)
        request_id = result.provider_request_id or (noted[-1] if noted else None)

        async def record() -> int | None:
            async with jobs.success_unit(self.db, job) as tx:
                return await jobs.succeed(
                    tx,
                    claim,
                    files,
                    actual_cost=self._actual_cost(claim, sizes),
                    result=outcome,
                    provider_request_id=request_id,
                )

        charged = await patiently(record, f"the success of {job.id}")
        if charged is None:
            return False
        if self.metrics is not None:
            self.metrics.job("succeeded", job.model, provider)
            self.metrics.credits.labels("captured").inc(charged)
        waiting = self._deliveries.get(job.id)
        if waiting is not None and not waiting.done():
            # The job as the database now has it: the request need not read it back.
            job.status, job.finished_at = jobs.SUCCEEDED, utcnow()
            job.result, job.charged_amount = outcome, charged
            job.provider, job.provider_request_id = provider, request_id
            waiting.set_result(Delivery(job, files, result.images))
        await self._release_sources(job)
        return True

    async def _store(
        self,
        claim: jobs.Claim,
        request: ProviderRequest,
        result: ProviderResult,
        provider: str,
        noted: list[str],
    ) -> None:
        job = claim.job
        images = result.images
        if job.request["plan"].get("sync_mode"):
            # sync_mode: the images go to the waiting request, the job keeps no output.
            sizes = [(image.width, image.height) for image in images]
            await self._succeed(claim, result, provider, noted, [], sizes)
            return
        expires_at = file_service.output_expiry(self.output_retention_seconds)
        # One folder of outputs per workspace, as of uploads: a folder per job would cost
        # every image a new directory, and flushing it and its parent to disk.
        keys = [
            f"{job.workspace_id}/outputs/{job.id}-{claim.attempt}-{index}."
            f"{EXTENSIONS.get(image.content_type, 'bin')}"
            for index, image in enumerate(images)
        ]
        # An output that is no image is refused before anything is written.
        sizes = [_measure(image) for image in images]
        # The store hashes what it writes, in the thread that writes it.
        writes = [
            asyncio.ensure_future(self.blobs.put(key, image.data, image.content_type))
            for key, image in zip(keys, images, strict=True)
        ]
        try:
            # A stopped attempt cannot stop a write under way: the writes run on.
            digests = await asyncio.shield(asyncio.gather(*writes))
        except BaseException:
            # Nothing refers to these blobs yet: a failed write, or the attempt stopped.
            # Remove what was written (once the writes are over).
            await asyncio.shield(self._discard(keys, writes))
            raise
        files = [
            File(
                id=new_id("file"),
                workspace_id=job.workspace_id,
                member_id=job.member_id,
                job_id=job.id,
                output_index=index,
                purpose="output",
                filename=f"{job.id}-{index}.{key.rsplit('.', 1)[1]}",
                content_type=image.content_type,
                bytes=len(image.data),
                width=width,
                height=height,
                sha256=digest,
                blob_key=key,
                expires_at=expires_at,
            )
            for index, (image, key, (width, height), digest) in enumerate(
                zip(images, keys, sizes, digests, strict=True)
            )
        ]
        # A success that raised is left alone: it may have been recorded all the same (a
        # connection lost after the commit), and then these blobs are the job's outputs.
        if not await self._succeed(claim, result, provider, noted, files, sizes):
            log.warning(
                "job %s attempt %s was fenced off; discarding its outputs", job.id, claim.attempt
            )
            await self._discard(keys, writes)

    async def _discard(self, keys: list[str], writes: Sequence[asyncio.Future[str]]) -> None:
        """Delete an attempt's blobs that no job refers to, once all their writes ended."""
        await asyncio.gather(*writes, return_exceptions=True)
        for key in keys:
            try:
                await self.blobs.delete(key)
            except Exception:
                log.exception("deleting the unused blob %s failed", key)
