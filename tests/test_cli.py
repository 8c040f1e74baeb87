"""The ``imagegate`` command as a user types it."""

from __future__ import annotations

import os
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
