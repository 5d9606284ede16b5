"""The dashboard in Chromium against the real console: the job list's Build Now, the Build
Executor Status widget following a real build on the built-in node live (no page reload), and
the Build Queue widget showing why an item waits and cancelling it."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from builds.models import Build, Job, QueueItem
from console.testing import PASSWORD, make_persona
from nodes.models import Node

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def wait_ws(page) -> None:
    page.wait_for_function("document.body.dataset.ws === 'open'", timeout=10_000)


def builtin_online(page, url: str) -> Node:
    """The console launches the built-in node when it starts. A test before this one may have
    flushed the database since; then launch it again from its page, as a user would."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        node = Node.objects.filter(is_builtin=True).first()
        if node is not None and node.connection == Node.Connection.CONNECTED:
            return node
        time.sleep(0.1)
    page.goto(f"{url}/computer/(built-in)/")
    page.locator("form[action$='/launchSlaveAgent'] button").first.click()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        node = Node.objects.filter(is_builtin=True).first()
        if node is not None and node.connection == Node.Connection.CONNECTED:
            return node
        time.sleep(0.1)
    raise AssertionError(f"the built-in node did not come online: {node and node.connection_cause}")


def test_build_now_executors_and_the_queue_follow_live(browser_page, console_server, login, shot):
    url = console_server.url
    page = browser_page
    make_persona("dana", "Administrators", is_staff=True, is_superuser=True)
    login(page, "dana", PASSWORD)
    builtin_online(page, url)
    Job.objects.create(
        name="sleepy", quiet_period=0, steps=[{"type": "shell", "command": "sleep 3"}]
    )
    Job.objects.create(
        name="gpu-job",
        quiet_period=0,
        label_expression="gpu",
        steps=[{"type": "shell", "command": "nvidia-smi"}],
    )

    page.goto(f"{url}/")
    wait_ws(page)
    queue_widget = page.locator("#buildQueue")
    executors = page.locator("#executors")
    expect(page.locator("#projectstatus tbody tr")).to_have_count(2)
    expect(page.locator("#job_sleepy .ball")).to_have_attribute("title", "Not built")
    expect(queue_widget).to_contain_text("Build Queue (0)")
    expect(queue_widget).to_contain_text("No builds in the queue.")
    builtin = executors.locator('[data-node="(built-in)"]')
    expect(builtin.locator(".executor-node-name")).to_have_text("Built-In Node")
    expect(builtin.locator(".executor-count")).to_have_text("0/2")
    expect(builtin.locator(".executor.idle")).to_have_count(2)
    shot(page, "dashboard-jobs-idle")

    # Build Now: the page stays, the executor goes busy and then idle again, all pushed live.
    page.evaluate("window.__samePage = true")
    page.get_by_role("button", name="Schedule a Build for sleepy").click()
    expect(page.locator("#build-toast")).to_have_text("Build scheduled")
    expect(executors).to_contain_text("sleepy #1", timeout=15_000)
    expect(builtin.locator(".executor-count")).to_have_text("1/2")
    busy = builtin.locator(".executor.busy")
    expect(busy.locator("a.executor-build")).to_have_attribute("href", "/job/sleepy/1/console")
    # The first build has no estimate yet: its bar is indeterminate.
    expect(busy.locator(".executor-progress")).to_have_class(re.compile("indeterminate"))
    expect(page.locator("#job_sleepy .ball")).to_have_class(re.compile("ball-anime"))
    shot(page, "dashboard-first-build-running")
    expect(builtin.locator(".executor.idle")).to_have_count(2, timeout=20_000)
    expect(executors).not_to_contain_text("sleepy #1")
    expect(page.locator("#job_sleepy .ball")).to_have_attribute("title", "Success")
    expect(page.locator("#job_sleepy td.run-link").first).to_contain_text("#1")
    assert page.evaluate("window.__samePage") is True, "the page was reloaded"
    assert Build.objects.get(job__name="sleepy", number=1).result == Build.Result.SUCCESS

    # The second build has an estimate (the first one's duration): its bar advances by itself.
    page.get_by_role("button", name="Schedule a Build for sleepy").click()
    expect(executors).to_contain_text("sleepy #2", timeout=15_000)
    bar = builtin.locator(".executor.busy .executor-progress")
    expect(bar).to_have_attribute("data-estimate", re.compile(r"^\d+$"))
    # Once it runs (not merely claimed its executor), the bar shows how far it is.
    expect(bar).to_have_attribute("aria-valuenow", re.compile(r"^\d+$"))
    expect(busy.locator(".executor-abort")).to_have_attribute("aria-label", "Abort sleepy #2")
    first = int(bar.get_attribute("aria-valuenow"))
    page.wait_for_timeout(1300)
    second = int(bar.get_attribute("aria-valuenow"))
    assert second > first, (first, second)
    shot(page, "dashboard-build-progress")
    expect(builtin.locator(".executor.idle")).to_have_count(2, timeout=20_000)
    expect(page.locator("#job_sleepy td.run-link").first).to_contain_text("#2")

    # A job for a label no node has waits in the queue, saying why; × cancels it.
    page.get_by_role("button", name="Schedule a Build for gpu-job").click()
    item = queue_widget.locator(".queue-item")
    expect(queue_widget).to_contain_text("Build Queue (1)", timeout=10_000)
    expect(item.locator(".queue-item-name")).to_have_text("gpu-job")
    expect(item).to_contain_text("There are no nodes with the label ‘gpu’", timeout=10_000)
    expect(item).to_contain_text("Started by user dana")
    expect(item).to_contain_text(re.compile(r"Waiting for \d"))
    expect(item).to_have_attribute("title", re.compile("There are no nodes with the label ‘gpu’"))
    shot(page, "dashboard-queue-waiting")

    page.once("dialog", lambda dialog: dialog.accept())
    item.get_by_role("button", name="Cancel the queued run of gpu-job").click()
    expect(queue_widget).to_contain_text("Build Queue (0)")
    expect(queue_widget).to_contain_text("No builds in the queue.")
    assert QueueItem.objects.get(job__name="gpu-job").cancelled
    assert page.evaluate("window.__samePage") is True, "the page was reloaded"
    shot(page, "dashboard-queue-cancelled")
