"""Errors that read well: each says once what was wrong and where the caller wrote it."""

from __future__ import annotations

import httpx

from tests.governance import GEN
from tests.helpers import assert_error


async def test_an_enum_error_lists_the_choices_once(client: httpx.AsyncClient) -> None:
    response = await client.post(
        GEN, json={"model": "gpt-image-1", "prompt": "p", "quality": "ultra", "mock": True}
    )
    error = assert_error(response, 400, "invalid_parameter", "quality")
    assert error["message"] == (
        "Invalid value for 'quality': 'ultra'. Allowed: one of 'auto', 'low', 'medium', 'high'."
    )


async def test_a_range_of_one_value_says_exactly(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/jobs/dall-e-3", json={"prompt": "p", "n": 2, "mock": True})
    error = assert_error(response, 400, "invalid_parameter", "n")
    assert error["message"].endswith("Allowed: integer exactly 1.")


async def test_a_bad_file_id_is_named_where_the_caller_wrote_it(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/images/edits", json={"prompt": "p", "images": [{"file_id": "file_nope"}]}
    )
    assert_error(response, 404, "file_not_found", "images[0].file_id")


async def test_the_async_answer_has_the_jobs_api_shape(client: httpx.AsyncClient) -> None:
    response = await client.post(GEN, json={"prompt": "p"}, headers={"Prefer": "respond-async"})
    assert response.status_code == 202, response.text
    assert response.json()["outputs"] == []
    assert response.json()["status"] in ("queued", "running", "succeeded")
