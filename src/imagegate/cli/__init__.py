"""The ``imagegate`` command: one Typer app; each module below adds its commands to it."""

from imagegate.cli import console as _console  # noqa: F401  (adds ``imagegate console``)
from imagegate.cli.main import app, main

__all__ = ["app", "main"]
