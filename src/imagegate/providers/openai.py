"""OpenAI Images: ``POST /images/generations`` (JSON) and ``POST /images/edits`` (multipart)."""

from __future__ import annotations

from typing import Any

import httpx

from imagegate.errors import ImagegateError, UpstreamError
from imagegate.providers.base import GeneratedImage, ProviderRequest, ProviderResult
from imagegate.providers.common import (
    BearerAdapter,
    pick,
    refusal,
    rejected_param,
    sized,
)
from imagegate.providers.http import Deadline, auth_error, generic_error, json_body

GENERATION_FIELDS = (
    "size", "quality", "style", "background", "moderation", "output_format",
    "output_compression", "user",
)  # fmt: skip
EDIT_FIELDS = (
    "size", "quality", "background", "output_format", "output_compression", "input_fidelity",
    "user",
)  # fmt: skip
REFUSAL_CODES = frozenset({"moderation_blocked", "content_policy_violation", "content_filter"})
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


def _takes_response_format(model: str) -> bool:
    # GPT Image models always answer base64 and reject the field; DALL·E takes it.
    return model.startswith("dall-e")


# DALL·E 3 rewrites every prompt and its API has no switch for it; OpenAI's DALL·E 3 guide
# gives this preface to keep a prompt as written. ``prompt_revision: false`` sends it.
KEEP_PROMPT = (
    "I NEED to test how the tool works with extremely simple prompts. "
    "DO NOT add any detail, just use it AS-IS: "
)


class OpenAIProvider(BearerAdapter):
    name = "openai"
    credential_hint = "IMAGEGATE_OPENAI_API_KEY (or OPENAI_API_KEY)"
    # Whether the upstream takes ``response_format`` for this model (asked as b64_json).
    takes_response_format = staticmethod(_takes_response_format)

    def map_error(self, response: httpx.Response) -> ImagegateError:
        body = json_body(response)
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        message = str(error.get("message") or response.text[:300])
        code = error.get("code")
        if code in REFUSAL_CODES or (
            error.get("type") == "image_generation_user_error" and "safety" in message.lower()
        ):
            return refusal(self.name, message)
        if response.status_code in (401, 403):
            return auth_error(self.name, self.credential_hint, response)
        if response.status_code == 404:
            return UpstreamError(
                f"{self.name}: {message}",
                code="upstream_model_not_found",
                extra={"provider": self.name},
            )
        if response.status_code in (400, 422):
            return rejected_param(self.name, error.get("param"), message)
        return generic_error(self.name, response, message)

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        deadline = Deadline(request.timeout_s)
        if request.action == "edit" or request.inputs:
            response = await self._edit(request, deadline)
        else:
            response = await self._generate(request, deadline)
        # The id comes with the result, which the runner records with the outcome: noting it
        # on its own first would cost a database write per image and let nothing be canceled.
        request_id = response.headers.get("x-request-id")
        body = json_body(response, images="b64_json")
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise UpstreamError(
                f"{self.name} answered without image data.", code="upstream_bad_response"
            )
        images: list[GeneratedImage] = []
        for item in body["data"]:
            if item.get("b64_json"):
                image = await self.image(item["b64_json"], deadline, is_b64=True)
            elif item.get("url"):
                image = await self.image(item["url"], deadline)
            else:
                continue
            images.append(sized(image, request, item.get("revised_prompt") or request.prompt))
        usage: dict[str, Any] = dict(body.get("usage") or {})
        for key in ("background", "output_format", "quality", "size"):
            if key in body:
                usage.setdefault("response", {})[key] = body[key]
        return ProviderResult(images=images, provider_request_id=request_id, usage=usage)

    def _common(self, request: ProviderRequest, fields: tuple[str, ...]) -> dict[str, Any]:
        prompt = request.prompt or ""
        if request.params.get("prompt_revision") is False:
            prompt = KEEP_PROMPT + prompt
        body: dict[str, Any] = {"model": request.upstream_model, "prompt": prompt}
        body.update(pick(request.params, fields))
        body["n"] = request.n
        if self.takes_response_format(request.upstream_model):
            body["response_format"] = "b64_json"
        return body

    async def _generate(self, request: ProviderRequest, deadline: Deadline) -> httpx.Response:
        body = self._common(request, GENERATION_FIELDS)
        return await self.http.request(
            "POST",
            f"{self.base_url}/images/generations",
            json=body,
            map_error=self.map_error,
            within=deadline.remaining,
        )

    async def _edit(self, request: ProviderRequest, deadline: Deadline) -> httpx.Response:
        fields = self._common(request, EDIT_FIELDS)
        data = {key: str(value) for key, value in fields.items()}
        field_name = "image" if request.upstream_model == "dall-e-2" else "image[]"
        files: list[tuple[str, tuple[str, bytes, str]]] = [
            (
                field_name,
                (
                    f"image-{i}.{EXTENSIONS.get(img.content_type, 'png')}",
                    img.data,
                    img.content_type,
                ),
            )
            for i, img in enumerate(request.inputs)
        ]
        if request.mask is not None:
            files.append(("mask", ("mask.png", request.mask.data, request.mask.content_type)))
        return await self.http.request(
            "POST",
            f"{self.base_url}/images/edits",
            data=data,
            files=files,
            map_error=self.map_error,
            within=deadline.remaining,
        )

    async def check(self, within: float) -> None:
        """Lists models: answers without generating (or spending) anything."""
        await self.http.request(
            "GET", f"{self.base_url}/models", map_error=self.map_error, within=within, retry=False
        )


class XAIProvider(OpenAIProvider):
    """xAI's image API: OpenAI's Images API shape at its own base URL with its own key
    (``POST /images/generations`` with ``model``, ``prompt``, ``n``, ``response_format``;
    the size is fixed by the model)."""

    name = "xai"
    credential_hint = "IMAGEGATE_XAI_API_KEY (or XAI_API_KEY)"
    takes_response_format = staticmethod(lambda model: True)

    def _common(self, request: ProviderRequest, fields: tuple[str, ...]) -> dict[str, Any]:
        return super()._common(request, ())
