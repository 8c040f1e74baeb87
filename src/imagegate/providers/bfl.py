"""Black Forest Labs: ``POST /v1/{model}`` with ``x-key``, then poll the returned ``polling_url``.

The polling URL's host may be another region's than the submit host; it is used as
given. ``result.sample`` expires within minutes, so it is downloaded as soon as the
task is ``Ready``. BFL makes one image per task: ``n`` images are ``n`` tasks.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from imagegate.errors import ImagegateError, TransientUpstreamError, UpstreamError
from imagegate.providers.base import GeneratedImage, ProviderRequest, ProviderResult
from imagegate.providers.common import (
    AdapterOptions,
    HTTPAdapter,
    b64,
    pick,
    refusal,
    rejected_param,
    sized,
)
from imagegate.providers.http import Deadline, auth_error, generic_error, json_body

REGIONS = ("global", "eu", "us")
MODERATED = frozenset({"Request Moderated", "Content Moderated"})
# Statuses that finish a task; anything else (Pending, and names BFL may add) means "not yet".
READY, ERROR, NOT_FOUND = "Ready", "Error", "Task not found"
# "Task not found" right after a submit can be a regional replica catching up.
NOT_FOUND_GRACE = 3

PASS_THROUGH = (
    "prompt_upsampling", "safety_tolerance", "raw", "image_prompt", "image_prompt_strength",
    "steps", "guidance", "input_image", "input_image_2", "input_image_3", "input_image_4",
    "output_format", "interval", "transparent_bg",
)  # fmt: skip
# Names the catalog's (fal-style) schemas use for the same BFL inputs.
RENAMES = {
    "num_inference_steps": "steps",
    "guidance_scale": "guidance",
    "enhance_prompt": "prompt_upsampling",
}


class BFLProvider(HTTPAdapter):
    name = "bfl"
    credential_hint = "IMAGEGATE_BFL_API_KEY (or BFL_API_KEY)"

    def __init__(
        self,
        api_key: str,
        *,
        base_urls: dict[str, str],
        region: str = "global",
        options: AdapterOptions | None = None,
    ) -> None:
        super().__init__(
            {"x-key": api_key, "accept": "application/json"}, options or AdapterOptions()
        )
        self.base_urls = {name: url.rstrip("/") for name, url in base_urls.items()}
        self.region = region

    def base_url(self, region: str | None) -> str:
        """The endpoint of a route's region (``eu``, ``us``, ``global``), else the default."""
        chosen = (region or self.region).lower()
        return self.base_urls.get(chosen, self.base_urls[self.region])

    def map_error(self, response: httpx.Response) -> ImagegateError:
        body = json_body(response)
        detail = body.get("detail") if isinstance(body, dict) else None
        if response.status_code in (401, 403):
            return auth_error(self.name, self.credential_hint, response)
        if response.status_code == 422 and isinstance(detail, list) and detail:
            first = detail[0] if isinstance(detail[0], dict) else {}
            loc = first.get("loc") or []
            param = str(loc[-1]) if loc and loc[-1] != "body" else None
            return rejected_param(self.name, param, str(first.get("msg") or detail))
        message = detail if isinstance(detail, str) else response.text[:300]
        if response.status_code == 400:
            return rejected_param(self.name, None, message)
        return generic_error(self.name, response, message)

    def body(self, request: ProviderRequest, index: int) -> dict[str, Any]:
        params = request.params
        body: dict[str, Any] = {"prompt": request.prompt or ""}
        for source, target in RENAMES.items():
            if params.get(source) is not None and target not in params:
                body[target] = params[source]
        body.update(pick(params, PASS_THROUGH))
        if "safety_tolerance" in body:
            body["safety_tolerance"] = int(body["safety_tolerance"])
        if params.get("aspect_ratio") is not None:
            body["aspect_ratio"] = params["aspect_ratio"]
        else:
            body["width"], body["height"] = request.width, request.height
        takes_input = "kontext" in request.upstream_model or "flux-2" in request.upstream_model
        if params.get("image_url") and "input_image" not in body and "image_prompt" not in body:
            body["input_image" if takes_input else "image_prompt"] = params["image_url"]
        if request.inputs and not takes_input:
            # FLUX 1.1 [pro] (ultra) is conditioned on one image: its image prompt.
            body["image_prompt"] = b64(request.inputs[0])
        elif request.inputs:
            for i, image in enumerate(request.inputs[:4]):
                body["input_image" if i == 0 else f"input_image_{i + 1}"] = b64(image)
        if request.output_format in ("jpeg", "png"):
            body["output_format"] = request.output_format
        if request.seed is not None:
            body["seed"] = request.seed + index
        return body

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        deadline = Deadline(request.timeout_s)
        tasks = await asyncio.gather(
            *(self._submit(request, i, deadline) for i in range(request.n))
        )
        await request.submitted(",".join(task_id for task_id, _, _ in tasks))
        images = await asyncio.gather(*(self._wait(request, task, deadline) for task in tasks))
        cost = [c for _, _, c in tasks if c is not None]
        usage: dict[str, Any] = {"cost": sum(cost)} if cost else {}
        return ProviderResult(
            images=list(images), provider_request_id=",".join(t[0] for t in tasks), usage=usage
        )

    async def _submit(
        self, request: ProviderRequest, index: int, deadline: Deadline
    ) -> tuple[str, str, float | None]:
        url = f"{self.base_url(request.region)}/{request.upstream_model}"
        response = await self.http.request(
            "POST",
            url,
            json=self.body(request, index),
            map_error=self.map_error,
            within=deadline.remaining,
        )
        body = json_body(response)
        if not isinstance(body, dict) or not body.get("id") or not body.get("polling_url"):
            raise UpstreamError(
                "bfl accepted the task without an id and polling_url.", code="upstream_bad_response"
            )
        cost = body.get("cost")
        return (
            str(body["id"]),
            str(body["polling_url"]),
            float(cost) if isinstance(cost, int | float) else None,
        )

    async def _wait(
        self, request: ProviderRequest, task: tuple[str, str, float | None], deadline: Deadline
    ) -> GeneratedImage:
        task_id, polling_url, _ = task
        not_found = 0
        while True:
            response = await self.http.request(
                "GET", polling_url, map_error=self.map_error, within=deadline.remaining
            )
            body = json_body(response)
            body = body if isinstance(body, dict) else {}
            status = str(body.get("status", ""))
            if status == READY:
                result = body.get("result") or {}
                sample = result.get("sample") if isinstance(result, dict) else None
                if not sample:
                    raise UpstreamError(
                        "bfl reported Ready without result.sample.", code="upstream_bad_response"
                    )
                image = await self.image(str(sample), deadline)
                return sized(
                    image, request, result.get("prompt") if isinstance(result, dict) else None
                )
            if status in MODERATED:
                raise refusal(self.name, _moderation_reason(status, body))
            if status == ERROR:
                raise TransientUpstreamError(
                    f"bfl failed the task {task_id}: {body.get('details') or 'Error'}",
                    code="upstream_error",
                    extra={"provider": self.name},
                )
            if status == NOT_FOUND:
                not_found += 1
                if not_found >= NOT_FOUND_GRACE:
                    raise TransientUpstreamError(
                        f"bfl lost the task {task_id} (Task not found).",
                        code="upstream_error",
                        extra={"provider": self.name},
                    )
            await self.pause(deadline)

    async def check(self, within: float) -> None:
        """Reads the account's credits: answers without generating anything."""
        await self.http.request(
            "GET",
            f"{self.base_url(None)}/credits",
            map_error=self.map_error,
            within=within,
            retry=False,
        )


def _moderation_reason(status: str, body: dict[str, Any]) -> str:
    details = body.get("details")
    reasons: list[str] = []
    if isinstance(details, dict):
        for value in details.values():
            if isinstance(value, list):
                reasons.extend(str(v) for v in value)
            elif value:
                reasons.append(str(value))
    return f"{status}: {', '.join(reasons)}" if reasons else status
