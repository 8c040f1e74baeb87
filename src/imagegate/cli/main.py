"""The ``imagegate`` command."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from imagegate.config import Settings
from imagegate.errors import ImagegateError

app = typer.Typer(help="imagegate: one API for every image model.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
admin_app = typer.Typer(help="Workspace administration (admin key).", no_args_is_help=True)
admin_models_app = typer.Typer(help="Which image models members may use.", no_args_is_help=True)
admin_app.add_typer(admin_models_app, name="models")
app.add_typer(admin_app, name="admin")

providers_app = typer.Typer(help="Upstream providers.", no_args_is_help=True)
app.add_typer(providers_app, name="providers")
console = Console(stderr=True)
out = Console()

T = TypeVar("T")

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="IMAGEGATE_URL",
        help="A running gateway; default: in-process on the data dir.",
    ),
]
KeyOption = Annotated[
    str | None, typer.Option("--key", envvar="IMAGEGATE_API_KEY", help="API key for --url.")
]


def _say_and_exit(message: str, code: int = 1) -> typer.Exit:
    """Print one line that says what is wrong; the Exit to raise."""
    console.print(f"[red]Error[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; what a user can fix is one line, not a traceback."""
    try:
        return asyncio.run(coro)
    except httpx.TransportError as exc:
        where = str(exc.request.url.copy_with(path="/", query=None)) if _has_request(exc) else ""
        reason = str(exc) or type(exc).__name__
        message = f"cannot reach the gateway {where}: {reason}".replace("  ", " ")
        raise _say_and_exit(message) from None
    except ImagegateError as exc:  # the in-process gateway refused to start
        raise _say_and_exit(f"{exc.code}: {exc.message}", 2) from None


def _has_request(exc: httpx.TransportError) -> bool:
    try:
        exc.request  # noqa: B018 - raises when the error carries no request
    except RuntimeError:
        return False
    return True


def _settings(**overrides: Any) -> Settings:
    """The settings from IMAGEGATE_* (and the options given); a bad one is one line, exit 2."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        _print_settings_errors(exc)
        raise typer.Exit(2) from None


def _print_settings_errors(exc: ValidationError) -> None:
    for error in exc.errors():
        name = "_".join(str(part) for part in error["loc"]).upper()
        where = f"IMAGEGATE_{name}" if name else "the settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        console.print(
            f"[red]Invalid {where}[/red]: {message} (got {error['input']!r})",
            highlight=False,
            soft_wrap=True,
        )


def _print_table(table: Table, first_column: list[str]) -> None:
    """A table whose first column (the slug or id) is never cut: piped output takes the
    table's natural width, a terminal keeps that column whole and wraps the others."""
    if first_column:
        column = table.columns[0]
        column.no_wrap = True
        column.min_width = max(len(value) for value in first_column)
    if out.is_terminal:
        out.print(table)
    else:
        Console(width=1000, no_color=out.no_color).print(table)


def _progress() -> Progress:
    """A spinner on a terminal, gone when it stops; nothing at all when output is piped."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


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
        async with local_client(_settings()) as client:
            yield client


def _fail(response: httpx.Response) -> None:
    try:
        error = response.json()["error"]
        message = f"{error.get('code')}: {error.get('message')}"
    except (ValueError, KeyError, TypeError):
        message = response.text
    console.print(
        f"[red]Error {response.status_code}[/red] {message}", highlight=False, soft_wrap=True
    )
    raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Server processes sharing the port (IMAGEGATE_WORKERS)."),
    ] = None,
    no_worker: Annotated[
        bool,
        typer.Option("--no-worker", help="API only: jobs run in `imagegate worker` instances."),
    ] = False,
) -> None:
    """Run the gateway (migrates the database and creates the first admin key on first start)."""
    import uvicorn

    from imagegate.app import announce_first_key, create_app, served_by_uvicorn
    from imagegate.gateway import prepare

    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if workers is not None:
        overrides["workers"] = workers
    if no_worker:
        overrides["run_worker"] = False
    settings = _settings(**overrides)
    address = f"http://{settings.host}:{settings.port}"
    _check_port_free(settings.host, settings.port)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "proxy_headers": True,
    }
    if settings.workers == 1:
        console.print(f"imagegate listening on {address} (data in {settings.data_dir})")
        uvicorn.run(served_by_uvicorn(create_app(settings)), **options)
        return
    # Several processes: migrate and create the first key once, here, before any of them
    # starts (two first starts racing would create two workspaces). Each process builds its
    # app from the environment, so the options given here travel there.
    first_key = _run(prepare(settings))
    if first_key is not None:
        announce_first_key(first_key)
    for name, value in overrides.items():
        os.environ[f"IMAGEGATE_{name.upper()}"] = str(value)
    console.print(
        f"imagegate listening on {address} with {settings.workers} processes "
        f"(data in {settings.data_dir})"
    )
    uvicorn.run(
        "imagegate.app:create_served_app", factory=True, workers=settings.workers, **options
    )


def _check_port_free(host: str, port: int) -> None:
    """Refuse a port another process holds before saying "listening" (uvicorn binds the
    same way, with SO_REUSEADDR)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise _say_and_exit(f"cannot listen on {host}:{port}: {exc.strerror}", 2) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise _say_and_exit(f"cannot listen on {host}:{port}: {reason}") from None


# What each file name extension holds, as the API's output_format names it.
FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".svg": "svg"}


def _output_format(output: Path | None) -> str | None:
    """The format an output path asks for (by its extension); checks its folder exists."""
    if output is None:
        return None
    folder = output.parent
    if not folder.is_dir():
        raise _say_and_exit(f"cannot write {output}: the folder {folder} does not exist", 2)
    if output.suffix.lower() not in FORMATS:
        known = ", ".join(FORMATS)
        raise _say_and_exit(f"cannot tell the image format of {output}: use one of {known}", 2)
    return FORMATS[output.suffix.lower()]


def _output_paths(output: Path | None, job_id: str, count: int, extension: str) -> list[Path]:
    if output is None:
        return [Path(f"{job_id}-{i}.{extension}") for i in range(count)]
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{i}{output.suffix}") for i in range(count)]


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
    model: Annotated[
        str | None,
        typer.Option("-m", "--model", help="Model slug; default: the workspace default."),
    ] = None,
    n: Annotated[int, typer.Option("-n", help="Number of images.")] = 1,
    size: Annotated[
        str | None, typer.Option("--size", help="WIDTHxHEIGHT, e.g. 1024x1024.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="File to write (numbered when n > 1).")
    ] = None,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Generate images and save them."""

    # Checked before anything is generated (and paid for): where the image goes, and that
    # the format its name asks for is what the model is asked to make.
    output_format = _output_format(output)

    async def main() -> list[Path]:
        body: dict[str, Any] = {"prompt": prompt, "n": n}
        if model:
            body["model"] = model
        if size:
            body["size"] = size
        if output_format:
            body["output_format"] = output_format
        async with _client(url, key) as client:
            with _progress() as progress:
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
                status = f"[red]Job {job['id']} {job['status']}[/red]"
                console.print(f"{status}: {error.get('code')}: {error.get('message')}")
                raise typer.Exit(1)
            outputs = job["outputs"]
            extension = {"image/svg+xml": "svg", "image/jpeg": "jpg", "image/webp": "webp"}.get(
                outputs[0]["content_type"], "png"
            )
            paths = _output_paths(output, job["id"], len(outputs), extension)
            for item, path in zip(outputs, paths, strict=True):
                content = await client.get(f"/v1/files/{item['file_id']}/content")
                if content.status_code != 200:
                    _fail(content)
                try:
                    path.write_bytes(content.content)
                except OSError as exc:
                    reason = exc.strerror or str(exc)
                    raise _say_and_exit(
                        f"cannot write {path}: {reason} (the image is kept as file "
                        f"{item['file_id']}, GET /v1/files/{item['file_id']}/content)"
                    ) from None
                console.print(
                    f"saved {path} ({item['width']}x{item['height']}, {item['content_type']})"
                )
            return paths

    _run(main())


@app.command()
def models(
    url: UrlOption = None,
    key: KeyOption = None,
    source: Annotated[
        bool,
        typer.Option(
            "--source", help="Where each value came from: shipped data, overlay file and line."
        ),
    ] = False,
) -> None:
    """List the catalog's models (admins see all, with which are enabled)."""
    if source:
        from imagegate.cli.catalog import load, print_sources

        print_sources(load(Settings()), out)
        return

    async def main() -> list[dict[str, Any]]:
        async with _client(url, key) as client:
            response = await client.get("/v1/models", params={"all": "true"})
            if response.status_code != 200:
                _fail(response)
            data: list[dict[str, Any]] = response.json()["data"]
            return data

    table = Table("model", "provider", "tier", "region", "enabled", "sizes")
    items = _run(main())
    for item in items:
        enabled = "default" if item["default"] else ("yes" if item["enabled"] else "")
        sizes = ", ".join(item["allowedParams"]["supported_sizes"][:4])
        region = "/".join(item["regions"])
        table.add_row(item["id"], item["owned_by"], item["tier"], region, enabled, sizes)
    _print_table(table, [item["id"] for item in items])


@keys_app.command("create")
def keys_create(
    admin: Annotated[
        bool, typer.Option("--admin", help="The key's member is a workspace admin.")
    ] = False,
    name: Annotated[
        str, typer.Option("--name", help="Name of the member the key belongs to.")
    ] = "member",
) -> None:
    """Create a member of the first workspace and an API key for them; prints the key once."""
    secret = new_member_key(name, "admin" if admin else "member")
    console.print(
        f"Created a{'n admin' if admin else ' member'} key for {name!r}. It is shown only once:"
    )
    out.print(secret)


def new_member_key(name: str, role: str, *, operator: bool = False) -> str:
    """A new member of the first workspace (on the local data dir) and its API key's
    secret; announces the first admin key if this call created the workspace."""
    from sqlalchemy import select

    from imagegate.gateway import Gateway
    from imagegate.services.bootstrap import create_member
    from imagegate.services.keys import create_key
    from imagegate.store.tables import Workspace

    async def main() -> str:
        gateway = Gateway(_settings(), run_workers=False)
        await gateway.start()
        try:
            if gateway.first_admin_key is not None:
                console.print(f"First admin key (shown once): {gateway.first_admin_key}")
            async with gateway.db.session() as session:
                workspace = (
                    await session.execute(select(Workspace).order_by(Workspace.created_at).limit(1))
                ).scalar_one()
                member = await create_member(session, workspace, name, role, operator=operator)
                _, secret = await create_key(session, member, name)
            return secret
        finally:
            await gateway.stop()

    return _run(main())


async def _admin_call(
    url: str | None, key: str | None, method: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    async with _client(url, key) as client:
        response = await client.request(method, path, json=body)
    if response.status_code >= 400:
        _fail(response)
    result: dict[str, Any] = response.json()
    return result


def _badges(item: dict[str, Any]) -> str:
    names = ("premium", "reference_images", "deprecated", "preview")
    labels = {"reference_images": "reference"}
    return " ".join(labels.get(name, name) for name in names if item[name])


@admin_models_app.command("list")
def admin_models_list(url: UrlOption = None, key: KeyOption = None) -> None:
    """Every model, grouped by provider: region, badges, stars, EUR price, enabled, default."""
    listing = _run(_admin_call(url, key, "GET", "/v1/admin/image-models"))
    for warning in listing["warnings"]:
        console.print(f"[yellow]warning[/yellow] {warning['code']}: {warning['message']}")
    table = Table("model", "provider", "region", "badges", "stars", "EUR/img", "enabled")
    ids = []
    for group in listing["providers"]:
        for item in group["models"]:
            state = "default" if item["default"] else ("yes" if item["enabled"] else "")
            stars = "*" * item["stars"] if item["stars"] else "not rated"
            if not item.get("configured", True):
                state += " (no credentials)" if state else "no credentials"
            ids.append(item["id"])
            table.add_row(
                item["id"],
                group["name"],
                "/".join(item.get("regions") or [item["region"]]),
                _badges(item),
                stars,
                item["price"]["eur"],
                state,
            )
    _print_table(table, ids)
    out.print(f"default model: {listing['default_model']}")


def _print_toggle(result: dict[str, Any]) -> None:
    model = result["model"]
    state = "enabled" if model["enabled"] else "disabled"
    note = "" if result["changed"] else " (no change)"
    out.print(f"{model['id']} {state}{note}; default model: {result['default_model']}")


@admin_models_app.command("enable")
def admin_models_enable(
    model: Annotated[str, typer.Argument(help="Model slug.")],
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Enable a model for the workspace's members."""
    body = {"enabled": True}
    _print_toggle(_run(_admin_call(url, key, "PATCH", f"/v1/admin/image-models/{model}", body)))


@admin_models_app.command("disable")
def admin_models_disable(
    model: Annotated[str, typer.Argument(help="Model slug.")],
    replacement: Annotated[
        str | None,
        typer.Option("--replacement", help="New default, when disabling the default model."),
    ] = None,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Disable a model; the default needs --replacement (switched in the same step)."""
    body: dict[str, Any] = {"enabled": False}
    if replacement:
        body["replacement"] = replacement
    _print_toggle(_run(_admin_call(url, key, "PATCH", f"/v1/admin/image-models/{model}", body)))


@admin_models_app.command("default")
def admin_models_default(
    model: Annotated[str, typer.Argument(help="An enabled model's slug.")],
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Set the default model (used when a request names none)."""
    body = {"model": model}
    result = _run(_admin_call(url, key, "PUT", "/v1/admin/image-models/default", body))
    out.print(f"default model: {result['default_model']} (was {result['previous_default_model']})")


@admin_app.command("settings")
def admin_settings(
    image_generation: Annotated[
        bool | None,
        typer.Option("--image-generation/--no-image-generation", help="Turn generation on or off."),
    ] = None,
    billing_mode: Annotated[
        str | None, typer.Option("--billing-mode", help="prepaid, flat or invoiced.")
    ] = None,
    region_policy: Annotated[
        str | None, typer.Option("--region-policy", help="any or eu_only.")
    ] = None,
    margin: Annotated[
        int | None, typer.Option("--margin", help="Margin in percent on EUR prices.")
    ] = None,
    prc_models: Annotated[
        bool | None,
        typer.Option(
            "--prc-models/--no-prc-models",
            help="Opt in to (or out of) models made by PRC-based companies, e.g. qwen-image.",
        ),
    ] = None,
    replacement: Annotated[
        str | None,
        typer.Option("--replacement", help="New default if eu_only disables the current one."),
    ] = None,
    unfiltered_models: Annotated[
        bool | None,
        typer.Option(
            "--unfiltered-models/--no-unfiltered-models",
            help="Let members use models without a provider safety filter (self-hosted).",
        ),
    ] = None,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Show the workspace settings; with options, change them first."""
    changes: dict[str, Any] = {}
    for name, value in (
        ("image_generation_enabled", image_generation),
        ("billing_mode", billing_mode),
        ("region_policy", region_policy),
        ("margin_percent", margin),
        ("prc_models_allowed", prc_models),
        ("replacement", replacement),
        ("unfiltered_models_allowed", unfiltered_models),
    ):
        if value is not None:
            changes[name] = value
    if changes:
        result = _run(_admin_call(url, key, "PATCH", "/v1/admin/settings", changes))
    else:
        result = _run(_admin_call(url, key, "GET", "/v1/admin/settings"))
    for warning in result["warnings"]:
        console.print(f"[yellow]warning[/yellow] {warning['code']}: {warning['message']}")
    for name in (
        "image_generation_enabled",
        "billing_mode",
        "region_policy",
        "margin_percent",
        "prc_models_allowed",
        "unfiltered_models_allowed",
        "default_model",
    ):
        value = result[name]
        out.print(f"{name}: {str(value).lower() if isinstance(value, bool) else value}")
    if result.get("disabled_models"):
        out.print(f"disabled (not EU-hosted): {', '.join(result['disabled_models'])}")


@admin_app.command("audit")
def admin_audit(
    limit: Annotated[int, typer.Option("--limit", help="Newest events to show.")] = 20,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """The audit log of admin changes, newest first."""
    result = _run(_admin_call(url, key, "GET", f"/v1/admin/audit?limit={limit}"))
    table = Table("when", "who", "action", "target", "before", "after")
    for event in result["data"]:
        when = datetime.fromtimestamp(event["created_at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        who = event["actor"]["name"] or event["actor"]["member_id"] or "system"
        table.add_row(
            when,
            who,
            event["action"],
            event["target"],
            json.dumps(event["before"]),
            json.dumps(event["after"]),
        )
    _print_table(table, [])


@providers_app.command("check")
def providers_check(
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for each endpoint.")
    ] = 10.0,
) -> None:
    """Per provider: are credentials set, and does its endpoint answer? Spends nothing."""
    from imagegate.providers.check import check_providers

    results = _run(check_providers(_settings(), within=timeout))
    table = Table("provider", "credentials", "endpoint", "latency")
    table.add_row("mock", "built in", "ok: always available", "")
    failed = False
    for result in results:
        if not result.configured:
            table.add_row(result.provider, "missing", result.detail, "")
            continue
        failed = failed or not result.ok
        status = f"ok: {result.detail}" if result.ok else f"FAILED: {result.detail}"
        latency = f"{result.latency_ms:.0f} ms" if result.latency_ms is not None else ""
        table.add_row(result.provider, f"from {result.source}", status, latency)
    _print_table(table, ["mock", *(result.provider for result in results)])
    if failed:
        raise typer.Exit(1)


@app.command("rotate-signing-key")
def rotate_signing_key() -> None:
    """Sign file links with a new key; links signed before keep working until they expire."""
    from imagegate.gateway import Gateway

    async def main() -> str:
        gateway = Gateway(_settings(), run_workers=False)
        await gateway.start()
        try:
            return await gateway.rotate_signing_key()
        finally:
            await gateway.stop()

    kid = _run(main())
    console.print(f"New signing key {kid}; running gateways pick it up within a sweep interval.")
    out.print(kid)


def _hide_flag_types() -> None:
    """Typer's rich help prints a type after every option, ``<bool>`` even after ``--help``
    and other flags, which take no value: show types only for options that take one."""
    from typer.core import TyperOption

    # Typer releases before the one that added this hook print no type after flags.
    shown: Any = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_flags_hidden", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._flags_hidden = True  # type: ignore[attr-defined]
    setattr(TyperOption, "display_type_rich", display_type_rich)  # noqa: B010


_hide_flag_types()


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        app()
    except ValidationError as exc:
        if exc.title != Settings.__name__:
            raise
        # A bad IMAGEGATE_* variable: say which, and what it must be, not a traceback.
        _print_settings_errors(exc)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(file=sys.stderr)
        raise SystemExit(130) from None
    except ValueError as exc:
        # Imported here: the catalog's models take a quarter second to import, which a
        # command that calls a remote gateway does not need.
        from imagegate.catalog.overlay import CatalogError

        if not isinstance(exc, CatalogError):
            raise
        # A broken overlay: its file, line and field, not a traceback.
        console.print("[red]The catalog did not load:[/red]")
        console.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
