"""Replicate predictions: create with ``Prefer: wait``, poll ``urls.get`` until it ends,
download outputs at once (their URLs expire), ``POST …/cancel`` when we give up.

``owner/name`` routes run the model's latest version (``POST /models/{owner}/{name}/predictions``);
``owner/name:version`` routes pin a version (``POST /predictions`` with ``version``).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx

from imagegate.errors import ImagegateError, TransientUpstreamError, UpstreamError
from imagegate.providers.base import ProviderRequest, ProviderResult
from imagegate.providers.common import (
    BearerAdapter,
    input_images,
    refusal,
    rejected_param,
    sized,
)
from imagegate.providers.http import Deadline, auth_error, generic_error, json_body

RUNNING = frozenset({"starting", "processing"})
SUCCEEDED, FAILED, CANCELED = "succeeded", "failed", "canceled"
MAX_WAIT_S = 60  # the most Replicate holds a request open with Prefer: wait
# How Replicate and the models it hosts word a safety refusal.
REFUSAL = re.compile(r"nsfw|flagged as sensitive|\bE005\b|safety|content policy", re.IGNORECASE)


class ReplicateProvider(BearerAdapter):
    name = "replicate"
    credential_hint = "IMAGEGATE_REPLICATE_API_TOKEN (or REPLICATE_API_TOKEN)"

    def map_error(self, response: httpx.Response) -> ImagegateError:
        body = json_body(response)
        body = body if isinstance(body, dict) else {}
        detail = str(body.get("detail") or body.get("title") or response.text[:300])
        if response.status_code in (401, 403):
            return auth_error(self.name, self.credential_hint, response)
        if response.status_code in (400, 422):
            fields = body.get("invalid_fields")
            if isinstance(fields, list) and fields and isinstance(fields[0], dict):
                first = fields[0]
                param = str(first["field"]).removeprefix("input.") if first.get("field") else None
                return rejected_param(self.name, param, str(first.get("description") or detail))
            if REFUSAL.search(detail):
                return refusal(self.name, detail)
            return rejected_param(self.name, None, detail)
        return generic_error(self.name, response, detail)

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        deadline = Deadline(request.timeout_s)
        wait = max(1, min(MAX_WAIT_S, int(request.timeout_s)))
        model, _, version = request.upstream_model.partition(":")
        inputs = {k: v for k, v in request.params.items() if v is not None}
        inputs.update(input_images(request))
        body: dict[str, Any] = {"input": inputs}
        if version:
            url = f"{self.base_url}/predictions"
            body["version"] = version
        else:
            url = f"{self.base_url}/models/{model}/predictions"
        response = await self.http.request(
            "POST",
            url,
            json=body,
            headers={"Prefer": f"wait={wait}"},
            map_error=self.map_error,
            within=deadline.remaining,
        )
        prediction = json_body(response)
        if not isinstance(prediction, dict) or not prediction.get("id"):
            raise UpstreamError(
                "replicate answered without a prediction id.", code="upstream_bad_response"
            )
        prediction_id = str(prediction["id"])
        await request.submitted(prediction_id)
        try:
            while prediction.get("status") in RUNNING:
                await self.pause(deadline)
                get_url = (prediction.get("urls") or {}).get(
                    "get"
                ) or f"{self.base_url}/predictions/{prediction_id}"
                polled = await self.http.request(
                    "GET", get_url, map_error=self.map_error, within=deadline.remaining
                )
                prediction = json_body(polled) or {}
        except asyncio.CancelledError:
            await self.cancel_quietly(lambda: self.cancel(prediction_id, request.upstream_model))
            raise
        return await self._result(request, prediction_id, prediction, deadline)

    async def _result(
        self,
        request: ProviderRequest,
        prediction_id: str,
        prediction: dict[str, Any],
        deadline: Deadline,
    ) -> ProviderResult:
        status = prediction.get("status")
        if status == FAILED:
            error = str(prediction.get("error") or "failed")
            if REFUSAL.search(error):
                raise refusal(self.name, error)
            raise TransientUpstreamError(
                f"replicate prediction {prediction_id} failed: {error}",
                code="upstream_error",
                extra={"provider": self.name},
            )
        if status != SUCCEEDED:
            raise UpstreamError(
                f"replicate prediction {prediction_id} ended {status}.",
                code="upstream_canceled" if status == CANCELED else "upstream_error",
                extra={"provider": self.name},
            )
        output = prediction.get("output")
        urls = (
            [output]
            if isinstance(output, str)
            else [u for u in (output or []) if isinstance(u, str)]
        )
        images = [sized(await self.image(url, deadline), request) for url in urls]
        usage = (
            {"metrics": prediction["metrics"]}
            if isinstance(prediction.get("metrics"), dict)
            else {}
        )
        return ProviderResult(images=images, provider_request_id=prediction_id, usage=usage)

    async def cancel(self, provider_request_id: str, upstream_model: str) -> bool:
        """``POST /predictions/{id}/cancel``."""
        response = await self.http.client.post(
            f"{self.base_url}/predictions/{provider_request_id}/cancel",
            headers=self.http.headers,
            timeout=5.0,
        )
        return response.is_success

    async def check(self, within: float) -> None:
        """Reads the account: authenticated, free."""
        await self.http.request(
            "GET",
            f"{self.base_url}/account",
            map_error=self.map_error,
            within=within,
            retry=False,
        )
