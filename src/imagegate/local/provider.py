"""The local runner as a provider: jobs routed to it are batched by shape and run through
one diffusers pipeline.

Requests that arrive together or while the pipeline is busy (or within
``batch_window_s`` of each other, where one is set) and ask for the same shape (size,
steps, guidance, negative prompt) run as one batch of up to ``max_batch`` images: one
pass of the pipeline instead of several, which is where an accelerator gains. Different
shapes take turns, oldest first.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

from imagegate.errors import UpstreamError
from imagegate.local.pipeline import Shape
from imagegate.providers.base import GeneratedImage, ProviderRequest, ProviderResult

log = logging.getLogger("imagegate.local")

FORMATS = {
    "png": ("PNG", "image/png"),
    "jpeg": ("JPEG", "image/jpeg"),
    "webp": ("WEBP", "image/webp"),
}


class Pipeline(Protocol):
    """What the provider needs of a pipeline (:class:`~imagegate.local.pipeline.LocalPipeline`)."""

    device: str

    def run(self, shape: Shape, prompts: list[str], seeds: list[int | None]) -> list[Any]: ...


@dataclass
class _Item:
    prompt: str
    seed: int | None
    done: asyncio.Future[tuple[Any, int]] = field(repr=False)


def _number(params: dict[str, Any], *names: str) -> Any:
    for name in names:
        if params.get(name) is not None:
            return params[name]
    return None


def shape_of(request: ProviderRequest) -> Shape:
    params = request.params
    steps = _number(params, "num_inference_steps", "steps")
    guidance = _number(params, "guidance_scale", "cfg_scale")
    negative = params.get("negative_prompt")
    return Shape(
        width=request.width,
        height=request.height,
        steps=int(steps) if steps is not None else None,
        guidance=float(guidance) if guidance is not None else None,
        negative_prompt=str(negative) if negative else None,
    )


def encode(image: Any, output_format: str) -> tuple[bytes, str]:
    fmt, content_type = FORMATS.get(output_format, FORMATS["png"])
    out = io.BytesIO()
    (image.convert("RGB") if fmt == "JPEG" else image).save(out, fmt)
    return out.getvalue(), content_type


class LocalProvider:
    """A :class:`~imagegate.providers.base.Provider` over a local pipeline."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        name: str = "local",
        max_batch: int = 8,
        batch_window_s: float = 0.0,
    ) -> None:
        self.name = name
        self.pipeline = pipeline
        self.max_batch = max_batch
        self.batch_window_s = batch_window_s
        self._queues: OrderedDict[Shape, list[_Item]] = OrderedDict()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self.batches: list[int] = []  # sizes of the batches run, for tests and benchmarks

    @property
    def device(self) -> str:
        return self.pipeline.device

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())
        loop = asyncio.get_running_loop()
        shape = shape_of(request)
        items = [
            _Item(
                request.prompt or "",
                None if request.seed is None else request.seed + i,
                loop.create_future(),
            )
            for i in range(request.n)
        ]
        self._queues.setdefault(shape, []).extend(items)
        self._wake.set()
        try:
            made = await asyncio.gather(*(item.done for item in items))
        except asyncio.CancelledError:
            for item in items:  # not run yet: leave them out of the next batch
                item.done.cancel()
            raise
        images = []
        for image, _ in made:
            data, content_type = await asyncio.to_thread(encode, image, request.output_format)
            images.append(
                GeneratedImage(data, content_type, image.width, image.height, request.prompt)
            )
        batch = max(size for _, size in made)
        return ProviderResult(images=images, usage={"device": self.device, "batch_size": batch})

    async def _work(self) -> None:
        while True:
            if not any(self._queues.values()):
                self._wake.clear()
                await self._wake.wait()
                # Let requests that arrived with this one join it: those of the same moment
                # at once, and those up to batch_window_s later where one is set. Under load
                # batches fill anyway, with what arrives while the pipeline is busy.
                await asyncio.sleep(self.batch_window_s)
            shape, queue = next((s, q) for s, q in self._queues.items() if q)
            batch = [item for item in queue[: self.max_batch] if not item.done.done()]
            del queue[: self.max_batch]
            if not queue:
                del self._queues[shape]
            if not batch:
                continue
            self.batches.append(len(batch))
            try:
                images = await asyncio.to_thread(
                    self.pipeline.run, shape, [i.prompt for i in batch], [i.seed for i in batch]
                )
            except Exception as exc:  # the pipeline's own failure: every request of it fails
                log.exception("local pipeline failed on a batch of %d", len(batch))
                error = UpstreamError(
                    f"The local pipeline failed: {exc}", code="local_pipeline_failed"
                )
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(error)
                continue
            for item, image in zip(batch, images, strict=True):
                if not item.done.done():
                    item.done.set_result((image, len(batch)))

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
