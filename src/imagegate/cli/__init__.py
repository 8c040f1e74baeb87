"""The ``imagegate`` command: one Typer app; each module below adds its commands to it."""

from imagegate.cli import mcp as _mcp  # noqa: F401  (adds ``imagegate mcp``)
from imagegate.cli.main import app, main

__all__ = ["app", "main"]
