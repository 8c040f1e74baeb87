"""The console's admin pages in Chromium: Settings → Image models with every rule of the
page, then workspace settings, API keys, credits, usage and the audit log."""

from __future__ import annotations

from playwright.sync_api import Browser, Page, expect

from tests.console_browser import (
    Console,
    browser,  # noqa: F401  (fixture)
    console,  # noqa: F401  (fixture)
    new_context,
    screenshot,
    sign_in_with_key,
)


def _row(page: Page, slug: str):  # type: ignore[no-untyped-def]
    return page.locator(f'tr[data-model="{slug}"]')


def _switch(page: Page, slug: str):  # type: ignore[no-untyped-def]
    return _row(page, slug).get_by_role("switch")


def test_image_models_page_follows_every_rule(
    browser: Browser,  # noqa: F811
    console: Console,  # noqa: F811
) -> None:
    page = new_context(browser).new_page()
    sign_in_with_key(page, console)
    page.goto(console.url + "/settings/image-models")

    # grouped by provider
    headings = page.locator("section.provider h2").all_inner_texts()
    for provider in ("Black Forest Labs", "OpenAI", "Google Vertex", "Recraft"):
        assert any(h.startswith(provider) for h in headings), headings
    # per row: regions, badges, stars, price in EUR incl. margin (as the admin API lists it)
    listing = page.request.get(console.url + "/v1/admin/image-models").json()
    rows = {m["id"]: m for p in listing["providers"] for m in p["models"]}
    flux = _row(page, "flux-2-pro")
    expect(flux.locator("[data-region]")).to_have_count(2)
    expect(flux.locator('[data-region="eu"]')).to_contain_text("EU")
    expect(flux.locator('[data-region="us"]')).to_contain_text("US")
    expect(flux.locator('[data-badge="reference"]')).to_be_visible()
    expect(flux.get_by_role("img", name="4 of 5 stars")).to_be_visible()
    expect(_row(page, "mock-image").locator('[data-region="global"]')).to_contain_text("Global")
    expect(_row(page, "gpt-image-1.5").locator('[data-badge="premium"]')).to_be_visible()
    expect(_row(page, "flux_pro").locator('[data-badge="deprecated"]')).to_contain_text(
        "Deprecated → FLUX.2"
    )
    expect(_row(page, "gemini-3.1-flash-image").locator('[data-badge="preview"]')).to_be_visible()
    price = _row(page, "gpt-image-1.5").locator("[data-price-eur]")
    assert price.get_attribute("data-price-eur") == rows["gpt-image-1.5"]["price"]["eur"]
    expect(price).to_have_text("€" + rows["gpt-image-1.5"]["price"]["eur"].rstrip("0"))
    expect(
        page.get_by_role("columnheader").filter(has_text="incl. 20 % margin").first
    ).to_be_visible()
    # the guide, from the same advice as model choice
    guide = page.locator("#guide")
    expect(guide.locator('tr[data-use-case="photo"]')).to_contain_text("GPT Image 2")
    expect(guide.locator('tr[data-use-case="eu-only"]')).to_contain_text("FLUX.2")
    # the default panel lists the enabled models only
    default = page.get_by_role("combobox", name="Default model", exact=True)
    expect(default).to_have_value("mock-image")
    assert default.locator("option").all_inner_texts() == [
        "Mock Image (placeholder)",
        "Mock Vector (SVG placeholder)",
    ]
    screenshot(page, "image-models")

    # the last enabled model's toggle is locked, with the reason shown
    _switch(page, "mock-vector").click()
    expect(page.get_by_role("status")).to_contain_text("Mock Vector (SVG placeholder) is disabled")
    expect(_switch(page, "mock-image")).to_be_disabled()
    expect(_row(page, "mock-image").locator("[data-lock]")).to_contain_text(
        "At least one model must stay enabled"
    )
    screenshot(page, "image-models-locked")

    # enabling another unlocks it
    _switch(page, "flux-2-pro").click()
    expect(_switch(page, "flux-2-pro")).to_have_attribute("aria-checked", "true")
    expect(_switch(page, "mock-image")).to_be_enabled()

    # turning off the default asks for a replacement, and changes both at once
    _switch(page, "mock-image").click()
    dialog = page.get_by_role("dialog", name="Pick a new default model")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("New default model").locator("option")).to_have_count(1)
    screenshot(page, "image-models-replacement")
    dialog.get_by_label("New default model").select_option("flux-2-pro")
    dialog.get_by_role("button", name="Switch default and turn off").click()
    expect(page.get_by_role("status")).to_contain_text(
        "Mock Image (placeholder) is disabled. FLUX.2 [pro] is now the default model."
    )
    expect(_switch(page, "mock-image")).to_have_attribute("aria-checked", "false")
    expect(page.get_by_role("combobox", name="Default model", exact=True)).to_have_value(
        "flux-2-pro"
    )
    expect(_row(page, "flux-2-pro").locator('[data-badge="default"]')).to_be_visible()
    audit = page.request.get(console.url + "/v1/admin/audit?limit=1").json()["data"][0]
    assert audit["action"] == "image_model.disabled"
    assert audit["after"] == {"enabled": False, "default_model": "flux-2-pro"}

    # without the script, the server answers with the same question
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    plain = page.request.post(
        console.url + "/settings/image-models/flux-2-pro",
        form={"csrf_token": token or "", "enabled": "false"},
    )
    assert plain.status == 409 and "Pick a new default model" in plain.text()

    # the default dropdown
    _switch(page, "mock-image").click()
    page.get_by_role("combobox", name="Default model", exact=True).select_option("mock-image")
    page.get_by_role("button", name="Set default").click()
    expect(page.get_by_role("status")).to_contain_text(
        "Mock Image (placeholder) is now the default"
    )

    # enabling a model while no default is set makes it the default, visibly
    console.sql("UPDATE workspaces SET default_model = NULL")
    page.reload()
    expect(page.get_by_role("combobox", name="Default model", exact=True)).to_have_value("")
    _switch(page, "mock-vector").click()
    expect(page.get_by_role("status")).to_contain_text(
        "Mock Vector (SVG placeholder) is enabled. Mock Vector (SVG placeholder) is now the default"
    )
    expect(page.get_by_role("combobox", name="Default model", exact=True)).to_have_value(
        "mock-vector"
    )

    # image generation off: a warning that links to the workspace settings
    page.goto(console.url + "/settings/workspace")
    page.get_by_label("Image generation is on").uncheck()
    page.get_by_role("button", name="Save settings").click()
    page.goto(console.url + "/settings/image-models")
    warning = page.locator("#generation-off")
    expect(warning).to_contain_text("Image generation is turned off")
    warning.get_by_role("link", name="Open the workspace settings").click()
    page.wait_for_url("**/settings/workspace")
    page.get_by_label("Image generation is on").check()
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status")).to_contain_text("Workspace settings saved")
    page.goto(console.url + "/settings/image-models")
    expect(page.locator("#generation-off")).to_have_count(0)

    # dark mode and a phone-width screen
    dark = new_context(browser, color_scheme="dark").new_page()
    sign_in_with_key(dark, console)
    dark.goto(console.url + "/settings/image-models")
    screenshot(dark, "image-models-dark")
    dark.context.close()
    phone = new_context(browser, viewport={"width": 390, "height": 844}).new_page()
    sign_in_with_key(phone, console)
    phone.goto(console.url + "/settings/image-models")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(phone, "image-models-phone")
    phone.context.close()
    page.context.close()


def test_workspace_keys_credits_usage_and_audit_pages(
    browser: Browser,  # noqa: F811
    console: Console,  # noqa: F811
) -> None:
    page = new_context(browser).new_page()
    sign_in_with_key(page, console)

    # workspace settings: EU hosting only turns off the models hosted elsewhere
    page.goto(console.url + "/settings/workspace")
    page.get_by_label("Billing mode").select_option("flat")
    page.get_by_label("Margin on provider prices (%)").fill("25")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status")).to_contain_text("Workspace settings saved")
    expect(page.get_by_label("Billing mode")).to_have_value("flat")
    expect(page.get_by_label("Margin on provider prices (%)")).to_have_value("25")
    screenshot(page, "workspace")
    settings = page.request.get(console.url + "/v1/admin/settings").json()
    assert settings["billing_mode"] == "flat" and settings["margin_percent"] == 25

    # API keys: created (shown once), then revoked
    page.goto(console.url + "/settings/keys")
    page.get_by_label("Key name").fill("website backend")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("New API key").input_value()
    assert secret.startswith("ig_")
    screenshot(page, "keys")
    models = page.request.get(
        console.url + "/v1/models", headers={"Authorization": f"Bearer {secret}"}
    )
    assert models.status == 200
    page.goto(console.url + "/settings/keys")
    expect(page.get_by_label("New API key")).to_have_count(0)
    page.get_by_role("button", name=f"Revoke key website backend ({secret[:11]})").click()
    expect(page.get_by_role("status")).to_contain_text("is revoked")
    revoked = page.request.get(
        console.url + "/v1/models", headers={"Authorization": f"Bearer {secret}"}
    )
    assert revoked.status == 401

    # credits: a grant shows in the balance and the ledger
    page.goto(console.url + "/settings/credits")
    page.get_by_label("Credits", exact=True).fill("250.5")
    page.get_by_label("Note").fill("first budget")
    page.get_by_role("button", name="Grant").click()
    expect(page.get_by_role("status")).to_contain_text("Granted 250.5 credits")
    expect(page.locator("#available")).to_have_text("250.5")
    expect(page.locator("#ledger tbody tr").first).to_contain_text("first budget")
    screenshot(page, "credits")

    # usage: images by model and by member, with a chart
    for _ in range(2):
        made = page.request.post(
            console.url + "/v1/images/generations",
            data={"prompt": "usage", "model": "mock-image", "size": "256x256", "n": 2},
            headers={"Authorization": f"Bearer {console.admin_key}"},
        )
        assert made.status == 200, made.text()
    page.goto(console.url + "/settings/usage")
    expect(page.locator("#total-images")).to_have_text("4")
    expect(page.locator("#usage-by-model")).to_contain_text("Mock Image (placeholder)")
    expect(page.locator("#usage-by-member")).to_contain_text("admin")
    expect(page.locator("#usage-chart rect")).to_have_count(30)
    screenshot(page, "usage")

    # the audit log names who changed what
    page.goto(console.url + "/settings/audit")
    table = page.locator("#audit")
    expect(table).to_contain_text("settings.updated")
    expect(table).to_contain_text("key.revoked")
    screenshot(page, "audit")
    page.context.close()
