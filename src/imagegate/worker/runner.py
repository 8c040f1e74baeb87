"""One attempt at one job: claim it, call the provider, store outputs, record the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from PIL import Image

from imagegate.blobs import BlobStore
from imagegate.catalog import Catalog
from imagegate.errors import (
    ImagegateError,
    InvalidRequest,
    ProviderNotConfigured,
    TransientUpstreamError,
)
from imagegate.ids import new_id
from imagegate.providers.base import ProviderRequest, ProviderResult
from imagegate.providers.registry import ProviderRegistry
from imagegate.services import jobs
from imagegate.store.db import Database
from imagegate.store.tables import File, utcnow

log = logging.getLogger("imagegate.worker")

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/svg+xml": "svg"}


def backoff_seconds(attempt: int, retry_after: float | None, base: float = 1.0, cap: float = 60.0) -> float:
    """Full-jitter exponential backoff, never sooner than the upstream's Retry-After."""
    delay = random.uniform(0, min(cap, base * 2 ** (attempt - 1)))
    return max(delay, retry_after or 0.0)


def _dimensions(data: bytes, content_type: str, fallback: tuple[int, int]) -> tuple[int, int]:
    if content_type == "image/svg+xml":
        return fallback
    with Image.open(io.BytesIO(data)) as image:
        return image.size


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
        on_finished: Callable[[str], None] = lambda job_id: None,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.providers = providers
        self.blobs = blobs
        self.lease_seconds = lease_seconds
        self.owner = owner or new_id("wrk")
        self.on_finished = on_finished

    async def run(self, job_id: str) -> bool:
        """Run the job if it can be claimed; True if this call ran an attempt."""
        claim = await jobs.claim(self.db, job_id, self.owner, self.lease_seconds)
        if claim is None:
            return False
        heartbeat = asyncio.create_task(self._heartbeat(claim))
        try:
            await self._attempt(claim)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            self.on_finished(job_id)
        return True

    async def _heartbeat(self, claim: jobs.Claim) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            if not await jobs.renew(self.db, claim, self.lease_seconds):
                log.warning("lost the lease on %s (attempt %s)", claim.job.id, claim.attempt)
                return

    def _request(self, claim: jobs.Claim) -> ProviderRequest:
        job = claim.job
        model = self.catalog.resolve(job.model)
        if model is None:
            raise ImagegateError(f"Model {job.model!r} is no longer in the catalog.", code="model_not_found")
        plan: dict[str, Any] = job.request["plan"]
        routes = [r for r in model.routes if r.provider == job.provider] or model.routes
        # The plan's region (e.g. use_case eu-only) picks among a provider's routes.
        route = next((r for r in routes if r.region == plan.get("region")), routes[0])
        return ProviderRequest(
            job_id=job.id,
            model=model.slug,
            upstream_model=route.upstream_id,
            action=job.action,
            params=job.params,
            n=plan["n"],
            width=plan["width"],
            height=plan["height"],
            output_format=plan["output_format"],
            timeout_s=model.timeout_s,
            prompt=job.params.get(model.prompt_field) if model.prompt_field else None,
            seed=job.params.get(model.seed_field) if model.seed_field else None,
        )

    async def _attempt(self, claim: jobs.Claim) -> None:
        job = claim.job
        try:
            request = self._request(claim)
            provider = self.providers.get(job.provider)
            result = await asyncio.wait_for(provider.generate(request), timeout=request.timeout_s)
            if len(result.images) == 0:
                raise ImagegateError("The provider returned no image.", code="upstream_empty_result")
        except TimeoutError:
            await self._retry_or_fail(claim, "upstream_timeout", "The provider did not answer in time.", None)
            return
        except TransientUpstreamError as exc:
            await self._retry_or_fail(claim, exc.code, exc.message, exc.retry_after)
            return
        except (InvalidRequest, ProviderNotConfigured, ImagegateError) as exc:
            reason = exc.extra.get("provider_reason")
            await jobs.fail(self.db, claim, code=exc.code, message=exc.message, provider_reason=reason)
            return
        except Exception:
            log.exception("job %s: provider call crashed", job.id)
            await jobs.fail(self.db, claim, code="internal_error", message="The generation failed unexpectedly.")
            return
        await self._store(claim, request, result)

    async def _retry_or_fail(
        self, claim: jobs.Claim, code: str, message: str, retry_after: float | None
    ) -> None:
        retry_at = None
        if claim.attempt < claim.job.max_attempts:
            retry_at = utcnow() + timedelta(seconds=backoff_seconds(claim.attempt, retry_after))
        await jobs.fail(self.db, claim, code=code, message=message, retry_at=retry_at)

    async def _store(self, claim: jobs.Claim, request: ProviderRequest, result: ProviderResult) -> None:
        job = claim.job
        files: list[File] = []
        for index, image in enumerate(result.images):
            extension = EXTENSIONS.get(image.content_type, "bin")
            key = f"{job.workspace_id}/{job.id}/{claim.attempt}-{index}.{extension}"
            width, height = await asyncio.to_thread(
                _dimensions, image.data, image.content_type, (image.width, image.height)
            )
            await self.blobs.put(key, image.data, image.content_type)
            files.append(
                File(
                    id=new_id("file"),
                    workspace_id=job.workspace_id,
                    job_id=job.id,
                    output_index=index,
                    purpose="output",
                    filename=f"{job.id}-{index}.{extension}",
                    content_type=image.content_type,
                    bytes=len(image.data),
                    width=width,
                    height=height,
                    sha256=hashlib.sha256(image.data).hexdigest(),
                    blob_key=key,
                )
            )
        revised = [image.revised_prompt for image in result.images]
        async with self.db.session() as session:
            stored = await jobs.succeed(
                session,
                claim,
                files,
                charged_amount=job.estimated_cost,
                result={"revised_prompts": revised, "usage": result.usage},
                provider_request_id=result.provider_request_id,
            )
        if not stored:
            log.warning("job %s attempt %s was fenced off; discarding its outputs", job.id, claim.attempt)
            for file in files:
                await self.blobs.delete(file.blob_key)
