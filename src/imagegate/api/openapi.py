"""What ``/openapi.json`` says beyond the routes' signatures: the one error shape and the
error statuses each router can answer, the bodies that routes read themselves, and the
full ``Allow`` list of a 405.

Each router names its error statuses once (``APIRouter(responses=errors(...))``), so a
route added to it is described with them; a route with statuses of its own adds them
with ``responses=errors(...)`` too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import BaseRoute, Route, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ErrorDetail(BaseModel):
    """OpenAI's error object; some errors add fields (``job_id``, ``provider_reason``)."""

    model_config = ConfigDict(extra="allow")

    message: str = Field(description="What went wrong, and what to change.")
    type: str = Field(description="invalid_request_error, authentication_error, … .")
    param: str | None = Field(description="The offending parameter, when there is one.")
    code: str | None = Field(description="A stable code: model_not_found, … .")


class ErrorBody(BaseModel):
    """Every error the gateway answers has this shape."""

    error: ErrorDetail


_MEANINGS = {
    400: "Bad input: the message says what to change.",
    401: "Missing, invalid or revoked API key.",
    402: "The estimated cost does not fit the workspace's available credits.",
    403: "The caller's role, the workspace's rules or the link's signature forbid it.",
    404: "No such thing that this caller may see.",
    405: "The path does not take this method; Allow lists those it takes.",
    409: "Conflicts with the current state (a request still in flight, a rule).",
    410: "Gone: what was asked for is not kept.",
    413: "The request body (or an uploaded file) is too large.",
    415: "The request body's media type is not one this endpoint reads.",
    422: "This Idempotency-Key was already used with a different request.",
    500: "A bug, or a job failed for a reason of the gateway's own.",
    502: "The upstream provider answered wrongly.",
    503: "The gateway is busy (Retry-After) or the provider is unavailable.",
    504: "The generation did not finish in time; its job may still be polled.",
}

# Every route can answer these: a body over the limit, a busy database, a bug.
_ANYWHERE = (413, 500, 503)


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses (and those of every route), each
    with the one error shape."""
    return {
        status: {"model": ErrorBody, "description": _MEANINGS[status]}
        for status in sorted({*statuses, *_ANYWHERE})
    }


# What routes with an API key can answer on top of their own.
AUTHENTICATED = (400, 401)


# What a route that creates a job can answer on top of AUTHENTICATED.
GENERATION_ERRORS = (402, 403, 404, 409, 410, 422, 502, 504)

_WRAPPER = {
    "mock": {"type": "boolean", "description": "A free placeholder image, no provider call."},
    "format": {
        "type": "string",
        "description": "shorts, reels or horizontal: mapped to the model's own size field.",
    },
    "sync_mode": {
        "type": "boolean",
        "description": "Images answered inline and not kept; needs a waiting request.",
    },
    "webhook_url": {
        "type": "string",
        "description": "Where the job's end is POSTed (public http(s) URLs only).",
    },
    "idempotency_key": {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "description": "Same as the Idempotency-Key header.",
    },
}

JOB_BODY: dict[str, Any] = {
    "type": "object",
    "description": "The model's own parameters (their JSON Schema: GET /v1/models/{slug}, "
    "input_schema), plus the wrapper parameters below.",
    "properties": {
        **_WRAPPER,
        "reference_files": {"type": "array", "items": {"type": "string"}},
        "mask_file": {"type": "string"},
    },
    "additionalProperties": True,
}

_OPENAI_IMAGE = {
    "prompt": {"type": "string", "minLength": 1},
    "model": {"type": "string", "description": "A model's slug or alias; default: the caller's."},
    "n": {"type": "integer", "minimum": 1},
    "size": {"type": "string", "description": "WIDTHxHEIGHT (e.g. 1024x1024) or auto."},
    "response_format": {"type": "string", "enum": ["url", "b64_json"]},
    "tier": {"type": "string", "description": "draft, fine, photo, … instead of a model."},
    "use_case": {"type": "string"},
    **_WRAPPER,
}

IMAGES_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["prompt"],
    "description": "OpenAI's Images API body; other fields are the model's own parameters.",
    "properties": _OPENAI_IMAGE,
    "additionalProperties": True,
}

_SOURCE_TEXT = {
    "type": "string",
    "description": "A file id (file_…), a data URI (data:image/png;base64,…) or an http(s) URL.",
    "pattern": "^(file_[A-Za-z0-9]{1,60}$|[Dd][Aa][Tt][Aa]:|[Hh][Tt][Tt][Pp][Ss]?://)",
}
_SOURCE = {
    "description": "A source image: as text, or as {file_id} or {image_url}.",
    "anyOf": [
        _SOURCE_TEXT,
        {
            "type": "object",
            "required": ["file_id"],
            "properties": {"file_id": _SOURCE_TEXT},
            "additionalProperties": False,
        },
        {
            "type": "object",
            "required": ["image_url"],
            "properties": {"image_url": _SOURCE_TEXT},
            "additionalProperties": False,
        },
    ],
}

EDITS_JSON_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["prompt", "images"],
    "properties": {
        **_OPENAI_IMAGE,
        "images": {"type": "array", "minItems": 1, "maxItems": 16, "items": _SOURCE},
        "mask": _SOURCE,
    },
    "additionalProperties": True,
}

EDITS_MULTIPART_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["prompt", "image"],
    "properties": {
        **{name: value for name, value in _OPENAI_IMAGE.items() if name != "prompt"},
        "prompt": {"type": "string", "minLength": 1},
        "image": {"type": "string", "format": "binary"},
        "mask": {"type": "string", "format": "binary"},
    },
}


# The headers of every POST that creates work (docs/api.md: Idempotency, Jobs).
CREATES_WORK: dict[str, Any] = {
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "The same key with the same request gives the same job, once.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        },
        {
            "name": "Prefer",
            "in": "header",
            "required": False,
            "description": "respond-async (answer 202 with the job at once), or wait=N "
            "(wait up to N seconds for the job), as in RFC 7240.",
            "schema": {"type": "string"},
        },
    ]
}

_DRY_RUN = {
    "name": "dry_run",
    "in": "query",
    "required": False,
    "description": "true: answer what the request would cost and yield; generate nothing.",
    "schema": {"type": "boolean"},
}


def creating_work(body: dict[str, Any], *, estimates: bool = False) -> dict[str, Any]:
    """``openapi_extra`` of a POST that creates work: its body and its headers."""
    parameters = [*CREATES_WORK["parameters"], *([_DRY_RUN] if estimates else [])]
    return {**body, "parameters": parameters}


UPSCALE_JSON_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["image"],
    "description": "The image to upscale; other fields are the upscaler's own parameters.",
    "properties": {
        "image": _SOURCE_TEXT,
        "image_url": _SOURCE_TEXT,
        "model": {"type": "string", "description": "Default: the catalog's upscaler."},
        "upscale_factor": {"type": "number", "exclusiveMinimum": 0},
        "response_format": {"type": "string", "enum": ["url", "b64_json"]},
        **_WRAPPER,
    },
    "additionalProperties": True,
}

UPSCALE_MULTIPART_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["image"],
    "properties": {
        "image": {"type": "string", "format": "binary"},
        "model": {"type": "string"},
        "upscale_factor": {"type": "number", "exclusiveMinimum": 0},
        "response_format": {"type": "string", "enum": ["url", "b64_json"]},
    },
}


def json_body(schema: dict[str, Any] | type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads a JSON body itself."""
    if isinstance(schema, type):
        schema = schema.model_json_schema(ref_template="#/components/schemas/{model}")
    return {
        "requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}
    }


def request_body(content: dict[str, dict[str, Any]], *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads a body of several media types itself."""
    return {
        "requestBody": {
            "required": required,
            "content": {media: {"schema": schema} for media, schema in content.items()},
        }
    }


def describe_as_answered(app: FastAPI) -> None:
    """Serve the spec as the gateway answers: bearer keys, no framework 422 (a bad
    parameter is our 400), and the schemas that request bodies refer to."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = _as_answered(spec, app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_FRAMEWORK_422 = "#/components/schemas/HTTPValidationError"


# Text never carries NUL characters: the gateway refuses them in paths, queries and
# bodies (no database stores them), so the spec says so of every string it takes.
_NO_NUL = "^[^\\x00]*$"


def _no_nul(schema: Any) -> None:
    if isinstance(schema, list):
        for item in schema:
            _no_nul(item)
        return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    is_text = kind == "string" or (isinstance(kind, list) and "string" in kind)
    if is_text and not {"pattern", "enum", "const", "format"} & set(schema):
        schema["pattern"] = _NO_NUL
    for key in ("properties", "patternProperties", "$defs"):
        for child in schema.get(key, {}).values():
            _no_nul(child)
    for key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf"):
        if key in schema:
            _no_nul(schema[key])


def _list_this_gateways_providers(spec: dict[str, Any], app: FastAPI) -> None:
    """The ``provider`` filter of ``GET /v1/models`` takes this gateway's catalog's."""
    gateway = getattr(app.state, "gateway", None)
    operation = spec.get("paths", {}).get("/v1/models", {}).get("get")
    if gateway is None or operation is None:
        return
    providers = sorted({name for model in gateway.catalog for name in model.providers})
    for parameter in operation.get("parameters", []):
        if parameter["name"] == "provider":
            parameter["schema"] = {
                "anyOf": [{"type": "string", "enum": providers}, {"type": "null"}]
            }


def _as_answered(spec: dict[str, Any], app: FastAPI) -> dict[str, Any]:
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for path in spec.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {})
            framework = responses.get("422", {}).get("content", {}).get("application/json", {})
            if framework.get("schema", {}).get("$ref") == _FRAMEWORK_422:
                del responses["422"]
            body = operation.get("requestBody", {}).get("content", {})
            for media in body.values():
                schemas.update(media.get("schema", {}).pop("$defs", {}))
    for path in spec.get("paths", {}).values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                _no_nul(parameter.get("schema", {}))
            for media in operation.get("requestBody", {}).get("content", {}).values():
                _no_nul(media.get("schema", {}))
    _list_this_gateways_providers(spec, app)
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "An API key, ig_…"}
    }
    spec["security"] = [{"bearer": []}]
    return spec


class FullAllow:
    """A 405 lists every method the path has: the router answers one with the methods of
    the first route whose path matched (here: none at all), while each method of a path
    is a route of its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._paths: list[tuple[re.Pattern[str], int, set[str]]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allowed = ", ".join(self.allowed_methods(scope))
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message = {**message, "headers": [*headers, (b"allow", allowed.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_allow)

    def allowed_methods(self, scope: Scope) -> list[str]:
        """Every method of the path: of the routes whose path matches it most exactly
        (``/image-models/default`` is a path of its own, not ``/image-models/{slug}``)."""
        if self._paths is None:
            app = scope.get("app")
            self._paths = list(_route_paths(getattr(app, "routes", [])))
        matching = [
            (params, methods)
            for regex, params, methods in self._paths
            if regex.match(scope["path"])
        ]
        if not matching:
            return []
        fewest = min(params for params, _ in matching)
        return sorted({m for params, methods in matching if params == fewest for m in methods})


def _route_paths(
    routes: Sequence[BaseRoute], prefix: str = ""
) -> Iterator[tuple[re.Pattern[str], int, set[str]]]:
    """(path regex, how many parameters, methods) of every route, in included routers too."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from _route_paths(inner.routes, prefix + getattr(context, "prefix", ""))
        elif isinstance(route, Route):
            regex, _, convertors = compile_path(prefix + route.path)
            yield regex, len(convertors), set(route.methods or ())
