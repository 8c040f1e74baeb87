"""The ``imagegate`` command: one Typer app; each module below adds its commands to it."""

from imagegate.cli import roles  # noqa: F401  (adds `imagegate worker`)
from imagegate.cli.main import app, main

__all__ = ["app", "main"]
