"""What hostile or careless callers tried: deep JSON, idempotency variations, loose types,
sync_mode jobs, members acting on each other's work, credit minting, a starved pool."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
from sqlalchemy import select

from imagegate.config import Settings
from imagegate.errors import ContentPolicyViolation
from imagegate.gateway import Gateway
from imagegate.providers.base import ProviderRequest, ProviderResult
from imagegate.providers.fake import FakeProvider
from imagegate.providers.registry import ProviderRegistry
from imagegate.services.bootstrap import create_member, create_workspace
from imagegate.services.keys import create_key
from imagegate.store.db import Database
from imagegate.store.tables import Workspace
from tests.billing_support import credits, grant, running_gateway
from tests.governance import as_key, new_member
from tests.helpers import assert_error

GEN = "/v1/images/generations"


def nested(depth: int, leaf: str = '"x"') -> str:
    """JSON text of objects nested ``depth`` deep (too deep for the json module to write)."""
    return '{"a":' * depth + leaf + "}" * depth


# ---- deep JSON -------------------------------------------------------------------------


async def test_deep_json_is_a_400_not_a_500(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "deep", "Content-Type": "application/json"}
    for depth, leaf in ((300, '"x"'), (1000, '"nul\\u0000"'), (40, "[[1]]")):
        body = '{"prompt": "p", "extra": ' + nested(depth, leaf) + "}"
        for path in (GEN, "/v1/jobs/mock-image", "/v1/pricing/estimate", "/v1/files"):
            response = await client.post(path, content=body, headers=headers)
            error = assert_error(response, 400, "invalid_json")
            assert "deeper than 32" in error["message"]
    # shallow nesting still reaches the model's checks
    shallow = '{"prompt": "p", "size": "256x256", "extra": ' + nested(5) + "}"
    refused = await client.post(GEN, content=shallow, headers=headers)
    assert_error(refused, 400, "invalid_parameter", "extra")


# ---- idempotency -----------------------------------------------------------------------


async def test_a_corrected_webhook_with_the_same_key_is_a_422(settings: Settings) -> None:
    settings.webhooks_allow_loopback = True
    async with running_gateway(settings, run_workers=False) as (client, _):
        headers = {"Idempotency-Key": "hook"}
        body = {"prompt": "p", "webhook_url": "http://127.0.0.1:9/old"}
        first = await client.post("/v1/jobs/mock-image", json=body, headers=headers)
        assert first.status_code == 202, first.text
        again = await client.post("/v1/jobs/mock-image", json=body, headers=headers)
        assert again.json()["job_id"] == first.json()["job_id"]
        corrected = {**body, "webhook_url": "http://127.0.0.1:9/new"}
        moved = await client.post("/v1/jobs/mock-image", json=corrected, headers=headers)
        assert_error(moved, 422, "idempotency_key_reused", "idempotency_key")
        dropped = await client.post("/v1/jobs/mock-image", json={"prompt": "p"}, headers=headers)
        assert_error(dropped, 422, "idempotency_key_reused", "idempotency_key")


# ---- strict types ----------------------------------------------------------------------


async def test_credit_amounts_are_json_numbers_only(client: httpx.AsyncClient) -> None:
    for amount in ("5", "5.5", True, None, [5], {"value": 5}):
        response = await client.post("/v1/admin/credits/grants", json={"amount": amount})
        assert_error(response, 400, "invalid_parameter", "amount")
    assert (await client.get("/v1/credits")).json()["available"] == 0
    ok = await client.post("/v1/admin/credits/grants", json={"amount": 2.5})
    assert ok.status_code == 200, ok.text
    assert ok.json()["available"] == 2.5


async def test_sizes_take_ascii_digits_and_nothing_around_them(client: httpx.AsyncClient) -> None:
    arabic_indic = "\u0662\u0665\u0666"  # 256 in Arabic-Indic digits
    fullwidth = "\uff12\uff15\uff16"
    for size in (
        f"{arabic_indic}x{arabic_indic}",
        f"{fullwidth}x256",
        "256x256\n",
        " 256x256",
        "256x256 ",
        "256X256",
    ):
        response = await client.post(GEN, json={"prompt": "p", "size": size})
        assert_error(response, 400, "invalid_parameter", "size")
    for ratio in ("\u0661:\u0661", "1:1\n", " 1:1"):
        body = {"prompt": "p", "aspect_ratio": ratio}
        response = await client.post("/v1/jobs/mock-image", json=body)
        assert response.status_code == 400, (ratio, response.text)
    ok = await client.post(GEN, json={"prompt": "p", "size": "256x256"})
    assert ok.status_code == 200, ok.text


async def test_an_integral_json_number_is_an_integer(client: httpx.AsyncClient) -> None:
    changed = await client.patch("/v1/admin/settings", json={"margin_percent": 25.0})
    assert changed.status_code == 200, changed.text
    assert changed.json()["margin_percent"] == 25
    for value in (25.5, "25", True):
        refused = await client.patch("/v1/admin/settings", json={"margin_percent": value})
        assert_error(refused, 400, "invalid_parameter", "margin_percent")


async def test_an_audit_cursor_outside_the_ids_is_a_400(client: httpx.AsyncClient) -> None:
    for before in (-1099511627777, 0, 2**31, 2**63):
        response = await client.get("/v1/admin/audit", params={"before": before})
        assert_error(response, 400, "invalid_parameter", "before")
    assert (await client.get("/v1/admin/audit", params={"before": 5})).status_code == 200


# ---- sync_mode on the jobs API ---------------------------------------------------------


async def test_sync_mode_jobs_answer_inline_or_are_refused(client: httpx.AsyncClient) -> None:
    body = {"prompt": "p", "sync_mode": True}
    refused = await client.post("/v1/jobs/mock-image", json=body)
    error = assert_error(refused, 400, "invalid_parameter", "sync_mode")
    assert "Prefer: wait" in error["message"]
    assert (await client.get("/v1/jobs")).json()["data"] == []

    headers = {"Prefer": "wait=20", "Idempotency-Key": "inline"}
    answered = await client.post("/v1/jobs/mock-image", json=body, headers=headers)
    assert answered.status_code == 200, answered.text
    job = answered.json()
    assert job["status"] == "succeeded"
    assert job["sync_mode"] is True and "not kept" in job["notice"]
    [output] = job["outputs"]
    prefix = "data:image/png;base64,"
    assert output["url"].startswith(prefix)
    assert base64.b64decode(output["url"][len(prefix) :])[:8] == b"\x89PNG\r\n\x1a\n"

    replay = await client.post("/v1/jobs/mock-image", json=body, headers=headers)
    error = assert_error(replay, 410, "sync_mode_not_kept", "sync_mode")
    assert error["job_id"] == job["job_id"] and "not kept" in error["message"]
    polled = (await client.get(f"/v1/jobs/{job['job_id']}")).json()
    assert polled["outputs"] == [] and "not kept" in polled["notice"]


async def test_an_images_api_sync_mode_replay_says_the_images_are_gone(
    client: httpx.AsyncClient,
) -> None:
    body = {"prompt": "p", "size": "256x256", "sync_mode": True}
    headers = {"Idempotency-Key": "once"}
    first = await client.post(GEN, json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["data"][0]["b64_json"]
    replay = await client.post(GEN, json=body, headers=headers)
    assert_error(replay, 410, "sync_mode_not_kept")


# ---- members, admins, operators --------------------------------------------------------


async def test_members_see_and_act_on_their_own_jobs_and_files_only(
    client: httpx.AsyncClient,
) -> None:
    _, ann_key = await new_member(client, "ann")
    _, bob_key = await new_member(client, "bob")
    async with as_key(client, ann_key) as ann, as_key(client, bob_key) as bob:
        admins = await client.post("/v1/jobs/mock-image", json={"prompt": "admin's"})
        anns = await ann.post(GEN, json={"prompt": "ann's", "size": "256x256"})
        assert admins.status_code == 202 and anns.status_code == 200, anns.text
        admin_job, ann_job = admins.json()["job_id"], anns.json()["job_id"]
        ann_file = anns.json()["data"][0]["file_id"]

        listed = (await bob.get("/v1/jobs")).json()["data"]
        assert listed == []
        assert [j["job_id"] for j in (await ann.get("/v1/jobs")).json()["data"]] == [ann_job]
        everyone = {j["job_id"] for j in (await client.get("/v1/jobs")).json()["data"]}
        assert everyone == {admin_job, ann_job}

        assert_error(await bob.get(f"/v1/jobs/{ann_job}"), 404, "job_not_found")
        assert_error(await bob.post(f"/v1/jobs/{admin_job}/cancel"), 404, "job_not_found")
        assert_error(await bob.get(f"/v1/jobs/{ann_job}/webhooks"), 404, "job_not_found")
        assert (await client.get(f"/v1/jobs/{ann_job}")).status_code == 200

        assert (await bob.get("/v1/files")).json()["data"] == []
        assert_error(await bob.get(f"/v1/files/{ann_file}"), 404, "file_not_found")
        assert_error(await bob.get(f"/v1/files/{ann_file}/content"), 404, "file_not_found")
        assert_error(await bob.delete(f"/v1/files/{ann_file}"), 404, "file_not_found")
        kept = await bob.post("/v1/files", json={"file_id": ann_file})
        assert_error(kept, 404, "file_not_found")
        edit = await bob.post(
            "/v1/images/edits",
            json={"prompt": "p", "model": "mock-image", "images": [{"file_id": ann_file}]},
        )
        assert_error(edit, 404, "file_not_found")
        assert [f["id"] for f in (await ann.get("/v1/files")).json()["data"]] == [ann_file]
        assert (await client.get(f"/v1/files/{ann_file}")).status_code == 200
        canceled = await client.post(f"/v1/jobs/{admin_job}/cancel")
        assert canceled.status_code in (200, 409), canceled.text


async def _second_workspace_admin(gateway: Gateway) -> tuple[str, str]:
    async with gateway.db.session() as session:
        workspace = await create_workspace(session, gateway.catalog, "Tenant")
        member = await create_member(session, workspace, "tenant admin", "admin")
        _, secret = await create_key(session, member, "tenant")
    return workspace.id, secret


async def test_on_a_shared_instance_only_an_operator_mints_credits(settings: Settings) -> None:
    async with running_gateway(settings, run_workers=False) as (operator, gateway):
        await grant(operator, 5)  # the first admin is the instance's operator
        _, member_key = await new_member(operator, "mia")
        async with as_key(operator, member_key) as member:
            refused = await member.post("/v1/admin/credits/grants", json={"amount": 1})
            assert_error(refused, 403, "admin_required")
        tenant_id, tenant_key = await _second_workspace_admin(gateway)
        async with as_key(operator, tenant_key) as tenant:
            minted = await tenant.post("/v1/admin/credits/grants", json={"amount": 1000})
            assert_error(minted, 403, "operator_required")
            elsewhere = await tenant.post(
                "/v1/admin/credits/grants",
                json={"amount": 1, "workspace_id": (await _first_workspace(gateway))},
            )
            assert_error(elsewhere, 403, "operator_required")
            assert (await credits(tenant))["available"] == 0
            paid = await operator.post(
                "/v1/admin/credits/grants", json={"amount": 7, "workspace_id": tenant_id}
            )
            assert paid.status_code == 200, paid.text
            assert (await credits(tenant))["available"] == 7
            assert (await credits(operator))["available"] == 5
        unknown = await operator.post(
            "/v1/admin/credits/grants", json={"amount": 1, "workspace_id": "ws_nope"}
        )
        assert_error(unknown, 404, "workspace_not_found", "workspace_id")
        gateway.settings.admin_credit_grants = "always"
        async with as_key(operator, tenant_key) as tenant:
            allowed = await tenant.post("/v1/admin/credits/grants", json={"amount": 1})
            assert allowed.status_code == 200, allowed.text


async def test_admins_may_be_kept_from_granting_even_alone(settings: Settings) -> None:
    settings.admin_credit_grants = "never"
    async with running_gateway(settings, run_workers=False) as (operator, _):
        _, admin_key = await new_member(operator, "ada", "admin")
        async with as_key(operator, admin_key) as admin:
            refused = await admin.post("/v1/admin/credits/grants", json={"amount": 1})
            assert_error(refused, 403, "operator_required")
        await grant(operator, 1)


async def _first_workspace(gateway: Gateway) -> str:
    async with gateway.db.session() as session:
        return str(
            (
                await session.execute(select(Workspace.id).order_by(Workspace.created_at).limit(1))
            ).scalar_one()
        )


# ---- an exhausted pool -----------------------------------------------------------------


async def test_a_job_meeting_an_exhausted_pool_backs_off_and_finishes(
    settings: Settings,
) -> None:
    """The provider refuses while every pooled connection is taken: recording the
    outcome meets the exhausted pool, backs off, and records it once connections free
    (before, the task died there and the job stayed running until its lease ran out)."""
    settings.database_pool_size = 1
    settings.database_pool_timeout_seconds = 0.1
    generating, answer = asyncio.Event(), asyncio.Event()

    async def refuse(request: ProviderRequest) -> ProviderResult:
        generating.set()
        await answer.wait()
        raise ContentPolicyViolation("refused by the provider", code="content_policy_violation")

    registry = ProviderRegistry()
    registry.register(FakeProvider(refuse, name="mock"))
    async with running_gateway(settings, registry, run_workers=False) as (client, gateway):
        response = await client.post("/v1/jobs/mock-image", json={"prompt": "p"})
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        run = asyncio.create_task(gateway.runner.run(job_id))
        await asyncio.wait_for(generating.wait(), 10)
        db: Database = gateway.db
        held = []
        for engine in {db.engine, db.read_engine}:
            pool: Any = engine.pool
            for _ in range(pool.size() + max(pool._max_overflow, 0)):
                held.append(await engine.connect())
        try:
            answer.set()
            await asyncio.sleep(1.0)  # many pool timeouts, each backed off
            assert not run.done()
        finally:
            for connection in held:
                await connection.close()
        assert await asyncio.wait_for(run, 30)
        job = (await client.get(f"/v1/jobs/{job_id}")).json()
        assert (job["status"], job["attempt"]) == ("failed", 1), job
        assert job["error"]["code"] == "content_policy_violation"


# ---- the spec and 405s -----------------------------------------------------------------


async def test_the_spec_describes_bodies_answers_and_errors(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            responses = operation["responses"]
            assert "422" not in responses or "Idempotency" in responses["422"]["description"]
            for status in ("400", "401", "500", "503"):
                schema = responses[status]["content"]["application/json"]["schema"]
                assert schema == error_ref, (where, status)
            success = [s for s in responses if s.startswith("2")]
            assert success, where
            for status in success:
                for media, content in responses[status].get("content", {}).items():
                    if media == "application/json":
                        assert content["schema"].get("type") != "string", (where, status)
                        assert content["schema"], (where, status)
            bodiless = ("/cancel", "/revoke", "/rotate")
            if method in ("post", "put", "patch") and not path.endswith(bodiless):
                assert operation["requestBody"]["content"], where
    generations = spec["paths"]["/v1/images/generations"]["post"]
    assert {"402", "403", "404", "409", "422", "504"} <= set(generations["responses"])
    assert {p["name"] for p in generations["parameters"]} >= {"Idempotency-Key", "Prefer"}
    edits = spec["paths"]["/v1/images/edits"]["post"]["requestBody"]["content"]
    assert set(edits) == {"multipart/form-data", "application/json"}


async def test_a_405_lists_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    cases = [
        ("PUT", "/v1/files/file_x", "DELETE, GET"),
        ("POST", "/v1/jobs/job_01abcdefghjkmnpqrstvwxyz01", "GET"),
        ("DELETE", "/v1/jobs/mock-image", "POST"),
        ("OPTIONS", "/v1/admin/image-models/default", "PUT"),
        ("DELETE", "/v1/jobs", "GET"),
    ]
    for method, path, allowed in cases:
        response = await client.request(method, path)
        assert_error(response, 405, "method_not_allowed")
        assert response.headers["allow"] == allowed, (method, path)


async def test_multipart_numbers_take_the_forms_a_json_body_would(
    client: httpx.AsyncClient,
) -> None:
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )
    image = {"image": ("a.png", png, "image/png")}
    for n in ("99999999999999999999999", "\u0665", " 5", "1_0"):
        data = {"prompt": "p", "model": "mock-image", "n": n}
        response = await client.post("/v1/images/edits", files=image, data=data)
        assert_error(response, 400, "invalid_parameter", "n")
    for factor in ("inf", "nan", "1e400", "\u0662"):
        response = await client.post(
            "/v1/images/upscale", files=image, data={"upscale_factor": factor}
        )
        assert_error(response, 400, "invalid_parameter", "upscale_factor")
    huge = await client.post(
        "/v1/images/upscale",
        files=image,
        data={"upscale_factor": "1.2287892145320677e+308"},
        headers={"Idempotency-Key": "huge"},
    )
    assert huge.status_code in (400, 403), huge.text  # not a 500
