"""The console's frame in Chromium: first sign-in, dashboard, Manage Steward, System Information
with a live runtime check, Users, a viewer's limits, My account and signing out."""

from __future__ import annotations

import re

import pytest
from django.conf import settings as django_settings
from playwright.sync_api import expect

from console.testing import PASSWORD, make_persona

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _initial_admin_password() -> str:
    from django.contrib.auth import get_user_model

    from console.services import ensure_initial_admin

    # The console made its own first admin when it started on this database (prepare_home);
    # start from an empty user table, as a fresh installation does.
    get_user_model().objects.all().delete()
    path = ensure_initial_admin()
    assert path is not None
    return path.read_text().strip()


def _sign_out(page) -> None:
    page.click("details.user-menu > summary")
    page.get_by_role("menuitem", name="Sign out").click()
    page.wait_for_url(re.compile(r"/login"))


def test_first_admin_walks_the_console_and_runs_the_runtime_check(
    browser_page, console_server, login, shot
):
    page = browser_page
    url = console_server.url

    # Every page needs a sign-in: the dashboard sends us to the sign-in page.
    page.goto(f"{url}/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    expect(page.get_by_role("heading", name="Sign in to Steward")).to_be_visible()
    shot(page, "sign-in")

    login(page, "admin", _initial_admin_password())
    expect(page.get_by_role("heading", name="Welcome to Steward!")).to_be_visible()
    expect(page.locator(".page-header .user-name")).to_have_text("admin")
    expect(page.get_by_role("link", name=re.compile("Set up an agent"))).to_have_attribute(
        "href", "/computer/"
    )
    expect(page.get_by_role("link", name=re.compile("Manage credentials"))).to_be_visible()
    shot(page, "dashboard")

    # The user menu: My account, API Token, Sign out.
    page.click("details.user-menu > summary")
    expect(page.get_by_role("menuitem", name="My account")).to_be_visible()
    expect(page.get_by_role("menuitem", name="API Token")).to_be_visible()
    expect(page.get_by_role("menuitem", name="Sign out")).to_be_visible()
    shot(page, "user-menu")
    page.keyboard.press("Escape")

    page.locator(".side-panel").get_by_role("link", name="Manage Steward").click()
    expect(page.get_by_role("heading", name="Manage Steward", level=1)).to_be_visible()
    for section in ("System Configuration", "Security", "Status Information"):
        expect(page.get_by_role("heading", name=section)).to_be_visible()
    tiles = page.locator(".tile .tile-title")
    expect(tiles).to_have_text(["Nodes", "Credentials", "Users", "System Information"])
    shot(page, "manage")

    # The Nodes tile opens the Nodes list (the nodes app's page).
    page.locator(".tile", has_text="Nodes").click()
    page.wait_for_url(f"{url}/computer/")
    expect(page.get_by_role("heading", name="Nodes", level=1)).to_be_visible()
    shot(page, "nodes")

    page.goto(f"{url}/manage/")
    page.locator(".tile", has_text="System Information").click()
    expect(page.get_by_role("heading", name="System Information", level=1)).to_be_visible()
    expect(page.locator(".facts-table")).to_contain_text("Django")
    # The console under test inherits this run's configuration (`make test-scaled`: Redis).
    configuration = "scaled" if django_settings.STEWARD_SCALED else "embedded default"
    expect(page.locator(".facts-table")).to_contain_text(configuration)
    expect(page.get_by_text("No runtime check has run yet.")).to_be_visible()
    shot(page, "system-information")

    # Test the runtime: the page follows the check over the WebSocket as the worker runs it.
    page.get_by_role("button", name="Test the runtime").click()
    page.wait_for_url(re.compile(r"/manage/runtimeCheck/\d+/$"))
    page.wait_for_selector("body[data-ws=open]")
    page.evaluate("window.stillThisPage = true")
    expect(page.locator("#check-status")).to_have_text("Done", timeout=15_000)
    # The WebSocket brought the end (live, or as the stored state when the check was over
    # before the socket opened), without a reload; test_live_steps_... covers the live steps.
    expect(page.locator("body")).to_have_attribute("data-check", "done")
    assert page.evaluate("window.stillThisPage") is True
    expect(page.locator("#check-events li").last).to_contain_text(
        re.compile(r"Runtime check finished: the worker reached this browser\.|: Done$")
    )
    expect(page.locator("#check-progress")).to_have_attribute("value", "5")
    expect(page.locator("#check-steps")).to_have_text("5 / 5")
    expect(page.locator("#check-worker")).not_to_have_text("—")
    shot(page, "runtime-check")

    from console.models import RuntimeCheck

    check = RuntimeCheck.objects.get()
    assert check.status == RuntimeCheck.Status.DONE
    assert page.url.endswith(f"/manage/runtimeCheck/{check.pk}/")

    page.locator(".side-panel").get_by_role("link", name="Back to System Information").click()
    row = page.locator("#runtime-checks tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(f"#{check.pk}")
    expect(row).to_contain_text("admin")
    expect(row.locator(".status-icon.status-success")).to_be_visible()
    shot(page, "system-information-after-check")

    _sign_out(page)
    shot(page, "signed-out")
    page.goto(f"{url}/manage/")
    expect(page).to_have_url(re.compile(r"/login\?next=/manage/$"))


def test_live_steps_arrive_over_the_websocket(browser_page, console_server, login, shot):
    """The check page shows the worker's events as they are pushed: in order, each once."""
    make_persona("olivia", "Operators")
    page = browser_page
    login(page, "olivia", PASSWORD)
    page.goto(f"{console_server.url}/manage/systemInfo")
    page.get_by_role("button", name="Test the runtime").click()
    page.wait_for_selector("body[data-ws=open]")
    expect(page.locator("#check-status")).to_have_text("Done", timeout=15_000)
    first_url = page.url

    # "Run again" from the check page: a new check, followed from its start. The task takes
    # about 0.3 s; the page subscribes well within that (measured: at step 1 or 2 of 5).
    page.get_by_role("button", name="Run again").click()
    page.wait_for_url(re.compile(r"/manage/runtimeCheck/\d+/$"))
    assert page.url != first_url
    page.wait_for_selector("body[data-ws=open]")
    expect(page.locator("#check-status")).to_have_text("Done", timeout=15_000)
    texts = page.locator("#check-events li").all_text_contents()
    assert page.locator("#check-events li").first.get_attribute("data-kind") == "replay", texts
    live = page.locator("#check-events li[data-kind=live]")
    assert live.count() >= 1, f"no step arrived live, only the stored state: {texts}"
    expect(page.locator("#check-events li[data-kind=final]")).to_have_count(1)
    # Whatever the stored state was on connect, later events never repeat or go back a step.
    steps = [int(m.group(1)) for t in texts if (m := re.search(r"Step (\d) of 5 done", t))]
    assert steps == sorted(set(steps)) and steps[-1] == 5, texts
    shot(page, "runtime-check-live")


def test_admin_creates_a_viewer_who_sees_but_cannot_manage(
    browser_page, console_server, login, shot
):
    make_persona("admin", "Administrators", is_staff=True, is_superuser=True)
    page = browser_page
    url = console_server.url
    login(page, "admin", PASSWORD)

    page.goto(f"{url}/manage/")
    page.locator(".tile", has_text="Users").click()
    expect(page.get_by_role("heading", name="Users", level=1)).to_be_visible()
    expect(page.locator("#people tbody tr")).to_have_count(1)
    shot(page, "users")

    page.locator(".app-bar-actions").get_by_role("link", name="Create User").click()
    expect(page.get_by_role("heading", name="Create User", level=1)).to_be_visible()
    shot(page, "user-create")

    # Django's validators speak under the fields; nothing is created.
    page.fill("#id_username", "vera")
    page.fill("#id_password1", "12345")
    page.fill("#id_password2", "54321")
    page.get_by_role("button", name="Create User").click()
    expect(page.locator("#field-password2 .field-error")).to_contain_text(
        "The two password fields didn’t match."
    )
    expect(page.locator("#field-group .field-error")).to_contain_text("This field is required.")
    shot(page, "user-create-errors")

    page.fill("#id_password1", "sturdy-lantern-47")
    page.fill("#id_password2", "sturdy-lantern-47")
    page.fill("#id_full_name", "Vera Viewer")
    page.fill("#id_email", "vera@example.com")
    page.get_by_label("Viewers").check()
    page.get_by_role("button", name="Create User").click()
    page.wait_for_url(f"{url}/manage/users/")
    expect(page.locator(".notice-success")).to_contain_text("User ‘vera’ created.")
    vera_row = page.locator("#user-vera")
    expect(vera_row).to_contain_text("Vera Viewer")
    expect(vera_row).to_contain_text("Viewers")
    expect(vera_row).to_contain_text("Never")
    shot(page, "users-after-create")

    vera_row.get_by_role("link", name="vera").click()
    expect(page.get_by_role("heading", name="Vera Viewer", level=1)).to_be_visible()
    expect(page.get_by_label("Viewers")).to_be_checked()
    shot(page, "user-edit")

    _sign_out(page)
    login(page, "vera", "sturdy-lantern-47")
    expect(page.locator(".page-header .user-name")).to_have_text("Vera Viewer")
    shot(page, "dashboard-as-viewer")
    # A viewer sees no management action: no People task, no Users tile, no "Test the runtime".
    expect(page.locator(".side-panel").get_by_role("link", name="People")).to_have_count(0)
    page.locator(".side-panel").get_by_role("link", name="Manage Steward").click()
    expect(page.locator(".tile", has_text="Users")).to_have_count(0)
    expect(page.locator(".tile", has_text="System Information")).to_have_count(1)
    shot(page, "manage-as-viewer")
    page.locator(".tile", has_text="System Information").click()
    expect(page.get_by_role("heading", name="System Information", level=1)).to_be_visible()
    expect(page.get_by_role("button", name="Test the runtime")).to_have_count(0)
    shot(page, "system-information-as-viewer")

    response = page.goto(f"{url}/manage/users/")
    assert response.status == 403
    expect(page.get_by_role("heading", name="Access Denied")).to_be_visible()
    expect(page.locator(".error-page")).to_contain_text("vera is missing the User/View permission")
    shot(page, "access-denied")

    _sign_out(page)


def test_wrong_password_gets_one_clear_message(browser_page, console_server, shot):
    make_persona("olivia", "Operators")
    page = browser_page
    page.goto(f"{console_server.url}/login")
    page.fill("#id_username", "olivia")
    page.fill("#id_password", "not-her-password")
    page.click("button[type=submit]")
    expect(page.locator(".notice-error")).to_have_text("Invalid username or password")
    expect(page).to_have_url(re.compile(r"/login$"))
    # The password is never sent back into the page.
    assert "not-her-password" not in page.content()
    shot(page, "sign-in-error")

    page.fill("#id_username", "nobody")
    page.fill("#id_password", "whatever-it-is")
    page.click("button[type=submit]")
    expect(page.locator(".notice-error")).to_have_text("Invalid username or password")


def test_users_table_sorts_and_delete_asks_first(browser_page, console_server, login, shot):
    make_persona("admin", "Administrators", is_staff=True, is_superuser=True)
    for name, group in (("carol", "Operators"), ("bob", "Viewers"), ("dave", "Viewers")):
        make_persona(name, group)
    page = browser_page
    login(page, "admin", PASSWORD)
    page.goto(f"{console_server.url}/manage/users/")

    names = page.locator("#people tbody tr td:nth-child(2) a")
    expect(names).to_have_text(["admin", "bob", "carol", "dave"])
    header = page.locator("#people thead th", has_text="User ID")
    header.click()
    expect(header).to_have_attribute("aria-sort", "ascending")
    header.click()
    expect(header).to_have_attribute("aria-sort", "descending")
    expect(names).to_have_text(["dave", "carol", "bob", "admin"])
    shot(page, "users-sorted")
    page.locator("#people thead th", has_text="Groups").click()
    expect(names.first).to_have_text("admin")  # Administrators sorts first
    # No delete button for oneself.
    expect(page.locator("#user-admin button[title^=Delete]")).to_have_count(0)

    dialogs: list[str] = []

    def answer(dialog, accept: bool) -> None:
        dialogs.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda d: answer(d, False))
    page.locator("#user-bob button[title='Delete bob']").click()
    expect(page.locator("#user-bob")).to_have_count(1)
    assert dialogs == ["Delete the user ‘bob’?"]

    page.once("dialog", lambda d: answer(d, True))
    page.locator("#user-bob button[title='Delete bob']").click()
    expect(page.locator(".notice-success")).to_contain_text("User ‘bob’ deleted.")
    expect(page.locator("#user-bob")).to_have_count(0)
    shot(page, "users-after-delete")

    from django.contrib.auth import get_user_model

    assert not get_user_model().objects.filter(username="bob").exists()

    # The confirm page works without JavaScript dialogs, too.
    page.goto(f"{console_server.url}/manage/users/dave/")
    page.locator(".side-panel").get_by_role("link", name="Delete").click()
    expect(
        page.get_by_text("Are you sure about deleting the user ‘dave’ from Steward?")
    ).to_be_visible()
    shot(page, "user-delete-confirm")
    page.get_by_role("button", name="Yes").click()
    expect(page.locator("#user-dave")).to_have_count(0)


def test_my_account_changes_the_password_and_pages_not_found(
    browser_page, console_server, login, shot
):
    make_persona("olivia", "Operators", first_name="Olivia", last_name="Operator")
    page = browser_page
    url = console_server.url
    login(page, "olivia", PASSWORD)

    page.click("details.user-menu > summary")
    page.get_by_role("menuitem", name="My account").click()
    expect(page.get_by_role("heading", name="Olivia Operator", level=1)).to_be_visible()
    expect(page.locator("#api-token")).to_contain_text("API tokens are not available yet")
    shot(page, "my-account")

    page.fill("#id_old_password", "wrong-password")
    page.fill("#id_new_password1", "brisk-harbor-92")
    page.fill("#id_new_password2", "brisk-harbor-92")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#field-old_password .field-error")).to_contain_text(
        "Your old password was entered incorrectly."
    )
    shot(page, "my-account-error")
    page.fill("#id_old_password", PASSWORD)
    page.fill("#id_new_password1", "brisk-harbor-92")
    page.fill("#id_new_password2", "brisk-harbor-92")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator(".notice-success")).to_have_text("Your password was changed.")
    shot(page, "my-account-changed")

    # Still signed in after the change; the new password works next time.
    _sign_out(page)
    login(page, "olivia", "brisk-harbor-92")

    response = page.goto(f"{url}/no/such/page?x=<b>echo</b>")
    assert response.status == 404
    expect(page.get_by_role("heading", name="Not Found")).to_be_visible()
    assert "<b>echo</b>" not in page.content()
    shot(page, "not-found")
