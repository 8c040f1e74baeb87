"""The ``imagegate`` command: one Typer app; each module below adds its commands to it."""

from imagegate.cli import operators as operators
from imagegate.cli import upscale as upscale
from imagegate.cli.main import app, main

__all__ = ["app", "main"]
