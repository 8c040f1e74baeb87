"""docs/files.md names every setting, endpoint and error code of files and storage."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from imagegate.config import Settings

DOC = (Path(__file__).parent.parent / "docs" / "files.md").read_text()
SRC = Path(__file__).parent.parent / "src" / "imagegate"
FILE_SETTINGS = [
    name
    for name in Settings.model_fields
    if name.startswith(
        ("blob_", "s3_", "upload_", "output_retention", "retention_", "signing_", "url_")
    )
]
CODES = sorted(
    set(re.findall(r'code=\s*"([a-z_]+)"', (SRC / "services" / "files.py").read_text()))
    | set(re.findall(r'code=\s*"([a-z_]+)"', (SRC / "api" / "files.py").read_text()))
    # the checks every source image gets, uploads included
    | set(re.findall(r'code=\s*"([a-z_]+)"', (SRC / "services" / "sources.py").read_text()))
)


@pytest.mark.parametrize("name", FILE_SETTINGS)
def test_every_files_setting_is_documented(name: str) -> None:
    assert f"IMAGEGATE_{name.upper()}" in DOC


@pytest.mark.parametrize("code", CODES)
def test_every_error_code_is_documented(code: str) -> None:
    assert f"`{code}`" in DOC


def test_there_are_codes_to_check() -> None:
    assert {"image_too_large", "invalid_image", "content_type_mismatch"} <= set(CODES)
    assert len(FILE_SETTINGS) >= 10


@pytest.mark.parametrize(
    "endpoint",
    [
        "POST /v1/files",
        "GET /v1/files",
        "GET /v1/files/{id}",
        "GET /v1/files/{id}/content",
        "DELETE /v1/files/{id}",
    ],
)
def test_every_endpoint_is_documented(endpoint: str) -> None:
    assert endpoint in DOC
