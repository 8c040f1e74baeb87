"""``imagegate mcp``: the MCP server over stdio, the command an agent host launches."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from imagegate.cli.main import KeyOption, UrlOption, _run, app, console
from imagegate.config import Settings


@app.command("mcp")
def mcp(
    url: UrlOption = None,
    key: KeyOption = None,
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--workdir",
            help="Where 'out' is written and local source images are read; "
            "default: the current directory.",
        ),
    ] = None,
) -> None:
    """Serve the MCP tool 'image' over stdio, for an agent host to launch.

    With --url and --key (or IMAGEGATE_URL and IMAGEGATE_API_KEY) it calls that gateway
    as the key's member; with neither, the gateway on the local data dir, in process.
    """
    if url and not key:
        console.print("[red]--url needs --key (or IMAGEGATE_API_KEY).[/red]")
        raise typer.Exit(2)
    root = (workdir or Path.cwd()).resolve()
    if not root.is_dir():
        console.print(f"[red]--workdir {root} is not a directory.[/red]")
        raise typer.Exit(2)
    _run(serve_stdio(Settings(), url, key, root))


async def serve_stdio(settings: Settings, url: str | None, key: str | None, root: Path) -> None:
    from mcp.server.stdio import stdio_server

    from imagegate.catalog import load_catalog
    from imagegate.mcp.server import ImagegateServer
    from imagegate.mcp.workdir import Workdir

    catalog = load_catalog(settings.catalog_dirs, credits_per_usd=settings.credits_per_usd)
    # Claimed first: from here on stray prints go to stderr, never into the protocol.
    async with stdio_server() as (read_stream, write_stream):
        connect: AbstractAsyncContextManager[httpx.AsyncClient]
        if url and key:
            headers = {"Authorization": f"Bearer {key}"}
            connect = httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=600)
        else:
            from imagegate.client import local_client  # the whole gateway, in this process

            connect = local_client(settings)
        async with connect as client:

            @asynccontextmanager
            async def client_for(ctx: Any) -> AsyncIterator[httpx.AsyncClient]:
                yield client

            server = ImagegateServer(catalog, client_for, workdir=Workdir(root), links=bool(url))
            await server.server.run(
                read_stream, write_stream, server.server.create_initialization_options()
            )
