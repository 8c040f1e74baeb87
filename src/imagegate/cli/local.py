"""``imagegate local-worker MODEL_DIR``: the local runner as a process of its own, without
the worker's HTTP port. ``imagegate worker --local MODEL_DIR`` (cli/roles.py) is the same
runner as a full worker; both load it with :mod:`imagegate.local.worker`.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Annotated

import typer

from imagegate.cli.main import app, console
from imagegate.config import Settings


@app.command("local-worker")
def local_worker(
    model_dir: Annotated[
        Path,
        typer.Argument(
            exists=True, file_okay=False, help="A diffusers pipeline folder (save_pretrained)."
        ),
    ],
    name: Annotated[
        str, typer.Option(help="The provider name of the catalog route it serves.")
    ] = "local",
    device: Annotated[
        str, typer.Option(help="auto (cuda, then mps, then cpu), or a torch device.")
    ] = "auto",
    dtype: Annotated[
        str | None, typer.Option(help="torch dtype, e.g. float16; default: float16 on cuda.")
    ] = None,
    max_batch: Annotated[
        int, typer.Option(min=1, help="Images of the same shape run in one batch, at most.")
    ] = 8,
    poll_interval: Annotated[
        float, typer.Option(min=0.01, help="Seconds between looks for queued jobs.")
    ] = 0.1,
) -> None:
    """Run the jobs routed to a local diffusers pipeline (needs imagegate[local])."""
    from imagegate.local.worker import serve_local

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve_local(
                Settings(),
                model_dir,
                name=name,
                device=device,
                dtype=dtype,
                max_batch=max_batch,
                poll_interval=poll_interval,
                announce=console.print,
            )
        )
