"""Every ```sh and ```python block of README.md and docs/*.md, run against a running gateway.

What is run: blocks fenced ``sh`` or ``python``. Blocks fenced otherwise (``json``,
``text``, ``console``, ``yaml``, or nothing) are not: fence that way what cannot run here
(output, a config file, a command that installs something or serves until stopped).

How each block runs:

- One gateway for the whole module: ``python -m imagegate serve`` on a free port with a
  fresh data dir and SQLite, with no provider credentials (only the free mock models).
- ``127.0.0.1:8000`` in a block becomes that gateway's address.
- The environment is what docs/quickstart.md tells a user to export after the first
  start: ``IMAGEGATE_URL`` (CLI commands call the gateway) and ``IMAGEGATE_API_KEY`` (the
  admin key the first start printed), plus ``IMAGEGATE_DATA_DIR`` (the gateway's, for the
  in-process commands such as ``imagegate keys create``). ``imagegate``, ``python`` and
  ``.venv/bin/…`` are this interpreter's.
- A page's blocks run in order, in one working folder of their own: a block may use a file
  that an earlier block of the page wrote.
- ``sh`` runs under ``bash -euo pipefail``, ``python`` under this interpreter; a block
  passes when it exits 0 within 60 s.
- A block that needs more says so on the line before its fence, e.g.
  ``<!-- docs-test: env IMAGEGATE_MOCK_LATENCY_SECONDS=0 OTHER=value -->``; the comment is
  invisible on the rendered page.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"sh", "python"}
DOCS_ADDRESS = "127.0.0.1:8000"
FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
MARKER = re.compile(r"<!--\s*docs-test:\s*env\s+(.*?)\s*-->\s*$")
# Credentials of real providers: the gateway under test must reach none of them.
PROVIDER_VARIABLES = (
    "OPENAI_API_KEY",
    "BFL_API_KEY",
    "FAL_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
    "VERTEX_ACCESS_TOKEN",
    "REPLICATE_API_TOKEN",
    "RECRAFT_API_TOKEN",
    "XAI_API_KEY",
)


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    code: str
    env: dict[str, str]

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _env_marker(text: str, start: int) -> dict[str, str]:
    before = text[:start].rstrip("\n").rsplit("\n", 1)[-1]
    found = MARKER.search(before)
    if found is None:
        return {}
    pairs = (item.split("=", 1) for item in shlex.split(found.group(1)))
    return {name: value for name, value in pairs}


def blocks() -> list[Block]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) in RUN:
                line = text.count("\n", 0, match.start()) + 1
                env = _env_marker(text, match.start())
                found.append(Block(page, line, match.group(1), match.group(2), env))
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _clean_env() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("IMAGEGATE_") and name not in PROVIDER_VARIABLES
    }


@dataclass(frozen=True)
class Gateway:
    url: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("docs-gateway")
    port = _free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = _clean_env() | {
        "IMAGEGATE_DATA_DIR": str(home / "data"),
        "IMAGEGATE_PORT": str(port),
        "IMAGEGATE_LOG_LEVEL": "warning",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    url = f"http://127.0.0.1:{port}"
    log_path = home / "serve.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "imagegate", "serve"], env=env, stdout=log, stderr=log
        )
    try:
        key = _first_key(url, log_path, server)
        yield Gateway(url, env | {"IMAGEGATE_URL": url, "IMAGEGATE_API_KEY": key})
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _first_key(url: str, log_path: Path, server: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the gateway exited with {server.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    else:
        pytest.fail(f"the gateway did not answer within 60 s:\n{log_path.read_text()}")
    found = re.search(r"\big_[A-Za-z0-9_-]{20,}", log_path.read_text())
    assert found, f"no admin key in the first start's output:\n{log_path.read_text()}"
    return found.group(0)


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Path]:
    return {}


def _workdir(tmp_path_factory: pytest.TempPathFactory, page: Path) -> Path:
    folder = tmp_path_factory.mktemp(page.stem)
    # ``.venv/bin/imagegate`` as the README writes it: this interpreter's environment.
    (folder / ".venv").symlink_to(Path(sys.executable).parent.parent)
    return folder


@pytest.mark.parametrize("block", blocks(), ids=lambda block: block.id)
def test_doc_example_runs(
    block: Block,
    gateway: Gateway,
    workdirs: dict[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = workdirs.get(block.page)
    if folder is None:
        folder = workdirs[block.page] = _workdir(tmp_path_factory, block.page)
    code = block.code.replace(DOCS_ADDRESS, gateway.url.removeprefix("http://"))
    if block.language == "sh":
        command = ["bash", "-euo", "pipefail", "-c", code]
    else:
        command = [sys.executable, "-c", code]
    done = subprocess.run(
        command,
        cwd=folder,
        env=gateway.env | block.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, (
        f"{block.id} exited with {done.returncode}\n--- block\n{block.code}"
        f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    )


def test_the_harness_finds_the_examples() -> None:
    found = blocks()
    pages = {block.page.name for block in found}
    assert {"README.md", "quickstart.md", "admin.md"} <= pages
    assert {block.language for block in found} == RUN


def test_docs_and_the_api_name_public_sources_not_internal_ones() -> None:
    from imagegate.catalog import load_catalog

    internal = re.compile(r"\bseeds? ?0\d\d|seed-0\d\d", re.I)
    pages = [page.name for page in PAGES if internal.search(page.read_text())]
    assert pages == []
    said = [
        model.slug
        for model in load_catalog()
        if internal.search(model.price.source) or internal.search(model.provenance)
    ]
    assert said == []


def test_a_comment_before_a_block_gives_it_environment() -> None:
    page = (
        "Text.\n\n<!-- docs-test: env GREETING='hello world' N=2 -->\n```sh\necho $GREETING\n```\n"
    )
    start = page.index("```sh")
    assert _env_marker(page, start) == {"GREETING": "hello world", "N": "2"}
    assert _env_marker("```sh\necho\n```\n", 0) == {}
