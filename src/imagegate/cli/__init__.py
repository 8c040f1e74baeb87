"""The ``imagegate`` command: one Typer app; each module below adds its commands to it."""

from imagegate.cli import upscale as _upscale  # noqa: F401  (adds `imagegate upscale`)
from imagegate.cli.main import app, main

__all__ = ["app", "main"]
