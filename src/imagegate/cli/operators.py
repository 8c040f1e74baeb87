"""``imagegate operators``: keys with the instance-wide operator role (docs/admin.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from imagegate.cli.main import _run, app, console, out
from imagegate.config import Settings

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
                workspace = (
                    await session.execute(select(Workspace).order_by(Workspace.created_at).limit(1))
                ).scalar_one()
                member = await create_member(session, workspace, name, "member", operator=True)
                _, secret = await create_key(session, member, name)
            return secret
        finally:
            await gateway.stop()

    secret = _run(main())
    console.print(f"Created an operator key for {name!r}. It is shown only once:")
    out.print(secret)
