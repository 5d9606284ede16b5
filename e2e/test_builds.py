"""Jobs and builds in Chromium against the real console: create a job through New Item and
Configure, Build Now, watch the console stream live (lines arrive one after another, through a
dropped connection without gaps or duplicates), Finished: SUCCESS; then abort a long build from
its page and see ABORTED."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from console.testing import PASSWORD, make_persona

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

JOB = "hello-steward"
SCRIPT = (
    "echo 'build starting'\n"
    "sleep 2\n"
    'for i in 1 2 3 4 5; do echo "step $i of 5"; sleep 1; done\n'
    "printf '\\033[32mall green\\033[0m <b>not bold</b>\\n'\n"
)


def viewport_shot(page, name: str) -> None:
    """A page of 10,000 lines is too tall for a full-page capture: its top, in the window."""
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(Path(__file__).resolve().parent / "screenshots" / f"{name}.png"))


def wait_ws(page) -> None:
    page.wait_for_function("document.body.dataset.ws === 'open'", timeout=10_000)


def builtin_node_online(page, url: str) -> None:
    """The console brings the built-in node up at start; after an earlier test's flush the row
    is new and offline, so launch it from its page as a user would."""
    from nodes.models import Node

    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        if Node.objects.filter(is_builtin=True, connection=Node.Connection.CONNECTED).exists():
            return
        time.sleep(0.2)
    page.goto(f"{url}/computer/(built-in)/")
    page.locator("#main-panel").get_by_role("button", name=re.compile("Launch agent")).click()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if Node.objects.filter(is_builtin=True, connection=Node.Connection.CONNECTED).exists():
            return
        time.sleep(0.2)
    raise AssertionError("the built-in node did not come online")


def test_create_build_follow_the_console_and_abort(browser_page, console_server, login, shot):
    from builds.models import Build, Job

    url = console_server.url
    page = browser_page
    make_persona("ada", "Administrators", is_staff=True, is_superuser=True)
    login(page, "ada", PASSWORD)
    builtin_node_online(page, url)

    # New Item: Jenkins' name rules, checked while typing.
    page.goto(f"{url}/newJob")
    expect(page.get_by_role("heading", name="New Item")).to_be_visible()
    expect(page.get_by_text("This is the central feature of Steward.")).to_be_visible()
    page.locator("#id_name").press_sequentially("bad/name")
    expect(page.locator("#name-check")).to_have_text("‘/’ is an unsafe character")
    page.fill("#id_name", JOB)
    expect(page.locator("#name-check")).to_have_text("")
    shot(page, "builds-new-item")
    page.get_by_role("button", name="OK").click()

    # Configure: the label expression is validated live, build steps are added in the page.
    expect(page).to_have_url(f"{url}/job/{JOB}/configure")
    page.fill("#id_description", "Says hello, slowly.")
    label = page.locator("#id_label_expression")
    expect(label).to_be_hidden()
    page.get_by_label("Restrict where this project can be run").check()
    label.fill("linux &&")
    expect(page.locator("#label-check")).to_contain_text("Invalid boolean expression:")
    label.fill("bulit-in")
    expect(page.locator("#label-check")).to_have_text(
        "No agent matches this label expression. Did you mean ‘built-in’ instead of ‘bulit-in’?"
    )
    label.fill("built-in")
    expect(page.locator("#label-check")).to_have_text("Label ‘built-in’ matches 1 node")
    page.fill("#id_quiet_period", "0")
    expect(page.locator("#steps-empty")).to_be_visible()
    page.get_by_role("button", name="Add build step: Execute shell").click()
    page.get_by_role("button", name="Add build step: Execute shell").click()
    expect(page.locator(".build-step:not(.removed)")).to_have_count(2)
    page.locator(".build-step").nth(1).get_by_role("button", name="Delete this build step").click()
    expect(page.locator(".build-step:not(.removed)")).to_have_count(1)
    page.fill("#id_steps-0-command", SCRIPT)
    shot(page, "builds-configure")
    page.get_by_role("button", name="Save", exact=True).click()

    # The job page.
    expect(page).to_have_url(f"{url}/job/{JOB}/")
    job = Job.objects.get(name=JOB)
    assert job.quiet_period == 0 and job.label_expression == "built-in"
    assert job.steps == [{"type": "shell", "command": SCRIPT, "unstable_return": None}]
    expect(page.locator("#label-expression")).to_have_text("built-in")
    expect(page.locator("#permalinks")).to_contain_text("No builds yet.")
    shot(page, "builds-job-empty")

    # Build Now, then straight to the console while the build runs.
    page.locator(".side-panel").get_by_role("button", name="Build Now").click()
    expect(page.locator(".messages")).to_contain_text("Build scheduled")
    row = page.locator('#builds tr[data-build="1"]')
    expect(row).to_be_visible(timeout=15_000)
    row.get_by_role("link", name="Console Output of #1").click()
    expect(page).to_have_url(f"{url}/job/{JOB}/1/console")
    wait_ws(page)
    log = page.locator("#console-log")
    expect(page.locator("#console-status")).to_contain_text("In progress")
    expect(page.locator("#console-status .spinner")).to_be_visible()
    expect(log).to_contain_text("Started by user ada", timeout=15_000)

    # Lines arrive one after another while the script sleeps between them.
    seen: dict[int, float] = {}
    dropped = False
    deadline = time.monotonic() + 30
    while len(seen) < 5 and time.monotonic() < deadline:
        lines = log.inner_text().split("\n")
        for i in range(1, 6):
            if i not in seen and f"step {i} of 5" in lines:
                seen[i] = time.monotonic()
        if 2 in seen and not dropped:
            # The connection drops mid-build: the follower reconnects from its last offset.
            page.evaluate("window.stewardConsole.reconnect()")
            dropped = True
        if len(seen) == 3:
            shot(page, "builds-console-live")
        time.sleep(0.05)
    assert sorted(seen) == [1, 2, 3, 4, 5], seen
    assert seen[5] - seen[2] > 2.0, f"lines arrived together, not live: {seen}"
    assert all(seen[i + 1] > seen[i] for i in range(1, 5)), seen

    expect(page.locator("#console-status")).to_have_text("Finished: SUCCESS", timeout=20_000)
    expect(page.locator("#console-status .spinner")).to_have_count(0)
    lines = log.inner_text().split("\n")
    for i in range(1, 6):  # nothing missed, nothing twice (sh -x echoes each command too)
        assert lines.count(f"step {i} of 5") == 1, lines
        assert lines.count(f'+ echo "step {i} of 5"') + lines.count(f"+ echo step {i} of 5") == 1
    assert lines.count("build starting") == 1
    green = log.locator("span.ansi-green")
    expect(green).to_have_text("all green")
    expect(log).to_contain_text("<b>not bold</b>")  # shown as text, not markup
    expect(log.locator("b")).to_have_count(0)
    expect(page.locator("#console-abort")).to_have_count(0)
    expect(page.locator("#console-ball .ball")).to_have_attribute("title", "Success")
    shot(page, "builds-console-finished")

    plain = page.request.get(f"{url}/job/{JOB}/1/consoleText")
    assert plain.ok and plain.headers["content-type"].startswith("text/plain")
    assert "step 5 of 5" in plain.text() and plain.text().rstrip().endswith("Finished: SUCCESS")

    # The build page.
    page.locator(".side-panel").get_by_role("link", name="Status").click()
    expect(page.locator("#build-result")).to_have_text("SUCCESS")
    expect(page.locator("#build-facts")).to_contain_text("Started by user ada")
    expect(page.locator("#built-on")).to_have_text("Built-In Node")
    expect(page.locator("#build-duration")).to_contain_text("Took ")
    expect(page.locator(".app-bar .ball-blue")).to_be_visible()
    shot(page, "builds-build-success")

    # A long build, aborted from its page.
    page.goto(f"{url}/job/{JOB}/configure")
    page.fill("#id_steps-0-command", "echo 'long build started'\nsleep 60\necho 'never printed'")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page).to_have_url(f"{url}/job/{JOB}/")
    page.locator(".side-panel").get_by_role("button", name="Build Now").click()
    row = page.locator('#builds tr[data-build="2"]')
    expect(row).to_be_visible(timeout=15_000)
    expect(row.locator(".ball-anime")).to_be_visible()
    expect(page.locator("#permalinks")).to_contain_text("Last build (#2)")
    expect(page.locator("#job-ball .ball-anime")).to_be_visible()
    shot(page, "builds-job-running")
    row.get_by_role("link", name="#2", exact=True).click()
    expect(page).to_have_url(f"{url}/job/{JOB}/2/")
    expect(page.locator("#build-result")).to_have_text("In progress", timeout=15_000)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        build = Build.objects.get(job__name=JOB, number=2)
        stream_text = page.request.get(f"{url}/job/{JOB}/2/consoleText").text()
        if "long build started" in stream_text:
            break
        time.sleep(0.2)
    shot(page, "builds-build-running")
    dialogs: list[str] = []

    def accept(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.locator("#abort-build").click()
    expect(page.locator("#build-result")).to_have_text("ABORTED", timeout=15_000)
    assert dialogs == [f"Are you sure you want to abort {JOB} #2?"]
    expect(page.locator(".app-bar .ball-aborted")).to_be_visible()
    expect(page.locator("#abort-build")).to_have_count(0)
    build = Build.objects.get(job__name=JOB, number=2)
    assert build.result == "ABORTED" and build.aborted_by == "ada"
    shot(page, "builds-build-aborted")

    api = page.request.get(f"{url}/job/{JOB}/2/api/json").json()
    assert api["result"] == "ABORTED" and api["building"] is False
    page.goto(f"{url}/job/{JOB}/2/console")
    expect(page.locator("#console-status")).to_have_text("Finished: ABORTED")
    expect(page.locator("#console-log")).to_contain_text("Aborted by ada")
    expect(page.locator("#console-log")).not_to_contain_text("never printed")
    shot(page, "builds-console-aborted")

    # The history and the permalinks.
    page.goto(f"{url}/job/{JOB}/")
    expect(page.locator('#builds tr[data-build="2"] .ball')).to_have_attribute("title", "Aborted")
    expect(page.locator('#builds tr[data-build="1"] .ball')).to_have_attribute("title", "Success")
    expect(page.locator("#permalinks")).to_contain_text("Last successful build (#1)")
    expect(page.locator("#permalinks")).to_contain_text("Last build (#2)")
    shot(page, "builds-job-history")
    page.locator("#permalinks").get_by_role("link", name="Last successful build (#1)").click()
    expect(page).to_have_url(f"{url}/job/{JOB}/1/")

    # What became of the first build request: its queue item stays readable.
    from builds.models import QueueItem

    item = QueueItem.objects.get(build__job__name=JOB, build__number=1)
    page.goto(f"{url}/queue/item/{item.pk}/")
    expect(page.locator("#queue-item-state")).to_have_text(f"Started as {JOB} #1")
    shot(page, "builds-queue-item")
    left = page.request.get(f"{url}/queue/item/{item.pk}/api/json").json()
    assert left["_class"] == "hudson.model.Queue$LeftItem"
    assert left["executable"]["url"] == f"{url}/job/{JOB}/1/"

    # A mistake in the configuration is shown beside its field and nothing is saved.
    page.goto(f"{url}/job/{JOB}/configure")
    page.fill("#id_quiet_period", "-3")
    page.fill("#id_steps-0-unstable_return", "0")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#field-quiet_period .field-error")).to_have_text(
        "Ensure this value is greater than or equal to 0."
    )
    expect(page.locator("#field-steps-0-unstable_return .field-error")).to_have_text(
        "Exit code zero is ignored and does not make the build unstable"
    )
    shot(page, "builds-configure-errors")

    # Rename, then delete the project.
    page.goto(f"{url}/job/{JOB}/")
    page.locator(".side-panel").get_by_role("link", name="Rename").click()
    expect(page.locator("#id_new_name")).to_have_value(JOB)
    page.get_by_role("button", name="Rename").click()
    expect(page.locator("#field-new_name .field-error")).to_have_text(
        "The new name is the same as the current name."
    )
    shot(page, "builds-rename")
    page.fill("#id_new_name", "hello-renamed")
    page.get_by_role("button", name="Rename").click()
    expect(page).to_have_url(f"{url}/job/hello-renamed/")
    page.once("dialog", accept)
    page.locator(".side-panel").get_by_role("button", name="Delete Project").click()
    expect(page).to_have_url(f"{url}/")
    assert dialogs[-1] == "Delete the Project ‘hello-renamed’?"
    assert not Job.objects.exists()


def test_a_big_log_keeps_the_page_bounded(browser_page, console_server, login, shot):
    from builds.models import Build, Job

    url = console_server.url
    page = browser_page
    make_persona("ada", "Administrators", is_staff=True, is_superuser=True)
    login(page, "ada", PASSWORD)
    builtin_node_online(page, url)
    Job.objects.create(
        name="chatty",
        quiet_period=0,
        steps=[
            {
                "type": "shell",
                "command": "set +x\nsleep 3\nseq 1 40000\nsleep 1",
                "unstable_return": None,
            }
        ],
    )
    page.goto(f"{url}/job/chatty/")
    page.locator(".side-panel").get_by_role("button", name="Build Now").click()
    expect(page.locator('#builds tr[data-build="1"]')).to_be_visible(timeout=15_000)
    page.goto(f"{url}/job/chatty/1/console")
    wait_ws(page)
    started = time.monotonic()
    log = page.locator("#console-log")
    # 40,000 lines arrive live; the page keeps the last 10,000 and says where the rest is.
    expect(log.get_by_text("40000", exact=True)).to_have_count(1, timeout=30_000)
    print(f"40,000 lines followed in {time.monotonic() - started:.1f} s")
    assert page.evaluate("window.stewardConsole.lines()") <= 10_000
    assert log.locator(".line").count() <= 10_000
    hidden = page.locator("#console-hidden")
    expect(hidden).to_contain_text("… earlier output hidden, see the Full Log")
    expect(hidden.get_by_role("link", name="Full Log")).to_have_attribute(
        "href", "/job/chatty/1/consoleText"
    )
    expect(page.locator("#console-status")).to_have_text("Finished: SUCCESS", timeout=20_000)
    viewport_shot(page, "builds-console-bounded")

    # Opened afterwards, the console starts with the tail and offers the full log.
    page.reload()
    expect(page.locator("#console-skip")).to_contain_text("Skipping")
    expect(page.locator("#console-skip")).to_contain_text("KB.. Full Log")
    first = log.locator(".line").first.inner_text()
    assert first != "Started by user ada" and int(first) > 10_000
    expect(log.locator(".line").last).to_have_text("Finished: SUCCESS")
    viewport_shot(page, "builds-console-tail")
    full = page.request.get(f"{url}/job/chatty/1/consoleText").text()
    assert "\n1\n2\n3\n" in full and "\n40000\n" in full
    assert Build.objects.get(job__name="chatty").result == "SUCCESS"
