"""The console in Chromium: signing in, invites, sessions, CSRF and roles."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, expect

from tests.console_browser import (
    Console,
    browser,  # noqa: F401  (fixture)
    console,  # noqa: F401  (fixture)
    csrf,
    new_context,
    screenshot,
    sign_in,
    sign_in_with_key,
)

ADMIN_PAGES = [
    "/settings/image-models",
    "/settings/workspace",
    "/settings/members",
    "/settings/keys",
    "/settings/credits",
    "/settings/usage",
    "/settings/audit",
]


def test_sign_in_invite_member_roles_csrf_and_sign_out(
    browser: Browser,  # noqa: F811
    console: Console,  # noqa: F811
) -> None:
    admin = new_context(browser).new_page()
    response = admin.goto(console.url + "/")
    assert response is not None
    assert admin.url.endswith("/sign-in")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    screenshot(admin, "sign-in")

    # the first admin signs in with the key printed at first start
    sign_in_with_key(admin, console)
    cookie = next(c for c in admin.context.cookies() if c["name"] == "imagegate_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    expect(admin.get_by_role("navigation", name="Main")).to_contain_text("Image models")

    # an admin invites a member and copies the link
    admin.goto(console.url + "/settings/members")
    # keyboard: the first Tab reaches the skip link, with a visible focus ring
    admin.keyboard.press("Tab")
    focused = admin.evaluate(
        "[document.activeElement.textContent, getComputedStyle(document.activeElement).outlineStyle]"
    )
    assert focused == ["Skip to content", "solid"]
    admin.get_by_label("Name", exact=True).fill("Mia Staff")
    admin.get_by_label("Role", exact=True).select_option("member")
    admin.get_by_role("button", name="Create invite link").click()
    link = admin.get_by_label("Invite link", exact=True).input_value()
    assert re.match(rf"{re.escape(console.url)}/invite/[\w-]{{40,}}$", link)
    expect(admin.locator("#invites-heading + table")).to_contain_text("Mia Staff")
    screenshot(admin, "members")

    # the member sets a password through the link and is signed in
    member_context = new_context(browser)
    member = member_context.new_page()
    member.goto(link)
    expect(member.get_by_role("heading", name="Welcome, Mia Staff")).to_be_visible()
    screenshot(member, "invite")
    member.get_by_label("Login").fill("mia")
    member.get_by_label("Password", exact=True).fill("short")
    member.get_by_label("Password again").fill("short")
    member.locator("form").evaluate("form => form.noValidate = true")
    member.get_by_role("button", name="Set password and sign in").click()
    expect(member.get_by_role("alert")).to_contain_text("at least 10 characters")
    member.get_by_label("Password", exact=True).fill("correct horse battery")
    member.get_by_label("Password again").fill("correct horse battery")
    member.get_by_role("button", name="Set password and sign in").click()
    member.wait_for_url("**/generate")
    nav = member.get_by_role("navigation", name="Main")
    expect(nav).to_contain_text("Image generator")
    expect(nav).not_to_contain_text("Image models")
    # the link is used up
    assert member.goto(link).status == 404  # type: ignore[union-attr]

    # a member who opens an admin URL gets a 403 page, not the page
    for path in ADMIN_PAGES:
        response = member.goto(console.url + path)
        assert response is not None and response.status == 403, path
        expect(member.get_by_role("alert")).to_contain_text("for workspace admins")
    screenshot(member, "forbidden")
    # and the admin API refuses the session too
    api = member.request.get(console.url + "/v1/admin/image-models")
    assert api.status == 403

    # CSRF: a form or API call without the session's token is refused
    member.goto(console.url + "/generate")
    token = csrf(member)
    no_token = member.request.post(console.url + "/sign-out", form={})
    assert no_token.status == 403 and "security token" in no_token.text()
    cross_site = member.request.post(
        console.url + "/sign-out",
        form={"csrf_token": token},
        headers={"Origin": "http://attacker.example"},
    )
    assert cross_site.status == 403
    put = member.request.put(console.url + "/v1/me/selected-model", data={"model": "mock-vector"})
    assert put.status == 403 and put.json()["error"]["code"] == "csrf_failed"
    put = member.request.put(
        console.url + "/v1/me/selected-model",
        data={"model": "mock-vector"},
        headers={"X-CSRF-Token": token},
    )
    assert put.status == 200 and put.json()["selected_model"] == "mock-vector"

    # a tampered session cookie is no session
    good = next(c for c in member_context.cookies() if c["name"] == "imagegate_session")
    member_context.add_cookies([{**good, "value": good["value"][:-2] + "xx"}])  # type: ignore[typeddict-item]
    member.goto(console.url + "/generate")
    assert "/sign-in" in member.url
    expect(member.get_by_role("status")).to_contain_text("session has ended")

    # signing in again, then out: the session is gone on the server too
    sign_in(member, console, "MIA", "correct horse battery")
    member.wait_for_url("**/generate")
    old = next(c for c in member_context.cookies() if c["name"] == "imagegate_session")
    member.get_by_role("button", name="Sign out").click()
    member.wait_for_url("**/sign-in?signed_out=1")
    member_context.add_cookies([old])  # type: ignore[list-item]
    member.goto(console.url + "/generate")
    assert "/sign-in" in member.url

    # the admin sees the member's login, and can make them an admin
    admin.goto(console.url + "/settings/members")
    row = admin.locator("tr", has_text="Mia Staff")
    expect(row).to_contain_text("mia")
    row.get_by_label("Role of Mia Staff").select_option("admin")
    row.get_by_role("button", name="Change role").click()
    expect(admin.get_by_role("status")).to_contain_text("Mia Staff is now an admin")

    # an admin revokes the member's sign-in: signed out everywhere, the password gone
    sign_in(member, console, "mia", "correct horse battery")
    member.wait_for_url("**/generate")
    admin.goto(console.url + "/settings/members")
    admin.get_by_role("button", name="Revoke sign-in of Mia Staff").click()
    expect(admin.get_by_role("status")).to_contain_text("Mia Staff can no longer sign in")
    member.goto(console.url + "/generate")
    assert "/sign-in" in member.url
    sign_in(member, console, "mia", "correct horse battery")
    expect(member.get_by_role("alert")).to_contain_text("Wrong login or password")

    # a session unused for longer than the idle limit has ended
    console.sql("UPDATE console_sessions SET last_seen_at = '2000-01-01 00:00:00'")
    admin.goto(console.url + "/settings/members")
    assert "/sign-in" in admin.url
    expect(admin.get_by_role("status")).to_contain_text("session has ended")
    sign_in_with_key(admin, console)  # and ended sessions are forgotten
    assert console.sql("SELECT count(*) FROM console_sessions") == [(1,)]
    admin.context.close()
    member_context.close()


def test_repeated_wrong_passwords_lock_the_login(
    browser: Browser,  # noqa: F811
    console: Console,  # noqa: F811
) -> None:
    context = new_context(browser)
    page = context.new_page()
    sign_in_with_key(page, console)
    page.goto(console.url + "/settings/members")
    page.get_by_label("Name", exact=True).fill("Leo")
    page.get_by_role("button", name="Create invite link").click()
    link = page.get_by_label("Invite link", exact=True).input_value()
    page.get_by_role("button", name="Sign out").click()
    page.goto(link)
    page.get_by_label("Login").fill("leo")
    page.get_by_label("Password", exact=True).fill("the right password")
    page.get_by_label("Password again").fill("the right password")
    page.get_by_role("button", name="Set password and sign in").click()
    page.wait_for_url("**/generate")
    page.get_by_role("button", name="Sign out").click()

    for _ in range(5):
        sign_in(page, console, "leo", "a wrong password")
        expect(page.get_by_role("alert")).to_contain_text("Wrong login or password")
    sign_in(page, console, "leo", "the right password")
    expect(page.get_by_role("alert")).to_contain_text("Too many wrong passwords")
    assert "/sign-in" in page.url
    # unknown logins answer the same as a wrong password
    sign_in(page, console, "nobody", "whatever it is")
    expect(page.get_by_role("alert")).to_contain_text("Wrong login or password")
    context.close()
