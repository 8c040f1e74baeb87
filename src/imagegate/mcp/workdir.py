"""The agent's working directory over stdio: where ``out`` is written and sources are read.

Paths are relative to it and must stay inside it: an absolute path, ``..`` or a symlink
that leads outside is refused, as is anything that is not a regular file to read.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath

from imagegate.mcp.errors import ToolError

EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/avif": ".avif",
    "image/svg+xml": ".svg",
}
# What Pillow can write an output as, when ``out`` asks for another format.
CONVERTIBLE = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def relative_path(value: object, param: str, root: Path | None = None) -> PurePath:
    """``value`` as a relative path that does not climb out with ``..``; the working
    directory's own checks (symlinks) come on top of this one."""
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise ToolError(f"Invalid value for {param!r}: expected a path.", param=param)
    relative = PurePath(value)
    where = f" ({root})" if root is not None else ""
    if relative.is_absolute() or value.startswith("~"):
        raise ToolError(
            f"Invalid value for {param!r}: {value!r} is absolute; give a path relative "
            f"to the working directory{where}.",
            code="path_outside_workdir",
            param=param,
        )
    depth = 0
    for part in relative.parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            raise ToolError(
                f"Invalid value for {param!r}: {value!r} leads outside the working "
                f"directory{where}.",
                code="path_outside_workdir",
                param=param,
            )
    return relative


def numbered(out: str, count: int, content_type: str) -> list[str]:
    """The name of each of ``count`` outputs: ``out`` itself, or ``name-1.ext`` …; without
    a suffix, the output's own extension is added."""
    path = PurePath(out)
    if not path.suffix:
        path = path.with_name(path.name + EXTENSIONS.get(content_type, ".png"))
    if count == 1:
        return [path.as_posix()]
    return [path.with_name(f"{path.stem}-{i}{path.suffix}").as_posix() for i in range(1, count + 1)]


class Workdir:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _inside(self, value: str, param: str) -> Path:
        relative = relative_path(value, param, self.root)
        resolved = (self.root / relative).resolve()  # follows symlinks, and resolves ..
        if not resolved.is_relative_to(self.root):
            raise ToolError(
                f"Invalid value for {param!r}: {value!r} leads outside the working "
                f"directory ({self.root}).",
                code="path_outside_workdir",
                param=param,
            )
        return resolved

    def source(self, value: str, param: str) -> Path:
        path = self._inside(value, param)
        if not path.is_file():
            raise ToolError(
                f"Invalid value for {param!r}: no file {value!r} in the working directory. "
                "Give a path relative to it, an https URL, a file id or a data URI.",
                code="file_not_found",
                param=param,
            )
        return path

    def outputs(self, out: str, count: int, content_type: str) -> list[Path]:
        """Where each of ``count`` outputs goes (see :func:`numbered`), each checked."""
        if self._inside(out, "out").is_dir():
            raise ToolError(
                f"Invalid value for 'out': {out!r} is a directory; give a file name.",
                param="out",
            )
        return [self._inside(name, "out") for name in numbered(out, count, content_type)]

    def write(self, path: Path, data: bytes) -> str:
        """Write ``data`` at ``path`` (checked by :meth:`outputs`), making its folders;
        the path as the agent would name it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        # Checked again once the folders exist: one may have been a symlink made meanwhile.
        if not path.parent.resolve().is_relative_to(self.root) or path.is_symlink():
            raise ToolError(
                f"Invalid value for 'out': {path} leads outside the working directory.",
                code="path_outside_workdir",
                param="out",
            )
        temporary = path.with_name(f".{path.name}.part")
        temporary.write_bytes(data)
        os.replace(temporary, path)
        return path.relative_to(self.root).as_posix()
