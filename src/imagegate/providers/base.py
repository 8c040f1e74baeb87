"""The provider interface: a request value in, a result value or a typed error out.

Adapters own their upstream's wire format; nothing above them sees a provider's JSON.
Errors they raise come from :mod:`imagegate.errors`: ``ContentPolicyViolation`` for
refusals (never retried), ``TransientUpstreamError`` for what may pass (retried),
``InvalidParameter`` for what the provider rejected, ``UpstreamError`` otherwise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# Called once the upstream has accepted the work, with its request id, so the job
# records the id (and a cancel can reach the provider) before the work is done.
SubmittedCallback = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class InputImage:
    """A reference or source image handed to the provider: its checked bytes, and where
    the operator set a public URL, a short-lived signed link to the gateway's copy (for
    upstreams that fetch images themselves)."""

    data: bytes
    content_type: str
    url: str | None = None
    width: int = 0
    height: int = 0


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    job_id: str
    model: str
    upstream_model: str
    action: str
    params: dict[str, Any]
    n: int
    width: int
    height: int
    output_format: str
    timeout_s: float
    prompt: str | None = None
    seed: int | None = None
    inputs: tuple[InputImage, ...] = ()
    mask: InputImage | None = None
    # The model's parameter for the input images (``image_url``, ``image_urls``): it is
    # not in ``params``; an adapter whose upstream takes that field fills it from
    # ``inputs`` (one image for a single field, a list for a list field).
    input_field: str | None = None
    input_list: bool = True
    region: str | None = None
    on_submitted: SubmittedCallback | None = field(default=None, compare=False, repr=False)

    async def submitted(self, provider_request_id: str) -> None:
        if self.on_submitted is not None:
            await self.on_submitted(provider_request_id)


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """One output. ``b64`` is ``data`` in canonical base64 (ASCII bytes, often a view into
    the upstream's answer) when the upstream sent it so: a ``b64_json`` answer passes it
    on instead of encoding the bytes again."""

    data: bytes
    content_type: str
    width: int
    height: int
    revised_prompt: str | None = None
    b64: bytes | memoryview | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class ProviderResult:
    images: list[GeneratedImage]
    provider_request_id: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Provider(Protocol):
    name: str

    async def generate(self, request: ProviderRequest) -> ProviderResult: ...


@runtime_checkable
class CancellableProvider(Provider, Protocol):
    """A provider with a cancel call: stops upstream work (and its bill) we no longer want."""

    async def cancel(self, provider_request_id: str, upstream_model: str) -> bool:
        """Ask the upstream to stop; True if it accepted."""
        ...
