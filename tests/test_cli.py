"""The ``imagegate`` command as a user types it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from imagegate.cli import app


@pytest.fixture
def local_data(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IMAGEGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMAGEGATE_DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_generate_in_process_writes_images(local_data: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["generate", "a lighthouse", "-n", "2", "--size", "512x512", "-o", "out.png"]
    )
    assert result.exit_code == 0, result.output
    for name in ("out-0.png", "out-1.png"):
        with Image.open(local_data / name) as image:
            assert (image.format, image.size) == ("PNG", (512, 512))


def test_generate_reports_bad_input(local_data: Path) -> None:
    result = CliRunner().invoke(app, ["generate", "p", "--size", "13x7"])
    assert result.exit_code == 1
    assert "invalid_parameter" in result.output
    assert "13x7" in result.output


def test_keys_create_prints_a_working_key_once(local_data: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["keys", "create", "--admin", "--name", "ops"])
    assert first.exit_code == 0, first.output
    keys = [line.strip() for line in first.output.splitlines() if line.strip().startswith("ig_")]
    assert len(keys) == 1
    models = runner.invoke(app, ["models"])
    assert models.exit_code == 0, models.output
    assert "mock-image" in models.output
    assert "default" in models.output


def test_generate_needs_a_key_with_url(local_data: Path) -> None:
    result = CliRunner().invoke(app, ["generate", "p", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "--key" in result.output


def test_a_bad_setting_is_named_not_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "IMAGEGATE_DATA_DIR": str(tmp_path), "IMAGEGATE_WORKERS": "0"}
    env["IMAGEGATE_PORT"] = "eighty"
    done = subprocess.run(
        [sys.executable, "-m", "imagegate", "serve"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    message = " ".join(done.stderr.split())  # Rich wraps long lines
    assert "Invalid IMAGEGATE_WORKERS: Input should be greater than or equal to 1" in message
    assert "Invalid IMAGEGATE_PORT" in message and "'eighty'" in message
    assert "Traceback" not in done.stderr


def test_upscale_writes_the_input_times_the_factor(local_data: Path) -> None:
    Image.new("RGB", (120, 90), (0, 90, 200)).save(local_data / "small.png")
    enabled = CliRunner().invoke(app, ["admin", "models", "enable", "topaz_upscale_image"])
    assert enabled.exit_code == 0, enabled.output
    result = CliRunner().invoke(
        app, ["upscale", "small.png", "--factor", "2", "-o", "big.png", "--mock"]
    )
    assert result.exit_code == 0, result.output
    assert "240x180" in result.output
    with Image.open(local_data / "big.png") as image:
        assert image.size == (240, 180)
    missing = CliRunner().invoke(app, ["upscale", "nothing.png"])
    assert missing.exit_code == 2 and "No such file" in missing.output


def _lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def test_an_unreachable_url_is_one_line(local_data: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = CliRunner().invoke(
        app, ["generate", "p", "--url", f"http://127.0.0.1:{port}", "--key", "ig_x"]
    )
    assert result.exit_code == 1
    assert _lines(result.output) == [
        f"Error cannot reach the gateway http://127.0.0.1:{port}/: All connection attempts failed"
    ]


def test_a_missing_output_folder_is_refused_before_generating(local_data: Path) -> None:
    result = CliRunner().invoke(app, ["generate", "p", "-o", "missing/dir/x.png"])
    assert result.exit_code == 2
    assert _lines(result.output) == [
        "Error cannot write missing/dir/x.png: the folder missing/dir does not exist"
    ]
    assert not (local_data / "data").exists()  # refused before the gateway was opened


def test_the_format_follows_the_extension(local_data: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["generate", "p", "--size", "256x256", "-o", "out.jpg"])
    assert result.exit_code == 0, result.output
    with Image.open(local_data / "out.jpg") as image:
        assert image.format == "JPEG"
    vector = runner.invoke(app, ["generate", "p", "-m", "mock-vector", "-o", "v.png"])
    assert vector.exit_code == 1
    assert "output_format" in vector.output and "svg" in vector.output
    assert not (local_data / "v.png").exists()
    assert runner.invoke(app, ["generate", "p", "-m", "mock-vector", "-o", "v.svg"]).exit_code == 0
    assert (local_data / "v.svg").read_bytes().startswith(b"<svg")


def test_the_data_dir_is_the_users_from_any_folder(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IMAGEGATE_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("IMAGEGATE_DATABASE_URL", database_url)
    outputs = []
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        result = CliRunner().invoke(app, ["keys", "create", "--name", folder])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert "First admin key" in outputs[0]
    assert "First admin key" not in outputs[1]  # the same workspace, not a second one
    assert (tmp_path / "xdg" / "imagegate" / "blobs").is_dir()
    assert not (tmp_path / "one" / ".imagegate").exists()


def test_help_shows_no_type_after_flags() -> None:
    result = CliRunner().invoke(app, ["admin", "settings", "--help"], terminal_width=120)
    assert result.exit_code == 0
    assert "<bool>" not in result.output
    assert "<int>" in result.output  # options that take a value still say which


def test_piped_tables_keep_every_slug_whole(local_data: Path) -> None:
    result = CliRunner().invoke(app, ["admin", "models", "list"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    slugs = [row.split("│")[1].strip() for row in rows]
    assert "gemini-3.1-flash-image-mini" in slugs
    assert not any(slug.endswith("…") for slug in slugs)
    assert "not rated" in result.output


def test_a_failed_generation_prints_no_spinner_when_piped(local_data: Path) -> None:
    result = CliRunner().invoke(app, ["generate", "p", "-m", "no-such-model"])
    assert result.exit_code == 1
    # The first call on a new data dir may announce the admin key; then the error, last.
    assert _lines(result.output)[-1] == (
        "Error 404 model_not_found: The model 'no-such-model' does not exist. "
        "List models with GET /v1/models."
    )
    assert "submitting" not in result.output and "no-such-model:" not in result.output


def test_serve_refuses_a_port_out_of_range(local_data: Path) -> None:
    result = CliRunner().invoke(app, ["serve"], env={"IMAGEGATE_PORT": "99999"})
    assert result.exit_code == 2
    assert "Invalid IMAGEGATE_PORT: Input should be less than or equal to 65535" in result.output


def test_serve_on_a_busy_port_says_so_before_listening(local_data: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--port", str(port)])
    assert result.exit_code == 1
    assert _lines(result.output) == [
        f"Error cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
