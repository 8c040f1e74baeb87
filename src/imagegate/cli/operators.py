"""``imagegate operators``: keys with the instance-wide operator role (docs/admin.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from imagegate.cli.main import app, console, new_member_key, out

operators_app = typer.Typer(
    help="Operators: the instance-wide role that grants credits to any workspace.",
    no_args_is_help=True,
)
app.add_typer(operators_app, name="operators")


@operators_app.command("create")
def operators_create(
    name: Annotated[str, typer.Option("--name", help="Name of the operator.")] = "operator",
) -> None:
    """Create an operator (a member of the first workspace, with the operator role) and an
    API key for them; prints the key once."""
    secret = new_member_key(name, "member", operator=True)
    console.print(f"Created an operator key for {name!r}. It is shown only once:")
    out.print(secret)
