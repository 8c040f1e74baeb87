"""Pieces the HTTP adapters share: options from settings, refusals, parameter picking."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from imagegate.config import Settings
from imagegate.errors import ContentPolicyViolation, InvalidParameter, UpstreamError
from imagegate.providers.base import GeneratedImage, InputImage, ProviderRequest
from imagegate.providers.http import (
    Deadline,
    ReadLimit,
    RetryPolicy,
    Sleep,
    UpstreamHTTP,
    decode_b64_checked,
    sniff_content_type,
)

log = logging.getLogger("imagegate.providers")


@dataclass(frozen=True, slots=True)
class AdapterOptions:
    """How adapters talk upstream; tests inject ``sleep`` and small intervals."""

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    connect_timeout: float = 10.0
    max_output_bytes: int = 50 * 1024 * 1024
    poll_interval: float = 1.0
    body_reads: ReadLimit = field(default_factory=lambda: ReadLimit(8))
    sleep: Sleep = asyncio.sleep
    transport: httpx.AsyncBaseTransport | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AdapterOptions:
        return cls(
            policy=RetryPolicy(
                attempts=settings.provider_retries,
                backoff_s=settings.provider_backoff_seconds,
                backoff_max_s=settings.provider_backoff_max_seconds,
                max_retry_after_s=settings.provider_max_retry_after_seconds,
            ),
            connect_timeout=settings.provider_connect_timeout_seconds,
            max_output_bytes=settings.provider_max_output_bytes,
            poll_interval=settings.provider_poll_interval_seconds,
            body_reads=ReadLimit(settings.provider_body_reads),
        )


class HTTPAdapter:
    """Base of the adapters: a named provider with one upstream HTTP client."""

    name = "http"
    #: The setting (and environment variable) to name when credentials are rejected.
    credential_hint = ""

    def __init__(self, headers: dict[str, str], options: AdapterOptions) -> None:
        self.options = options
        self.http = UpstreamHTTP(
            self.name,
            headers=headers,
            policy=options.policy,
            connect_timeout=options.connect_timeout,
            max_output_bytes=options.max_output_bytes,
            body_reads=options.body_reads,
            sleep=options.sleep,
            transport=options.transport,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def pause(self, deadline: Deadline) -> None:
        """Wait one poll interval, or less when the model's time is nearly up."""
        await self.options.sleep(min(self.options.poll_interval, deadline.remaining))

    async def image(
        self, url_or_b64: str | memoryview, deadline: Deadline, *, is_b64: bool = False
    ) -> GeneratedImage:
        """Download (or decode) one output right away and describe it.

        ``url_or_b64``: a URL, or with ``is_b64`` base64 text as a string or as the bytes
        that :func:`json_body` leaves in the answer.
        """
        if not isinstance(url_or_b64, str) and not (is_b64 and isinstance(url_or_b64, memoryview)):
            raise UpstreamError(
                f"{self.name} answered with an image that is not a string.",
                code="upstream_bad_response",
            )
        if is_b64:
            data, canonical = decode_b64_checked(url_or_b64)
            self.http.check_size(len(data))
            content_type = sniff_content_type(data, "image/png")
            b64: bytes | memoryview | None = None
            if canonical:  # nothing but the alphabet: an answer can carry it as it is
                b64 = url_or_b64.encode() if isinstance(url_or_b64, str) else url_or_b64
            return GeneratedImage(data, content_type, 0, 0, b64=b64)
        assert isinstance(url_or_b64, str)
        data, content_type = await self.http.download(url_or_b64, within=deadline.remaining)
        return GeneratedImage(data=data, content_type=content_type, width=0, height=0)

    async def cancel_quietly(self, cancel: Callable[[], Awaitable[Any]]) -> None:
        """Best-effort upstream cancel when our side gave up (timeout, job canceled)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(cancel(), timeout=5.0)


class BearerAdapter(HTTPAdapter):
    """An adapter whose upstream takes ``Authorization: Bearer <token>`` at one base URL."""

    def __init__(self, token: str, *, base_url: str, options: AdapterOptions | None = None) -> None:
        super().__init__({"Authorization": f"Bearer {token}"}, options or AdapterOptions())
        self.base_url = base_url.rstrip("/")


def refusal(provider: str, reason: str, message: str | None = None) -> ContentPolicyViolation:
    """A provider's safety refusal: 400, the provider's reason, never retried, no fallback."""
    return ContentPolicyViolation(
        message or f"{provider} refused the request: {reason}",
        extra={"provider_reason": reason, "provider": provider},
    )


def rejected_param(provider: str, param: str | None, message: str) -> InvalidParameter:
    where = f" ({param})" if param else ""
    return InvalidParameter(
        f"{provider} rejected the request{where}: {message}",
        param=param,
        extra={"provider": provider},
    )


def sized(
    image: GeneratedImage, request: ProviderRequest, revised_prompt: str | None = None
) -> GeneratedImage:
    """The image with the planned size as its fallback dimensions (the runner measures rasters)."""
    return GeneratedImage(
        data=image.data,
        content_type=image.content_type,
        width=image.width or request.width,
        height=image.height or request.height,
        revised_prompt=revised_prompt if revised_prompt is not None else request.prompt,
        b64=image.b64,
    )


def pick(params: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The listed parameters that are set (not None)."""
    return {name: params[name] for name in names if params.get(name) is not None}


def data_uri(image: InputImage) -> str:
    return f"data:{image.content_type};base64,{base64.b64encode(image.data).decode()}"


def image_ref(image: InputImage) -> str:
    """How an upstream that takes image URLs gets an input: the signed link to the
    gateway's copy where there is one (a public URL is set), else a data URI."""
    return image.url or data_uri(image)


def input_images(request: ProviderRequest, *, default_field: str = "image_urls") -> dict[str, Any]:
    """The request's input images for an upstream that takes URLs in the model's own field:
    a list for a list field (``image_urls``), one string for a single one (``image_url``)."""
    if not request.inputs:
        return {}
    refs = [image_ref(image) for image in request.inputs]
    if request.input_field is None:
        field_name = default_field if len(refs) > 1 or request.action == "edit" else "image_url"
        return {field_name: refs if field_name.endswith("s") else refs[0]}
    return {request.input_field: refs if request.input_list else refs[0]}


def b64(image: InputImage) -> str:
    return base64.b64encode(image.data).decode()
