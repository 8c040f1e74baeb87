"""Imagen on Vertex AI:
``POST {base}/projects/{p}/locations/{loc}/publishers/google/models/{m}:predict``
on a regional endpoint (``https://{loc}-aiplatform.googleapis.com/v1``), with a bearer token.

The token is either given (``IMAGEGATE_VERTEX_ACCESS_TOKEN``) or minted from a
service-account file with google-auth (``pip install 'imagegate[vertex]'``).
Filtered outputs come back as ``raiFilteredReason``; when every one is filtered, that is
a refusal.
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Any, Protocol

import httpx

from imagegate.errors import ImagegateError, ProviderNotConfigured, UpstreamError
from imagegate.providers.base import ProviderRequest, ProviderResult
from imagegate.providers.common import AdapterOptions, HTTPAdapter, pick, refusal, sized
from imagegate.providers.google import map_google_error
from imagegate.providers.http import Deadline, json_body

# Route regions as the catalog writes them, to Vertex locations.
LOCATIONS = {"eu": "europe-west4", "us": "us-central1"}
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
PARAMETERS = (
    "negativePrompt", "enhancePrompt", "personGeneration", "safetySetting", "addWatermark",
    "sampleImageSize", "language", "aspectRatio",
)  # fmt: skip
RENAMES = {
    "negative_prompt": "negativePrompt",
    "enhance_prompt": "enhancePrompt",
    "person_generation": "personGeneration",
    "safety_setting": "safetySetting",
    "add_watermark": "addWatermark",
    "aspect_ratio": "aspectRatio",
    "resolution": "sampleImageSize",
    "image_size": "sampleImageSize",
}
MIME = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}


class TokenSource(Protocol):
    async def token(self) -> str: ...


class StaticToken:
    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token


class ServiceAccountToken:
    """Access tokens minted from a service-account file, refreshed before they expire."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._credentials: Any = None
        self._lock = asyncio.Lock()

    def _load(self) -> Any:
        try:
            service_account = importlib.import_module("google.oauth2.service_account")
            importlib.import_module("google.auth.transport.requests")
        except ImportError as exc:
            raise ProviderNotConfigured(
                "Vertex AI service-account files need google-auth "
                "(pip install 'imagegate[vertex]'), "
                "or set IMAGEGATE_VERTEX_ACCESS_TOKEN instead.",
                extra={"provider": "vertex"},
            ) from exc
        return service_account.Credentials.from_service_account_file(str(self.path), scopes=SCOPES)

    def _refresh(self) -> str:
        if self._credentials is None:
            self._credentials = self._load()
        credentials = self._credentials
        # ``valid`` is false without a token and a few minutes before it expires.
        if not credentials.valid:
            transport = importlib.import_module("google.auth.transport.requests")
            credentials.refresh(transport.Request())
        return str(credentials.token)

    async def token(self) -> str:
        async with self._lock:
            return await asyncio.to_thread(self._refresh)


class VertexProvider(HTTPAdapter):
    name = "vertex"
    credential_hint = "IMAGEGATE_VERTEX_ACCESS_TOKEN or IMAGEGATE_VERTEX_CREDENTIALS_FILE"

    def __init__(
        self,
        tokens: TokenSource,
        *,
        project: str,
        location: str,
        base_url: str | None = None,
        options: AdapterOptions | None = None,
    ) -> None:
        super().__init__({}, options or AdapterOptions())
        self.tokens = tokens
        self.project = project
        self.location = location
        self.base_url = base_url.rstrip("/") if base_url else None

    def map_error(self, response: httpx.Response) -> ImagegateError:
        return map_google_error(self.name, self.credential_hint, response)

    def location_for(self, region: str | None) -> str:
        if not region or region == "global":
            return self.location
        return LOCATIONS.get(region, region)

    def endpoint(self, location: str) -> str:
        return self.base_url or f"https://{location}-aiplatform.googleapis.com/v1"

    def body(self, request: ProviderRequest) -> dict[str, Any]:
        params = dict(request.params)
        for source, target in RENAMES.items():
            if params.get(source) is not None and target not in params:
                params[target] = params[source]
        parameters: dict[str, Any] = {"sampleCount": request.n, "includeRaiReason": True}
        parameters.update(pick(params, PARAMETERS))
        if request.seed is not None:
            parameters["seed"] = request.seed
        mime = MIME.get(request.output_format)
        if mime:
            options: dict[str, Any] = {"mimeType": mime}
            if params.get("output_compression") is not None and mime == "image/jpeg":
                options["compressionQuality"] = params["output_compression"]
            parameters["outputOptions"] = options
        return {"instances": [{"prompt": request.prompt or ""}], "parameters": parameters}

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        if request.inputs or request.mask is not None:
            # Vertex's predict call here takes a prompt only: never drop an image silently.
            # Not a refusal of the request: the model's next route may take images.
            raise UpstreamError(
                f"vertex: the route to {request.upstream_model} takes no input images.",
                code="upstream_error",
                extra={"provider": self.name},
            )
        deadline = Deadline(request.timeout_s)
        location = self.location_for(request.region)
        url = (
            f"{self.endpoint(location)}/projects/{self.project}/locations/{location}"
            f"/publishers/google/models/{request.upstream_model}:predict"
        )
        token = await self.tokens.token()
        response = await self.http.request(
            "POST",
            url,
            json=self.body(request),
            headers={"Authorization": f"Bearer {token}"},
            map_error=self.map_error,
            within=deadline.remaining,
        )
        body = json_body(response, images="bytesBase64Encoded")
        if not isinstance(body, dict):
            raise UpstreamError("vertex answered without JSON.", code="upstream_bad_response")
        predictions = [p for p in body.get("predictions") or [] if isinstance(p, dict)]
        images = []
        filtered = []
        for prediction in predictions:
            if prediction.get("bytesBase64Encoded"):
                image = await self.image(prediction["bytesBase64Encoded"], deadline, is_b64=True)
                images.append(sized(image, request, prediction.get("prompt")))
            elif prediction.get("raiFilteredReason"):
                filtered.append(str(prediction["raiFilteredReason"]))
        if not images:
            if filtered:
                raise refusal(self.name, filtered[0])
            raise refusal(self.name, "every output was filtered by Vertex AI's safety filters")
        usage: dict[str, Any] = {"filtered": len(filtered)} if filtered else {}
        return ProviderResult(images=images, provider_request_id=None, usage=usage)

    async def check(self, within: float) -> None:
        """Reads the project's location: authenticated, free."""
        token = await self.tokens.token()
        await self.http.request(
            "GET",
            f"{self.endpoint(self.location)}/projects/{self.project}/locations/{self.location}",
            headers={"Authorization": f"Bearer {token}"},
            map_error=self.map_error,
            within=within,
            retry=False,
        )
