"""``imagegate console …``: the web console's sign-in links, from the server's machine."""

from __future__ import annotations

from typing import Annotated

import typer

from imagegate.cli.main import _run, app, console, out
from imagegate.config import Settings

console_app = typer.Typer(help="The web console: sign-in links.", no_args_is_help=True)
app.add_typer(console_app, name="console")


@console_app.command("invite")
def console_invite(
    member: Annotated[
        str | None,
        typer.Argument(help="A member's id or name; the first admin when left out."),
    ] = None,
) -> None:
    """Print a one-time link with which a member sets their console password (a lost
    password too); valid for 7 days."""
    from imagegate.errors import NotFound
    from imagegate.gateway import Gateway
    from imagegate.web.first_start import invite_link

    async def main() -> tuple[str, str]:
        gateway = Gateway(Settings(), run_workers=False)
        await gateway.start()
        try:
            if gateway.first_admin_key is not None:
                console.print(f"First admin key (shown once): {gateway.first_admin_key}")
            found, link = await invite_link(gateway, member)
            return found.name, link
        finally:
            await gateway.stop()

    try:
        name, link = _run(main())
    except NotFound as exc:
        console.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from None
    console.print(f"One-time link for {name} to set a console password:")
    out.print(link)
