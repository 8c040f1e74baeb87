"""The MCP server: the tools ``image`` and ``image_models`` and the ``imagegate://``
resources, on the SDK's low-level ``Server`` (so the schemas can come from the catalog).

It holds no rule of its own: every call goes to the gateway's HTTP API through an
``httpx`` client that ``client_for`` gives per request (in process, as the caller's key,
when mounted on the gateway; over HTTP or on the local data dir for stdio).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError

from imagegate import __version__
from imagegate.catalog import Catalog
from imagegate.mcp.errors import ToolError
from imagegate.mcp.schema import MODELS_OUTPUT_SCHEMA, OUTPUT_SCHEMA, input_schema
from imagegate.mcp.tool import ImageTool, error_result
from imagegate.mcp.workdir import Workdir

ClientFor = Callable[
    [ServerRequestContext[Any, Any]], AbstractAsyncContextManager[httpx.AsyncClient]
]

MODELS_URI = "imagegate://models"
FILE_URI = re.compile(r"imagegate://files/(file_[0-9a-z]{26})")
MODEL_URI = re.compile(r"imagegate://models/([A-Za-z0-9._-]+)")
INSTRUCTIONS = (
    "imagegate makes, edits and upscales images with the models your workspace allows. "
    "Call the tool 'image' (action create, edit or upscale); choose a model with "
    "'image_models' or the imagegate://models resource. Each image comes back as a "
    "resource link (imagegate://files/{id}, readable with resources/read) and a small "
    "preview; give 'out' to name the file."
)
IMAGE_DESCRIPTION = (
    "Create, edit or upscale an image with the workspace's image models; charged in "
    "credits like any generation (mock: true is free). create: 'prompt' plus a 'tier' "
    "(draft, fine, photo) or a 'model'; edit: 'image_url' or 'image_urls' and a 'prompt'; "
    "upscale: 'image_url' and 'upscale_factor'. Other parameters of the chosen model may be "
    "given too. Returns a short summary, a resource link per image, a preview, and the job "
    "as structured content (job id, model, size, file ids, credits)."
)
MODELS_DESCRIPTION = (
    "The image models you may use: tier presets, default editor and upscaler, and per "
    "model its capabilities, price, sizes and region."
)


def models_listing(catalog: Catalog, listing: list[dict[str, Any]]) -> dict[str, Any]:
    """The discovery document: the caller's models, short, with the tool's presets."""
    keys = (
        "id",
        "name",
        "description",
        "aliases",
        "capabilities",
        "tier",
        "premium",
        "stars",
        "region",
        "status",
        "replacement",
        "default",
        "pricing",
        "allowedParams",
    )
    default = next((model["id"] for model in listing if model.get("default")), None)
    return {
        "tiers": dict(catalog.choices.tiers),
        "actions": dict(catalog.choices.actions),
        "default_model": default,
        "models": [{key: model.get(key) for key in keys} for model in listing],
    }


class ImagegateServer:
    """The server's handlers, around one :class:`ImageTool`."""

    def __init__(
        self,
        catalog: Catalog,
        client_for: ClientFor,
        *,
        workdir: Workdir | None = None,
        links: bool = True,
    ) -> None:
        self.catalog = catalog
        self.client_for = client_for
        self.tool = ImageTool(catalog, workdir=workdir, links=links)
        self.tools = [
            types.Tool(
                name="image",
                title="Image: create, edit, upscale",
                description=IMAGE_DESCRIPTION,
                input_schema=input_schema(catalog),
                output_schema=OUTPUT_SCHEMA,
                annotations=types.ToolAnnotations(
                    title="Image",
                    read_only_hint=False,
                    destructive_hint=False,
                    open_world_hint=True,
                ),
            ),
            types.Tool(
                name="image_models",
                title="Image models",
                description=MODELS_DESCRIPTION,
                input_schema={"type": "object", "properties": {}},
                output_schema=MODELS_OUTPUT_SCHEMA,
                annotations=types.ToolAnnotations(title="Image models", read_only_hint=True),
            ),
        ]
        self.server: Server[Any] = Server(
            "imagegate",
            version=__version__,
            title="imagegate",
            instructions=INSTRUCTIONS,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            on_list_resources=self.list_resources,
            on_list_resource_templates=self.list_resource_templates,
            on_read_resource=self.read_resource,
        )

    async def list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self.tools)

    async def call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        arguments = params.arguments or {}
        async with self.client_for(ctx) as client:
            if params.name == "image":

                async def progress(step: float, message: str) -> None:
                    await ctx.session.report_progress(step, None, message)

                return await self.tool.call(client, arguments, progress)
            if params.name == "image_models":
                try:
                    listing = await self._models(client)
                except ToolError as error:
                    return error_result(error)
                return types.CallToolResult(
                    content=[types.TextContent(text=json.dumps(listing, indent=1))],
                    structured_content=listing,
                )
        raise MCPError(types.INVALID_PARAMS, f"Unknown tool {params.name!r}.")

    async def _models(self, client: httpx.AsyncClient) -> dict[str, Any]:
        response = await client.get("/v1/models", params={"modality": "image"})
        if response.status_code != 200:
            raise ToolError.from_response(response)
        return models_listing(self.catalog, response.json()["data"])

    async def list_resources(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[
                types.Resource(
                    uri=MODELS_URI,
                    name="models",
                    title="Image models you may use",
                    description=MODELS_DESCRIPTION,
                    mime_type="application/json",
                )
            ]
        )

    async def list_resource_templates(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(
            resource_templates=[
                types.ResourceTemplate(
                    uri_template="imagegate://files/{file_id}",
                    name="file",
                    title="A stored image",
                    description="An image the gateway stores (an output or an upload).",
                ),
                types.ResourceTemplate(
                    uri_template="imagegate://models/{slug}",
                    name="model",
                    title="One image model",
                    description="A model's description with the JSON Schema of its parameters.",
                    mime_type="application/json",
                ),
            ]
        )

    async def read_resource(
        self, ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        async with self.client_for(ctx) as client:
            if uri == MODELS_URI:
                try:
                    listing = await self._models(client)
                except ToolError as error:
                    raise MCPError(types.INVALID_REQUEST, error.text()) from None
                return _json_contents(uri, listing)
            if found := MODEL_URI.fullmatch(uri):
                response = await client.get(f"/v1/models/{found.group(1)}")
                _check(response, uri)
                return _json_contents(uri, response.json())
            if found := FILE_URI.fullmatch(uri):
                response = await client.get(f"/v1/files/{found.group(1)}/content")
                _check(response, uri)
                mime = response.headers.get("content-type", "application/octet-stream")
                blob = base64.b64encode(response.content).decode("ascii")
                return types.ReadResourceResult(
                    contents=[types.BlobResourceContents(uri=uri, mime_type=mime, blob=blob)]
                )
        raise MCPError(types.INVALID_PARAMS, f"No resource {uri!r}.", {"uri": uri})


def _check(response: httpx.Response, uri: str) -> None:
    if response.status_code == 404:
        raise MCPError(types.INVALID_PARAMS, f"No resource {uri!r}.", {"uri": uri})
    if response.status_code != 200:
        raise MCPError(types.INVALID_REQUEST, ToolError.from_response(response).text())


def _json_contents(uri: str, value: Any) -> types.ReadResourceResult:
    return types.ReadResourceResult(
        contents=[
            types.TextResourceContents(
                uri=uri, mime_type="application/json", text=json.dumps(value, indent=1)
            )
        ]
    )
