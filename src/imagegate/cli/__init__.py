"""The ``imagegate`` command: one Typer app; each module below adds its commands to it."""

from imagegate.cli import console as _console  # noqa: F401  (adds ``imagegate console``)
from imagegate.cli import local as _local  # noqa: F401  (adds the local-worker command)
from imagegate.cli import mcp as _mcp  # noqa: F401  (adds ``imagegate mcp``)
from imagegate.cli import operators as operators
from imagegate.cli import roles  # noqa: F401  (adds `imagegate worker`)
from imagegate.cli import upscale as upscale
from imagegate.cli.main import app, main

__all__ = ["app", "main"]
