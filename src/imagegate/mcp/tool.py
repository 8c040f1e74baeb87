"""The ``image`` tool: one call of the gateway's own jobs API, as the caller's key.

Everything that is a rule (which models the member may use, validation, the hold and
capture of credits, idempotency, audit) happens in the API; this module turns the tool's
arguments into ``POST /v1/jobs/{model}``, follows the job, and shapes what comes back.
"""

from __future__ import annotations

import asyncio
import base64
import io
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import mcp_types as types
from PIL import Image

from imagegate.catalog import Catalog
from imagegate.mcp.errors import ToolError
from imagegate.mcp.schema import ACTIONS, REFUSED_FIELDS, TOOL_FIELDS
from imagegate.mcp.workdir import CONVERTIBLE, EXTENSIONS, Workdir, numbered, relative_path

Progress = Callable[[float, str], Awaitable[None]]
FILE_ID = re.compile(r"file_[0-9a-z]{26}")
PREVIEW_SIDE = 512
# Which capability each action needs of the model.
CAPABILITY = {"create": "generate", "edit": "edit", "upscale": "upscale"}
TERMINAL = ("succeeded", "failed", "canceled", "expired")


def file_uri(file_id: str) -> str:
    return f"imagegate://files/{file_id}"


@dataclass(frozen=True, slots=True)
class Output:
    """One output image: its file object from the API and its bytes."""

    item: dict[str, Any]
    data: bytes


def preview(data: bytes) -> tuple[bytes, str] | None:
    """A small copy to show inline: long side at most 512 px, JPEG (PNG with alpha)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
            buffer = io.BytesIO()
            if image.mode in ("RGBA", "LA") or "transparency" in image.info:
                image.save(buffer, format="PNG", optimize=True)
                return buffer.getvalue(), "image/png"
            image.convert("RGB").save(buffer, format="JPEG", quality=80)
            return buffer.getvalue(), "image/jpeg"
    except (OSError, ValueError, Image.DecompressionBombError):
        return None  # SVG, or nothing Pillow reads: the resource link is enough


def converted(data: bytes, suffix: str) -> bytes:
    """``data`` re-encoded as the format ``out``'s suffix names."""
    buffer = io.BytesIO()
    kind = CONVERTIBLE[suffix]
    with Image.open(io.BytesIO(data)) as opened:
        flatten = kind == "JPEG" and opened.mode not in ("RGB", "L")
        (opened.convert("RGB") if flatten else opened).save(buffer, format=kind)
    return buffer.getvalue()


def as_named(data: bytes, content_type: str, name: str) -> tuple[bytes, str]:
    """The image as its name says: converted when ``name`` asks for another format Pillow
    writes, else (an SVG, say) kept and named for what it is."""
    path = PurePath(name)
    suffix = path.suffix.lower()
    wanted = CONVERTIBLE.get(suffix)
    if wanted is None or content_type == Image.MIME.get(wanted):
        return data, name
    try:
        return converted(data, suffix), name
    except (OSError, ValueError):
        return data, path.with_suffix(EXTENSIONS.get(content_type, suffix)).as_posix()


def _credits(value: Any) -> str:
    return "—" if value is None else f"{value:g}"


class ImageTool:
    """Runs ``image`` calls against an API client; ``workdir`` is set over stdio only."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        workdir: Workdir | None,
        links: bool = True,
        poll_seconds: float = 0.05,
    ) -> None:
        self.catalog = catalog
        self.workdir = workdir
        self.links = links
        self.poll_seconds = poll_seconds

    def _model_for(self, action: str, args: dict[str, Any]) -> str:
        model = args.get("model")
        tier = args.get("tier")
        if model is not None:
            if not isinstance(model, str) or not model:
                raise ToolError("Invalid value for 'model': expected a model slug.", param="model")
            if tier is not None:
                raise ToolError("Give either 'tier' or 'model', not both.", param="tier")
            return model
        choices = self.catalog.choices
        if action != "create":
            if tier is not None:
                raise ToolError(
                    f"'tier' is for create; {action} uses {choices.actions[action]} "
                    "unless 'model' names another.",
                    param="tier",
                )
            return choices.actions[action]
        tier = tier or next(iter(choices.tiers))
        if tier not in choices.tiers:
            allowed = ", ".join(choices.tiers)
            raise ToolError(
                f"Invalid value for 'tier': {tier!r}. Allowed: {allowed}.", param="tier"
            )
        return choices.tiers[tier]

    async def _source(self, client: httpx.AsyncClient, value: Any, param: str) -> str:
        """A source image as the API takes it: URL, data URI and file id pass as they are;
        over stdio a path is uploaded first and passed as its file id."""
        if not isinstance(value, str) or not value:
            raise ToolError(f"Invalid value for {param!r}: expected a string.", param=param)
        lowered = value[:8].lower()
        if lowered.startswith(("http://", "https://", "data:")) or FILE_ID.fullmatch(value):
            return value
        if self.workdir is None:
            raise ToolError(
                f"Invalid value for {param!r}: {value[:80]!r} is not an https URL, a file id "
                "or a data URI (local paths work over stdio only).",
                param=param,
            )
        path = self.workdir.source(value, param)
        data = await asyncio.to_thread(path.read_bytes)
        response = await client.post(
            "/v1/files",
            data={"purpose": "reference"},
            files={"file": (path.name, data, "application/octet-stream")},
        )
        if response.status_code not in (200, 201):
            error = ToolError.from_response(response)
            error.param = param
            raise error
        file_id: str = response.json()["id"]
        return file_id

    async def _describe(self, client: httpx.AsyncClient, slug: str, action: str) -> dict[str, Any]:
        response = await client.get(f"/v1/models/{quote(slug, safe='')}")
        if response.status_code != 200:
            error = ToolError.from_response(response)
            if error.code == "model_not_found":
                error.message = (
                    f"The model {slug!r} does not exist or is not enabled for you. "
                    "Read imagegate://models (or call image_models) for the ones you may use."
                )
            raise error
        model: dict[str, Any] = response.json()
        if CAPABILITY[action] not in model.get("capabilities", []):
            raise ToolError(
                f"Model {model['id']!r} cannot {action} (it can: "
                f"{', '.join(model.get('capabilities', []))}); read imagegate://models for "
                f"models whose capabilities include {CAPABILITY[action]!r}.",
                code=f"model_cannot_{action}",
                param="model",
            )
        return model

    async def _body(
        self, client: httpx.AsyncClient, action: str, args: dict[str, Any], model: dict[str, Any]
    ) -> dict[str, Any]:
        properties: dict[str, Any] = model.get("input_schema", {}).get("properties", {})
        spec = self.catalog.resolve(model["id"])
        prompt_field = spec.prompt_field if spec is not None else None
        if prompt_field not in properties:  # e.g. Topaz's optional guide for Redefine
            prompt_field = "prompt" if "prompt" in properties else None
        body: dict[str, Any] = {}
        prompt = args.get("prompt")
        if prompt is not None:
            if prompt_field is None:
                raise ToolError(f"Model {model['id']!r} takes no prompt.", param="prompt")
            body[prompt_field] = prompt
        elif action in ("create", "edit") and prompt_field is not None:
            what = "what to draw" if action == "create" else "the edit to make"
            raise ToolError(f"'prompt' is required: {what}.", param="prompt")
        sources: list[tuple[str, Any]] = []
        if args.get("image_url") is not None:
            sources.append(("image_url", args["image_url"]))
        urls = args.get("image_urls")
        if urls is not None:
            if not isinstance(urls, list):
                raise ToolError(
                    "Invalid value for 'image_urls': expected a list.", param="image_urls"
                )
            sources += [(f"image_urls[{i}]", url) for i, url in enumerate(urls)]
        if action != "create" and not sources:
            raise ToolError(
                f"{action} needs a source image: give 'image_url' ({action} of one image)"
                + (" or 'image_urls'." if action == "edit" else "."),
                code="image_url_required",
                param="image_url",
            )
        field = None
        if sources:
            if "image_urls" in properties:
                field = "image_urls"
            elif "image_url" in properties:
                field = "image_url"
                if len(sources) > 1:
                    raise ToolError(
                        f"Model {model['id']!r} takes one source image; {len(sources)} given.",
                        code="too_many_references",
                        param="image_urls",
                    )
            else:
                raise ToolError(
                    f"Model {model['id']!r} takes no source image.", param=sources[0][0]
                )
        for name, value in args.items():
            if name in REFUSED_FIELDS:
                raise ToolError(
                    f"{name!r} is not offered by the image tool: its images are always "
                    "stored and returned as links.",
                    param=name,
                )
            if name not in TOOL_FIELDS:
                body[name] = value
        params = args.get("params")
        if params is not None:
            if not isinstance(params, dict):
                raise ToolError("Invalid value for 'params': expected an object.", param="params")
            body.update(params)
        for name in ("mock", "format", "idempotency_key"):
            if args.get(name) is not None:
                body[name] = args[name]
        # Last, once the call is otherwise checked: a local source is uploaded here.
        resolved = [await self._source(client, value, param) for param, value in sources]
        if field == "image_urls":
            body[field] = resolved
        elif field == "image_url":
            body[field] = resolved[0]
        return body

    async def _follow(
        self, client: httpx.AsyncClient, job: dict[str, Any], progress: Progress
    ) -> dict[str, Any]:
        """Poll the job until it ends, telling the client how it goes; if the call is
        cancelled, cancel the job (which releases its hold) before giving up."""
        step = 0.0
        delay = self.poll_seconds
        try:
            while job["status"] not in TERMINAL:
                step += 1
                await progress(step, f"{job['model']}: {job['status']}")
                await anyio.sleep(delay)
                delay = min(delay * 1.5, 1.0)
                response = await client.get(f"/v1/jobs/{job['id']}")
                if response.status_code != 200:
                    raise ToolError.from_response(response)
                job = response.json()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await client.post(f"/v1/jobs/{job['id']}/cancel")
            raise
        await progress(step + 1, f"{job['model']}: {job['status']}")
        return job

    async def _outputs(self, client: httpx.AsyncClient, job: dict[str, Any]) -> list[Output]:
        outputs = []
        for item in job.get("outputs", []):
            response = await client.get(f"/v1/files/{item['file_id']}/content")
            if response.status_code != 200:
                raise ToolError.from_response(response)
            outputs.append(Output(item, response.content))
        return outputs

    async def _keep_as(
        self, client: httpx.AsyncClient, out: str, outputs: list[Output]
    ) -> list[Output]:
        """Over HTTP, ``out`` keeps the images in the Files API under that name (outputs
        themselves expire with their job's retention)."""
        names = numbered(out, len(outputs), outputs[0].item["content_type"]) if outputs else []
        kept = []
        for output, wanted in zip(outputs, names, strict=True):
            data, name = as_named(output.data, output.item["content_type"], wanted)
            response = await client.post(
                "/v1/files",
                data={"purpose": "user_data"},
                files={"file": (PurePath(name).name, data, "application/octet-stream")},
            )
            if response.status_code not in (200, 201):
                error = ToolError.from_response(response)
                error.param = "out"
                raise error
            file = response.json()
            item = {key: file.get(key) for key in ("url", "url_expires_at", "width", "height")}
            item |= {"file_id": file["id"], "content_type": file["content_type"]}
            item |= {"bytes": file["bytes"], "name": file["filename"]}
            kept.append(Output(item, data))
        return kept

    def _save(self, out: str | None, job: dict[str, Any], outputs: list[Output]) -> list[str]:
        if self.workdir is None or not outputs:
            return []
        content_type = outputs[0].item["content_type"]
        name = out if out is not None else f"{job['id']}"
        paths: list[Path] = self.workdir.outputs(name, len(outputs), content_type)
        saved = []
        for output, path in zip(outputs, paths, strict=True):
            data, name = as_named(output.data, output.item["content_type"], path.name)
            saved.append(self.workdir.write(path.with_name(name), data))
        return saved

    async def call(
        self, client: httpx.AsyncClient, arguments: dict[str, Any], progress: Progress
    ) -> types.CallToolResult:
        try:
            return await self._call(client, dict(arguments), progress)
        except ToolError as error:
            return error_result(error)
        except httpx.TransportError as exc:
            where = client.base_url
            message = f"The gateway at {where} did not answer ({type(exc).__name__}: {exc})."
            return error_result(ToolError(message, code="gateway_unreachable"))

    async def _call(
        self, client: httpx.AsyncClient, args: dict[str, Any], progress: Progress
    ) -> types.CallToolResult:
        action = args.get("action") or "create"
        if action not in ACTIONS:
            allowed = ", ".join(ACTIONS)
            raise ToolError(
                f"Invalid value for 'action': {action!r}. Allowed: {allowed}.", param="action"
            )
        out = args.get("out")
        if out is not None and (not isinstance(out, str) or not out.strip()):
            raise ToolError("Invalid value for 'out': expected a file name or path.", param="out")
        if out is not None:  # refuse an escape before paying
            if self.workdir is not None:
                self.workdir.outputs(out, 1, "image/png")
            else:
                relative_path(out, "out")
        slug = self._model_for(action, args)
        model = await self._describe(client, slug, action)
        body = await self._body(client, action, args, model)
        response = await client.post(f"/v1/jobs/{model['id']}", json=body)
        if response.status_code not in (200, 202):
            raise ToolError.from_response(response)
        notices = []
        if args.get("model") is None:
            tier = args.get("tier") or next(iter(self.catalog.choices.tiers))
            chosen = f"tier {tier!r}" if action == "create" else action
            notices.append(f"{chosen} uses {model['id']}.")
        if model.get("deprecated") and model.get("replacement"):
            notices.append(f"{model['id']} is on its way out; use {model['replacement']}.")
        job = await self._follow(client, response.json(), progress)
        if job["status"] != "succeeded":
            error = job.get("error") or {}
            raise ToolError(
                f"Job {job['id']} {job['status']}: {error.get('message') or 'no reason given'}",
                code=error.get("code") or f"job_{job['status']}",
                extra={"job_id": job["id"], "provider_reason": error.get("provider_reason")},
            )
        outputs = await self._outputs(client, job)
        if self.workdir is None and out is not None:
            outputs = await self._keep_as(client, out, outputs)
        saved = await asyncio.to_thread(self._save, out, job, outputs)
        return self._result(action, job, outputs, saved, out, notices, bool(body.get("mock")))

    def _result(
        self,
        action: str,
        job: dict[str, Any],
        outputs: list[Output],
        saved: list[str],
        out: str | None,
        notices: list[str],
        mock: bool,
    ) -> types.CallToolResult:
        images: list[dict[str, Any]] = []
        content: list[types.ContentBlock] = []
        for index, output in enumerate(outputs):
            item = output.item
            name = saved[index] if saved else item.get("name") or item["file_id"]
            image = {
                "file_id": item["file_id"],
                "uri": file_uri(item["file_id"]),
                "url": item.get("url") if self.links else None,
                "url_expires_at": item.get("url_expires_at") if self.links else None,
                "width": item.get("width"),
                "height": item.get("height"),
                "content_type": item["content_type"],
                "bytes": item.get("bytes"),
                "name": name,
                "path": saved[index] if saved else None,
            }
            images.append(image)
            description = f"{item.get('width')}x{item.get('height')} {item['content_type']}"
            if image["url"]:
                description += f"; signed link (expires): {image['url']}"
            content.append(
                types.ResourceLink(
                    uri=image["uri"],
                    name=name,
                    title=f"{job['model']} output {index + 1}",
                    description=description,
                    mime_type=item["content_type"],
                    size=item.get("bytes"),
                )
            )
        for output in outputs:
            small = preview(output.data)
            if small is not None:
                data, mime = small
                content.append(
                    types.ImageContent(data=base64.b64encode(data).decode("ascii"), mime_type=mime)
                )
        width = images[0]["width"] if images else 0
        height = images[0]["height"] if images else 0
        structured = {
            "job_id": job["id"],
            "status": job["status"],
            "action": action,
            "model": job["model"],
            "width": width or 0,
            "height": height or 0,
            "mock": mock,
            "file_ids": [image["file_id"] for image in images],
            "images": images,
            "estimated_credits": job.get("estimated_cost") or 0,
            "charged_credits": job.get("charged_amount"),
            "notices": notices,
        }
        where = (
            f"saved to {', '.join(saved)}"
            if saved
            else f"stored as {', '.join(i['file_id'] for i in images)}"
        )
        summary = (
            f"{job['model']}{' (mock)' if mock else ''}: {len(images)} image"
            f"{'s' if len(images) != 1 else ''} {width}x{height}, "
            f"{_credits(job.get('charged_amount'))} credits charged "
            f"(estimated {_credits(job.get('estimated_cost'))}); {where}. Job {job['id']}."
        )
        if notices:
            summary += " " + " ".join(notices)
        return types.CallToolResult(
            content=[types.TextContent(text=summary), *content],
            structured_content=structured,
        )


def error_result(error: ToolError) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=error.text())],
        is_error=True,
    )
