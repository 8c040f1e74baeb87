"""The provider interface: a request value in, a result value or a typed error out.

Adapters own their upstream's wire format; nothing above them sees a provider's JSON.
Errors they raise come from :mod:`imagegate.errors`: ``ContentPolicyViolation`` for
refusals (never retried), ``TransientUpstreamError`` for what may pass (retried),
``InvalidParameter`` for what the provider rejected, ``UpstreamError`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class InputImage:
    """A reference or source image handed to the provider."""

    data: bytes
    content_type: str
    url: str | None = None


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


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    data: bytes
    content_type: str
    width: int
    height: int
    revised_prompt: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderResult:
    images: list[GeneratedImage]
    provider_request_id: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Provider(Protocol):
    name: str

    async def generate(self, request: ProviderRequest) -> ProviderResult: ...
