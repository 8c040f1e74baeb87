"""The ``imagegate`` command."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from imagegate.config import Settings

app = typer.Typer(help="imagegate: one API for every image model.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console(stderr=True)
out = Console()

T = TypeVar("T")

UrlOption = Annotated[
    str | None,
    typer.Option("--url", envvar="IMAGEGATE_URL", help="A running gateway; default: in-process on the data dir."),
]
KeyOption = Annotated[str | None, typer.Option("--key", envvar="IMAGEGATE_API_KEY", help="API key for --url.")]


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@asynccontextmanager
async def _client(url: str | None, key: str | None) -> AsyncIterator[httpx.AsyncClient]:
    from imagegate.client import local_client, remote_client

    if url:
        if not key:
            console.print("[red]--url needs --key (or IMAGEGATE_API_KEY).[/red]")
            raise typer.Exit(2)
        async with remote_client(url, key) as client:
            yield client
    else:
        async with local_client(Settings()) as client:
            yield client


def _fail(response: httpx.Response) -> None:
    try:
        error = response.json()["error"]
        message = f"{error.get('code')}: {error.get('message')}"
    except (ValueError, KeyError, TypeError):
        message = response.text
    console.print(f"[red]Error {response.status_code}[/red] {message}")
    raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Run the gateway (migrates the database and creates the first admin key on first start)."""
    import uvicorn

    from imagegate.app import create_app

    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = Settings(**overrides)
    console.print(f"imagegate listening on http://{settings.host}:{settings.port} (data in {settings.data_dir})")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        proxy_headers=True,
    )


def _output_paths(output: Path | None, job_id: str, count: int, extension: str) -> list[Path]:
    if output is None:
        return [Path(f"{job_id}-{i}.{extension}") for i in range(count)]
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{i}{output.suffix}") for i in range(count)]


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
    model: Annotated[str | None, typer.Option("-m", "--model", help="Model slug; default: the workspace default.")] = None,
    n: Annotated[int, typer.Option("-n", help="Number of images.")] = 1,
    size: Annotated[str | None, typer.Option("--size", help="WIDTHxHEIGHT, e.g. 1024x1024.")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="File to write (numbered when n > 1).")] = None,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Generate images and save them."""

    async def main() -> list[Path]:
        body: dict[str, Any] = {"prompt": prompt, "n": n}
        if model:
            body["model"] = model
        if size:
            body["size"] = size
        async with _client(url, key) as client:
            with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as progress:
                task = progress.add_task("submitting", total=None)
                response = await client.post(
                    "/v1/images/generations", json=body, headers={"Prefer": "respond-async"}
                )
                if response.status_code != 202:
                    _fail(response)
                job = response.json()
                while job["status"] in ("queued", "running"):
                    progress.update(task, description=f"{job['model']}: {job['status']}")
                    await asyncio.sleep(0.2)
                    polled = await client.get(f"/v1/jobs/{job['id']}")
                    if polled.status_code != 200:
                        _fail(polled)
                    job = polled.json()
                progress.update(task, description=f"{job['model']}: {job['status']}")
            if job["status"] != "succeeded":
                error = job.get("error") or {}
                console.print(f"[red]Job {job['id']} {job['status']}[/red]: {error.get('code')}: {error.get('message')}")
                raise typer.Exit(1)
            outputs = job["outputs"]
            extension = {"image/svg+xml": "svg", "image/jpeg": "jpg", "image/webp": "webp"}.get(outputs[0]["content_type"], "png")
            paths = _output_paths(output, job["id"], len(outputs), extension)
            for item, path in zip(outputs, paths, strict=True):
                content = await client.get(f"/v1/files/{item['file_id']}/content")
                if content.status_code != 200:
                    _fail(content)
                path.write_bytes(content.content)
                console.print(f"saved {path} ({item['width']}x{item['height']}, {item['content_type']})")
            return paths

    _run(main())


@app.command()
def models(url: UrlOption = None, key: KeyOption = None) -> None:
    """List the catalog's models (admins see all, with which are enabled)."""

    async def main() -> list[dict[str, Any]]:
        async with _client(url, key) as client:
            response = await client.get("/v1/models", params={"all": "true"})
            if response.status_code != 200:
                _fail(response)
            data: list[dict[str, Any]] = response.json()["data"]
            return data

    table = Table("model", "provider", "tier", "region", "enabled", "sizes")
    for item in _run(main()):
        enabled = "default" if item["default"] else ("yes" if item["enabled"] else "")
        sizes = ", ".join(item["allowedParams"]["supported_sizes"][:4])
        table.add_row(item["id"], item["owned_by"], item["tier"], item["region"], enabled, sizes)
    out.print(table)


@keys_app.command("create")
def keys_create(
    admin: Annotated[bool, typer.Option("--admin", help="The key's member is a workspace admin.")] = False,
    name: Annotated[str, typer.Option("--name", help="Name of the member the key belongs to.")] = "member",
) -> None:
    """Create a member of the first workspace and an API key for them; prints the key once."""
    from sqlalchemy import select

    from imagegate.gateway import Gateway
    from imagegate.services.bootstrap import create_member
    from imagegate.services.keys import create_key
    from imagegate.store.tables import Workspace

    async def main() -> str:
        gateway = Gateway(Settings(), run_workers=False)
        await gateway.start()
        try:
            if gateway.first_admin_key is not None:
                console.print(f"First admin key (shown once): {gateway.first_admin_key}")
            async with gateway.db.session() as session:
                workspace = (await session.execute(select(Workspace).order_by(Workspace.created_at).limit(1))).scalar_one()
                member = await create_member(session, workspace, name, "admin" if admin else "member")
                _, secret = await create_key(session, member, name)
            return secret
        finally:
            await gateway.stop()

    secret = _run(main())
    console.print(f"Created a{'n admin' if admin else ' member'} key for {name!r}. It is shown only once:")
    out.print(secret)


@app.command("rotate-signing-key")
def rotate_signing_key() -> None:
    """Sign file links with a new key; links signed before keep working until they expire."""
    from imagegate.gateway import Gateway

    async def main() -> str:
        gateway = Gateway(Settings(), run_workers=False)
        await gateway.start()
        try:
            return await gateway.rotate_signing_key()
        finally:
            await gateway.stop()

    kid = _run(main())
    console.print(f"New signing key {kid}; running gateways pick it up within a sweep interval.")
    out.print(kid)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
