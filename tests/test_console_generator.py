"""The image generator in Chromium, with the mock models: the estimate, progress, the
results, download and "keep in Files", references, history, and errors inline."""

from __future__ import annotations

import base64
import io
import json

from PIL import Image
from playwright.sync_api import Browser, Route, expect

from tests.console_browser import (
    Console,
    browser,  # noqa: F401  (fixture)
    console,  # noqa: F401  (fixture)
    new_context,
    screenshot,
    sign_in_with_key,
)

PAID_CATALOG = True  # a priced mock model, for "not enough credits"
TIMES = "\u00d7"  # the multiplication sign, as the page writes sizes


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(out, format="PNG")
    return out.getvalue()


def test_generate_download_keep_reference_and_history(
    browser: Browser,  # noqa: F811
    console: Console,  # noqa: F811
) -> None:
    page = new_context(browser, accept_downloads=True).new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sign_in_with_key(page, console)

    # only enabled models, the workspace default preselected
    model = page.get_by_label("Model")
    expect(model).to_have_value("mock-image")
    assert model.locator("option").all_inner_texts() == [
        "Mock Image (placeholder)",
        "Mock Vector (SVG placeholder)",
    ]
    # options from the model's allowedParams, and the estimate (a dry run)
    expect(page.get_by_label("Size")).to_have_value("1024x1024")
    sizes = page.get_by_label("Size").locator("option").all_inner_texts()
    assert sorted(size.replace(TIMES, "x") for size in sizes) == sorted(
        [
            "256x256",
            "512x512",
            "1024x1024",
            "1536x1024",
            "1024x1536",
            "1792x1024",
            "1024x1792",
        ]
    )
    expect(page.get_by_label("Quality")).to_be_visible()
    expect(page.get_by_label("Images")).to_have_attribute("max", "10")
    page.get_by_label("Prompt").fill("a lighthouse at dawn")
    page.get_by_label("Size").select_option("512x512")
    page.get_by_label("Images").fill("2")
    page.get_by_label("Images").dispatch_event("change")
    expect(page.locator("#estimate")).to_contain_text("0 credits")
    expect(page.locator("#estimate")).to_contain_text(f"2 images of 512{TIMES}512")

    # generate: progress, then the results in a grid
    page.get_by_role("button", name="Generate").click()
    results = page.locator("#results li")
    expect(results).to_have_count(2)
    image = results.first.get_by_role("img")
    expect(image).to_have_js_property("naturalWidth", 512)
    screenshot(page, "generator")

    # download, and keep in Files
    with page.expect_download() as download:
        results.first.get_by_role("link", name="Download").click()
    data = download.value.path().read_bytes()
    assert Image.open(io.BytesIO(data)).size == (512, 512)
    results.first.get_by_role("button", name="Keep in Files").click()
    expect(results.first.get_by_role("button", name="Kept in Files")).to_be_disabled()
    kept = page.request.get(console.url + "/v1/files?purpose=user_data").json()["data"]
    assert len(kept) == 1

    # the member's own history, newest first
    history = page.locator("#history")
    expect(history).to_contain_text("a lighthouse at dawn")
    expect(history.get_by_role("img")).to_have_count(2)

    # a reference image by upload, then "edit" of a result
    page.locator("#reference-input").set_input_files(
        files=[{"name": "photo.png", "mimeType": "image/png", "buffer": _png(64, 48)}]
    )
    expect(page.locator("#reference-list li")).to_have_count(1)
    expect(page.locator("#reference-list")).to_contain_text("photo.png")
    # … and by drag and drop
    page.evaluate(
        """async (b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
            const zone = document.getElementById("dropzone");
            zone.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
        }""",
        base64.b64encode(_png(40, 40)).decode(),
    )
    expect(page.locator("#reference-list li")).to_have_count(2)
    expect(page.locator("#reference-list")).to_contain_text("dropped.png")
    page.get_by_label("Images").fill("1")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#results li")).to_have_count(1)
    job = page.request.get(console.url + "/v1/jobs?limit=1").json()["data"][0]
    assert job["status"] == "succeeded"
    (stored,) = console.sql("SELECT request FROM jobs WHERE id = :id", id=job["id"])
    request = stored[0] if isinstance(stored[0], dict) else json.loads(stored[0])
    assert len(request["body"]["reference_files"]) == 2
    page.locator("#results li").first.get_by_role("button", name="Edit").click()
    expect(page.locator("#reference-list")).to_contain_text("result")
    expect(page.get_by_label("Prompt")).to_be_focused()
    screenshot(page, "generator-reference")

    # upscale of a result goes to POST /v1/images/upscale with the result's file id (the
    # upscaler has no provider here: the request goes on with the wrapper's "mock": true)
    admin = {"Authorization": f"Bearer {console.admin_key}"}
    page.request.patch(
        console.url + "/v1/admin/image-models/topaz_upscale_image",
        data={"enabled": True},
        headers=admin,
    )
    page.reload()
    page.get_by_label("Prompt").fill("to upscale")
    page.get_by_label("Size").select_option("256x256")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#results li")).to_have_count(1)
    sent: list[dict[str, object]] = []

    def as_mock(route: Route) -> None:
        sent.append(route.request.post_data_json)
        assert route.request.headers["x-csrf-token"]
        route.continue_(post_data=json.dumps({**sent[-1], "mock": True}))

    page.route("**/v1/images/upscale", as_mock)
    source = page.locator("#results li img").first.get_attribute("src") or ""
    page.locator("#results li").first.get_by_role("button", name="Upscale").click()
    expect(page.locator("#results li")).to_have_count(1)
    assert sent and sent[0]["model"] == "topaz_upscale_image"
    assert str(sent[0]["image"]).startswith("file_") and sent[0]["image"] in source
    expect(page.locator("#results li img").first).not_to_have_attribute("src", source)
    upscaled = page.request.get(console.url + "/v1/jobs?limit=1").json()["data"][0]
    assert upscaled["model"] == "topaz_upscale_image" and upscaled["status"] == "succeeded"
    page.unroute("**/v1/images/upscale")

    # the choice is kept for the next visit
    with page.expect_response("**/v1/me/selected-model") as kept_choice:
        model.select_option("mock-vector")
    assert kept_choice.value.ok
    expect(page.get_by_label("Aspect ratio")).to_have_value("1:1")
    page.reload()
    expect(page.get_by_label("Model")).to_have_value("mock-vector")
    assert not errors, errors
    page.context.close()


def test_errors_inline_and_the_switch_to_the_default(
    browser: Browser,  # noqa: F811
    console: Console,  # noqa: F811
) -> None:
    page = new_context(browser, viewport={"width": 390, "height": 844}).new_page()
    sign_in_with_key(page, console)
    with page.expect_response("**/v1/me/selected-model") as kept_choice:
        page.get_by_label("Model").select_option("mock-vector")
    assert kept_choice.value.ok

    # an admin disables the model the member had chosen: switched to the default, with a notice
    admin = {"Authorization": f"Bearer {console.admin_key}"}
    off = page.request.patch(
        console.url + "/v1/admin/image-models/mock-vector", data={"enabled": False}, headers=admin
    )
    assert off.status == 200
    with page.expect_response("**/v1/me/selected-model") as switch:
        page.reload()
    assert switch.value.ok
    expect(page.locator("#model-notice")).to_contain_text(
        "Mock Vector (SVG placeholder) is no longer enabled; switched to the workspace default"
    )
    expect(page.get_by_label("Model")).to_have_value("mock-image")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "generator-phone")
    page.reload()  # the switch is recorded: no notice the next time
    expect(page.get_by_label("Model")).to_have_value("mock-image")
    expect(page.locator("#model-notice")).to_have_count(0)

    # a model disabled while the page is open: the API's message, inline
    page.request.patch(
        console.url + "/v1/admin/image-models/flux-2-pro", data={"enabled": True}, headers=admin
    )
    page.reload()
    page.get_by_label("Model").select_option("flux-2-pro")
    page.request.patch(
        console.url + "/v1/admin/image-models/flux-2-pro", data={"enabled": False}, headers=admin
    )
    page.get_by_label("Prompt").fill("a red bicycle")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#form-error")).to_contain_text("is not enabled in this workspace")

    # no credits: the estimate does not fit the balance, said inline
    page.request.patch(
        console.url + "/v1/admin/image-models/paid-image", data={"enabled": True}, headers=admin
    )
    page.reload()
    page.get_by_label("Model").select_option("paid-image")
    expect(page.locator("#estimate")).to_contain_text("2 credits")
    page.get_by_label("Prompt").fill("a red bicycle")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#form-error")).to_contain_text("credits; 0 are available")
    expect(page.locator("#balance")).to_have_text("0")

    # image generation off: members see no generator
    page.request.patch(
        console.url + "/v1/admin/settings", data={"image_generation_enabled": False}, headers=admin
    )
    response = page.goto(console.url + "/generate")
    assert response is not None and response.status == 403
    expect(page.get_by_role("alert")).to_contain_text("Image generation is turned off")
    page.context.close()
