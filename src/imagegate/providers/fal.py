"""fal: the queue API. Submit to ``POST {queue}/{model_id}`` with ``Authorization: Key``,
poll ``status_url`` (``?logs=1``: logs and queue position), fetch ``response_url``,
and ``PUT cancel_url`` when we give up.

A model id may carry a subpath (``fal-ai/flux/schnell``); status, result and cancel
live under the app id only (``fal-ai/flux``). The URLs fal returns are used as given;
they are rebuilt from the app id only to cancel a request known by its id alone.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from imagegate.errors import ImagegateError, TransientUpstreamError, UpstreamError
from imagegate.providers.base import ProviderRequest, ProviderResult
from imagegate.providers.common import (
    AdapterOptions,
    HTTPAdapter,
    input_images,
    refusal,
    rejected_param,
    sized,
)
from imagegate.providers.http import Deadline, auth_error, generic_error, json_body

log = logging.getLogger("imagegate.providers.fal")

IN_QUEUE, IN_PROGRESS, COMPLETED = "IN_QUEUE", "IN_PROGRESS", "COMPLETED"
FAILED = frozenset({"FAILED", "ERROR", "CANCELED", "CANCELLED"})


def app_id(model_id: str) -> str:
    """``fal-ai/flux/schnell`` → ``fal-ai/flux``: where the queue keeps the request."""
    parts = model_id.strip("/").split("/")
    return "/".join(parts[:2])


class FalProvider(HTTPAdapter):
    name = "fal"
    credential_hint = "IMAGEGATE_FAL_KEY (or FAL_KEY)"

    def __init__(
        self,
        api_key: str,
        *,
        queue_url: str,
        api_url: str = "https://api.fal.ai/v1",
        options: AdapterOptions | None = None,
    ) -> None:
        super().__init__({"Authorization": f"Key {api_key}"}, options or AdapterOptions())
        self.queue_url = queue_url.rstrip("/")
        self.api_url = api_url.rstrip("/")

    def map_error(self, response: httpx.Response) -> ImagegateError:
        body = json_body(response)
        detail = body.get("detail") if isinstance(body, dict) else body
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            for item in detail:
                if item.get("type") == "content_policy_violation":
                    categories = item.get("categories") or []
                    reason = str(item.get("msg") or "content policy violation")
                    if categories:
                        reason = f"{reason} ({', '.join(map(str, categories))})"
                    return refusal(self.name, reason)
            first = detail[0]
            loc = first.get("loc") or []
            param = str(loc[-1]) if loc and loc[-1] != "body" else None
            return rejected_param(self.name, param, str(first.get("msg") or first))
        if response.status_code in (401, 403):
            return auth_error(self.name, self.credential_hint, response)
        message = detail if isinstance(detail, str) else response.text[:300]
        if response.status_code in (400, 422):
            return rejected_param(self.name, None, message)
        return generic_error(self.name, response, message)

    def body(self, request: ProviderRequest) -> dict[str, Any]:
        body = {key: value for key, value in request.params.items() if value is not None}
        body.update(input_images(request))
        return body

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        deadline = Deadline(request.timeout_s)
        response = await self.http.request(
            "POST",
            f"{self.queue_url}/{request.upstream_model.strip('/')}",
            json=self.body(request),
            map_error=self.map_error,
            within=deadline.remaining,
        )
        queued = json_body(response)
        if not isinstance(queued, dict) or not queued.get("request_id"):
            raise UpstreamError(
                "fal queued the request without a request_id.", code="upstream_bad_response"
            )
        request_id = str(queued["request_id"])
        base = f"{self.queue_url}/{app_id(request.upstream_model)}/requests/{request_id}"
        status_url = str(queued.get("status_url") or f"{base}/status")
        response_url = str(queued.get("response_url") or base)
        cancel_url = str(queued.get("cancel_url") or f"{base}/cancel")
        await request.submitted(request_id)
        try:
            logs = await self._wait(status_url, request_id, deadline)
            result = await self.http.request(
                "GET", response_url, map_error=self.map_error, within=deadline.remaining
            )
        except asyncio.CancelledError:
            await self.cancel_quietly(lambda: self._cancel_url(cancel_url))
            raise
        return await self._result(request, request_id, json_body(result), logs, deadline)

    async def _wait(
        self, status_url: str, request_id: str, deadline: Deadline
    ) -> list[dict[str, Any]]:
        logs: list[dict[str, Any]] = []
        while True:
            response = await self.http.request(
                "GET",
                status_url,
                params={"logs": 1},
                map_error=self.map_error,
                within=deadline.remaining,
            )
            body = json_body(response)
            body = body if isinstance(body, dict) else {}
            status = str(body.get("status", ""))
            new_logs = body.get("logs") or []
            if isinstance(new_logs, list):
                for entry in new_logs[len(logs) :]:
                    if isinstance(entry, dict):
                        log.debug("fal %s: %s", request_id, entry.get("message"))
                logs = [entry for entry in new_logs if isinstance(entry, dict)]
            if status == IN_QUEUE:
                log.debug("fal %s: queue position %s", request_id, body.get("queue_position"))
            if status == COMPLETED:
                if body.get("error"):
                    raise self._failure(request_id, body)
                return logs
            if status in FAILED:
                raise self._failure(request_id, body)
            await self.pause(deadline)

    def _failure(self, request_id: str, body: dict[str, Any]) -> ImagegateError:
        error_type = str(body.get("error_type") or "")
        message = str(body.get("error") or body.get("status"))
        if error_type == "content_policy_violation":
            return refusal(self.name, message)
        return TransientUpstreamError(
            f"fal failed the request {request_id}: {message}",
            code="upstream_error",
            extra={"provider": self.name},
        )

    async def _result(
        self,
        request: ProviderRequest,
        request_id: str,
        body: Any,
        logs: list[dict[str, Any]],
        deadline: Deadline,
    ) -> ProviderResult:
        if not isinstance(body, dict):
            raise UpstreamError(
                "fal answered the result without JSON.", code="upstream_bad_response"
            )
        outputs = body.get("images")
        if outputs is None and isinstance(body.get("image"), dict):
            outputs = [body["image"]]
        if not isinstance(outputs, list):
            raise UpstreamError("fal's result holds no images.", code="upstream_bad_response")
        flags = body.get("has_nsfw_concepts") or []
        kept = [item for i, item in enumerate(outputs) if not (i < len(flags) and flags[i])]
        if outputs and not kept:
            raise refusal(self.name, "the safety checker flagged every output (has_nsfw_concepts)")
        revised = body.get("prompt") if isinstance(body.get("prompt"), str) else None
        images = []
        for item in kept:
            url = item.get("url") if isinstance(item, dict) else None
            if not url:
                continue
            image = await self.image(str(url), deadline)
            images.append(sized(image, request, revised))
        usage: dict[str, Any] = {}
        if "seed" in body:
            usage["seed"] = body["seed"]
        if isinstance(body.get("timings"), dict):
            usage["timings"] = body["timings"]
        if len(kept) < len(outputs):
            usage["filtered"] = len(outputs) - len(kept)
        if logs:
            usage["logs"] = [str(entry.get("message", "")) for entry in logs][-20:]
        return ProviderResult(images=images, provider_request_id=request_id, usage=usage)

    async def _cancel_url(self, url: str) -> bool:
        response = await self.http.client.put(url, headers=self.http.headers, timeout=5.0)
        return response.status_code in (200, 202)

    async def cancel(self, provider_request_id: str, upstream_model: str) -> bool:
        """``PUT …/requests/{id}/cancel``; True if fal accepted (it was still queued)."""
        url = f"{self.queue_url}/{app_id(upstream_model)}/requests/{provider_request_id}/cancel"
        return await self._cancel_url(url)

    async def check(self, within: float) -> None:
        """Lists one model on fal's platform API: authenticated, free."""
        await self.http.request(
            "GET",
            f"{self.api_url}/models",
            params={"limit": 1},
            map_error=self.map_error,
            within=within,
            retry=False,
        )
