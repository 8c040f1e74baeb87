"""``imagegate upscale IN --factor 2 -o OUT``: upscale an image through the gateway."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from imagegate.cli.main import KeyOption, UrlOption, _client, _fail, _run, app, console

EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


def _source_form(source: str) -> str | None:
    # Imported here: the source checks pull in the store, which other commands do not need.
    from imagegate.services.sources import source_form

    return source_form(source)


def _default_output(source: str, factor: float, extension: str) -> Path:
    stem = Path(source).stem if _source_form(source) is None else "upscaled"
    return Path(f"{stem}-x{factor:g}.{extension}")


@app.command()
def upscale(
    source: Annotated[
        str,
        typer.Argument(
            metavar="IN", help="An image file, an http(s) URL, a data URI or a file id (file_…)."
        ),
    ],
    factor: Annotated[
        float, typer.Option("--factor", "-f", min=1, max=4, help="Scale factor, 1 to 4.")
    ] = 2,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="File to write; default IN-x<factor>.<ext>."),
    ] = None,
    model: Annotated[
        str | None, typer.Option("-m", "--model", help="Upscaler; default topaz_upscale_image.")
    ] = None,
    mock: Annotated[
        bool, typer.Option("--mock", help="A free placeholder (the input resized).")
    ] = False,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Upscale an image: the output is the input's size times the factor."""

    fields: dict[str, Any] = {"upscale_factor": factor}
    if model:
        fields["model"] = model
    if mock:
        fields["mock"] = True
    local = Path(source)
    data: bytes | None = None
    if _source_form(source) is None:
        if not local.is_file():
            console.print(f"[red]No such file: {source}[/red]")
            raise typer.Exit(2)
        data = local.read_bytes()
    form = {k: "true" if v is True else str(v) for k, v in fields.items()}

    async def main() -> Path:
        async with _client(url, key) as client:
            with Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                console=console,
            ) as progress:  # fmt: skip
                progress.add_task(f"upscaling x{factor:g}", total=None)
                if data is not None:
                    response = await client.post(
                        "/v1/images/upscale",
                        files={"image": (local.name, data)},
                        data=form,
                        timeout=None,
                    )
                else:
                    response = await client.post(
                        "/v1/images/upscale", json={"image": source, **fields}, timeout=None
                    )
            if response.status_code != 200:
                _fail(response)
            body = response.json()
            item = body["data"][0]
            extension = EXTENSIONS.get(item.get("content_type", ""), "png")
            path = output or _default_output(source, factor, extension)
            await asyncio.to_thread(path.write_bytes, base64.b64decode(item["b64_json"]))
            console.print(f"saved {path} ({body['width']}x{body['height']}, {body['model']})")
            return path

    _run(main())
