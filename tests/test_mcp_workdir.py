"""Where the MCP tool writes and reads over stdio, and the preview it sends inline."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from imagegate.mcp.errors import ToolError
from imagegate.mcp.tool import converted, preview
from imagegate.mcp.workdir import Workdir


@pytest.fixture
def workdir(tmp_path: Path) -> Workdir:
    root = tmp_path / "work"
    root.mkdir()
    (tmp_path / "secret.png").write_bytes(b"outside")
    (root / "out").symlink_to(tmp_path)
    (root / "leak.png").symlink_to(tmp_path / "secret.png")
    return Workdir(root)


@pytest.mark.parametrize(
    "value", ["../x.png", "/etc/x.png", "~/x.png", "a/../../x.png", "out/x.png", "leak.png"]
)
def test_paths_that_leave_the_workdir_are_refused(workdir: Workdir, value: str) -> None:
    with pytest.raises(ToolError) as refused:
        workdir.outputs(value, 1, "image/png")
    assert refused.value.code == "path_outside_workdir" and refused.value.param == "out"
    with pytest.raises(ToolError) as also:
        workdir.source(value, "image_url")
    assert also.value.code == "path_outside_workdir" and also.value.param == "image_url"


def test_outputs_are_numbered_and_get_an_extension(workdir: Workdir) -> None:
    root = workdir.root
    assert workdir.outputs("a/b/cat.png", 1, "image/png") == [root / "a/b/cat.png"]
    assert workdir.outputs("cat", 1, "image/jpeg") == [root / "cat.jpg"]
    assert workdir.outputs("cat.webp", 2, "image/png") == [root / "cat-1.webp", root / "cat-2.webp"]
    saved = workdir.write(root / "a/b/cat.png", b"png")
    assert saved == "a/b/cat.png" and (root / "a/b/cat.png").read_bytes() == b"png"


def test_a_missing_source_says_what_else_to_give(workdir: Workdir) -> None:
    with pytest.raises(ToolError) as missing:
        workdir.source("nope.png", "image_url")
    assert missing.value.code == "file_not_found" and "https URL" in missing.value.message


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, (10, 200, 30, 128)[: len(mode)]).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_preview_is_small() -> None:
    small = preview(_png((3000, 1500)))
    assert small is not None
    data, mime = small
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (512, 256) and mime == "image/jpeg"
    assert len(data) < 100_000
    transparent = preview(_png((600, 600), "RGBA"))
    assert transparent is not None and transparent[1] == "image/png"
    assert preview(b"<svg xmlns='http://www.w3.org/2000/svg'/>") is None


def test_out_with_another_suffix_is_converted() -> None:
    with Image.open(io.BytesIO(converted(_png((40, 30), "RGBA"), ".jpg"))) as image:
        assert image.format == "JPEG" and image.size == (40, 30)


async def test_an_unreachable_gateway_is_a_tool_error(tmp_path: Path) -> None:
    import httpx

    from imagegate.catalog import load_catalog
    from imagegate.config import Settings
    from imagegate.mcp.tool import ImageTool

    settings = Settings(data_dir=tmp_path)
    tool = ImageTool(load_catalog(settings.catalog_dirs), workdir=Workdir(tmp_path))

    async def progress(step: float, message: str) -> None:
        pass

    async with httpx.AsyncClient(base_url="http://127.0.0.1:9") as client:
        result = await tool.call(client, {"prompt": "x", "mock": True}, progress)
    assert result.is_error
    text = result.content[0]
    assert text.type == "text" and "gateway_unreachable" in text.text
