"""The Manage Nodes screens in Chromium against the real console: create an agent through the
forms, see it in the Nodes list, follow its state and its launch log live, configure it, take
it offline and back, delete it; launch a real agent over SSH against a real sshd; and follow a
real build on the Built-In Node's page (its executors, the projects tied to it, its Build
History)."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from console.testing import PASSWORD, free_port, make_persona
from credentials import services as credential_services
from credentials.forms import CredentialInput

# The sshd fixtures of the node tests (a real OpenSSH server and its login user).
from nodes.tests.conftest import (  # noqa: F401
    agent_user,
    client_key,
    encrypted_client_key,
    remote_root,
    sshd,
    sshd_factory,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def password_credential(credential_id: str, username: str, password: str):
    return credential_services.create_credential(
        CredentialInput(
            kind="usernamePassword",
            scope="SYSTEM",
            credential_id=credential_id,
            description="agent login",
            username=username,
            secrets={"password": password},
        )
    )


def wait_ws(page) -> None:
    page.wait_for_function("document.body.dataset.ws === 'open'", timeout=10_000)


def test_create_configure_take_offline_and_delete_an_agent(
    browser, browser_page, console_server, login, shot
):
    from nodes.models import Node, NodeHostKey

    url = console_server.url
    page = browser_page
    make_persona("nadia", "Administrators", is_staff=True, is_superuser=True)
    password_credential("agent-login", "steward", "not-a-real-password-9")
    closed_port = free_port()  # nothing listens there: every launch fails at once
    login(page, "nadia", PASSWORD)

    # Manage Steward → Nodes: the Built-In Node is always there.
    page.goto(f"{url}/manage/")
    page.get_by_role("link", name=re.compile("^Nodes")).first.click()
    expect(page).to_have_url(f"{url}/computer/")
    expect(page.get_by_role("heading", name="Nodes")).to_be_visible()
    expect(page.locator("#computers tbody tr")).to_have_count(1)
    expect(page.locator("#computers")).to_contain_text("Built-In Node")
    expect(page.locator("#computers tfoot")).to_contain_text("Data obtained")
    shot(page, "nodes-list-builtin-only")

    # New Node → Permanent Agent.
    page.get_by_role("link", name="New Node").click()
    expect(page.get_by_role("heading", name="New node")).to_be_visible()
    expect(page.get_by_text("Copy Existing Node")).to_have_count(0)  # no agents yet
    page.fill("#id_name", "bad/name")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#field-name .field-error")).to_have_text("‘/’ is an unsafe character")
    page.fill("#id_name", "linux-1")
    shot(page, "nodes-new")
    page.get_by_role("button", name="Create").click()

    # The agent's configuration form.
    expect(page.locator("#id_name")).to_have_value("linux-1")
    page.fill("#id_description", "Linux build box")
    page.fill("#id_num_executors", "2")
    page.fill("#id_remote_fs", "/home/steward/agent")
    page.fill("#id_label_string", "linux docker")
    expect(page.locator(".launcher-form[data-launcher=command]")).to_be_hidden()
    page.fill("#id_ssh-host", "127.0.0.1")
    expect(page.locator("#id_ssh-credentials_id option[value=agent-login]")).to_have_count(1)
    page.select_option("#id_ssh-credentials_id", "agent-login")
    expect(page.locator("#field-ssh-provided_key")).to_be_hidden()
    page.select_option("#id_ssh-host_key_strategy", "manually_provided")
    expect(page.locator("#field-ssh-provided_key")).to_be_visible()
    page.select_option("#id_ssh-host_key_strategy", "non_verifying")
    expect(page.locator("#id_ssh-port")).to_be_hidden()  # under "Advanced"
    page.locator("#ssh-advanced summary").click()
    page.fill("#id_ssh-port", str(closed_port))
    page.fill("#id_ssh-max_retries", "0")
    expect(page.locator("#field-idle_delay")).to_be_hidden()
    page.locator("#env-table input[name=env_name]").first.fill("JAVA_HOME")
    page.locator("#env-table input[name=env_value]").first.fill("/opt/jdk")
    page.get_by_role("button", name="Add").click()
    page.locator("#env-table input[name=env_name]").nth(1).fill("LANG")
    page.locator("#env-table input[name=env_value]").nth(1).fill("C.UTF-8")
    page.fill("#id_freeDiskSpaceThreshold", "500MB")
    shot(page, "nodes-new-configure")
    page.get_by_role("button", name="Save").click()

    # Back on the list: the agent is there; saving a "Keep online" agent launched it, and the
    # launch failed (nothing listens on that port), live.
    expect(page).to_have_url(f"{url}/computer/")
    row = page.locator("#computers tr[data-node=linux-1]")
    expect(row).to_be_visible()
    expect(row).to_contain_text("0/2")
    expect(row).to_contain_text("docker")
    expect(row.locator(".node-state-line")).to_contain_text("Failed", timeout=15_000)
    shot(page, "nodes-list")
    node = Node.objects.get(name="linux-1")
    assert node.launcher_config["port"] == closed_port
    assert node.launcher_config["credentials_id"] == "agent-login"
    assert node.env_vars == [
        {"name": "JAVA_HOME", "value": "/opt/jdk"},
        {"name": "LANG", "value": "C.UTF-8"},
    ]

    # Filters on the server.
    page.select_option("select[name=label]", "docker")
    expect(page).to_have_url(re.compile(r"label=docker"))
    expect(page.locator("#computers tbody tr")).to_have_count(1)
    page.select_option("select[name=state]", "online")
    expect(page.locator("#computers tbody")).to_contain_text("No nodes match these filters.")
    page.get_by_role("link", name="Clear filters").click()
    expect(page.locator("#computers tbody tr")).to_have_count(2)

    # The node page: both facts in words, and it follows the node live.
    row.locator("th a").click()
    expect(page.get_by_role("heading", name="Agent linux-1", exact=True)).to_be_visible()
    wait_ws(page)
    expect(page.locator("#node-connection")).to_contain_text("Failed")
    expect(page.locator("#node-connection")).to_contain_text(f"127.0.0.1:{closed_port}")
    expect(page.locator("#node-availability")).to_contain_text("Accepting tasks")
    expect(page.locator("#next-attempt")).to_contain_text("Next launch attempt in")
    shot(page, "nodes-node-page-failed")

    # A second tab presses "Relaunch agent": the first one updates without a reload.
    page.evaluate("window.__notReloaded = true")
    other = browser_page.context.new_page()
    other.goto(f"{url}/computer/linux-1/")
    other.get_by_role("button", name="Relaunch agent").first.click()
    expect(other).to_have_url(f"{url}/computer/linux-1/log")
    wait_ws(other)
    expect(other.locator("#agent-log")).to_contain_text(
        f"[SSH] Opening SSH connection to 127.0.0.1:{closed_port}.", timeout=15_000
    )
    expect(other.locator("#agent-log")).to_contain_text("Connection refused", timeout=15_000)
    expect(other.locator("#launch-select option")).to_have_count(2)
    shot(other, "nodes-log")
    other.close()
    expect(page.locator("#node-facts")).to_contain_text("Failed")
    page.wait_for_function(
        "document.querySelector('#node-connection').textContent.includes('Launched by nadia') ||"
        " document.querySelector('#node-connection').textContent.includes('Connection refused')"
    )
    assert page.evaluate("window.__notReloaded") is True

    # Mark this node temporarily offline, update the reason, bring it back.
    page.get_by_role("link", name="Mark this node temporarily offline").click()
    expect(page.get_by_role("heading", name="Taking linux-1 Offline")).to_be_visible()
    page.fill("#id_offlineMessage", "replacing a disk")
    shot(page, "nodes-mark-offline")
    page.get_by_role("button", name="Mark this node temporarily offline").click()
    expect(page.locator("#node-availability")).to_contain_text(
        "Offline by user — Disconnected by nadia : replacing a disk"
    )
    shot(page, "nodes-node-page-offline")
    page.get_by_role("link", name="Update offline reason").click()
    expect(page.get_by_role("heading", name="Set linux-1 Offline Reason")).to_be_visible()
    page.fill("#id_offlineMessage", "replacing two disks")
    page.get_by_role("button", name="Update reason").click()
    expect(page.locator("#node-availability")).to_contain_text("replacing two disks")
    page.get_by_role("button", name="Bring this node back online").click()
    expect(page.locator("#node-availability")).to_contain_text("Accepting tasks")

    # Configure: a new label shows on the page.
    page.get_by_role("link", name="Configure", exact=True).click()
    expect(page.locator("#id_ssh-credentials_id")).to_have_value("agent-login")
    expect(page.locator("#id_freeDiskSpaceThreshold")).to_have_value("500MB")
    shot(page, "nodes-configure")
    page.fill("#id_label_string", "linux docker arm64")
    page.fill("#id_num_executors", "0")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#field-num_executors .field-error")).to_have_text(
        "Invalid agent configuration for linux-1. Invalid number of executors."
    )
    page.fill("#id_num_executors", "3")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="Agent linux-1", exact=True)).to_be_visible()
    expect(page.locator(".labels")).to_contain_text("arm64")
    expect(page.locator(".node-executors .executor-count")).to_have_text("0/3")

    # System Information, Build History, Trust SSH Host Key.
    page.get_by_role("link", name="System Information").click()
    expect(page.locator("#system-info-unavailable")).to_have_text(
        "System Information is unavailable when agent is offline."
    )
    shot(page, "nodes-system-info-offline")
    page.get_by_role("link", name="Build History").click()
    expect(page.locator("#no-builds")).to_have_text("No builds")
    shot(page, "nodes-build-history")
    NodeHostKey.objects.create(
        node=node,
        algorithm="ssh-ed25519",
        key_base64="AAAAC3NzaC1lZDI1NTE5AAAAIA",
        fingerprint="SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU",
        trusted=False,
    )
    page.goto(f"{url}/computer/linux-1/")
    page.get_by_role("link", name="Trust SSH Host Key").first.click()
    expect(page.locator("#trust-question")).to_have_text(
        "Do you want to trust the SSH Host Key with fingerprint "
        "SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU for future connections to this host?"
    )
    shot(page, "nodes-trust-host-key")
    page.get_by_role("button", name="No").click()
    expect(page.get_by_role("link", name="Trust SSH Host Key")).to_have_count(0)

    # Configure Monitors, and the Built-In Node.
    page.goto(f"{url}/computer/")
    page.get_by_role("link", name="Configure Monitors").click()
    expect(page.get_by_role("heading", name="Configure Node Monitors")).to_be_visible()
    page.fill("#id_free_disk_threshold", "2GiB")
    page.fill("#id_free_disk_warning", "3GiB")
    shot(page, "nodes-configure-monitors")
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(f"{url}/computer/")
    page.get_by_role("link", name="Built-In Node", exact=True).click()
    expect(page.get_by_role("heading", name="Built-In Node", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Delete Agent")).to_have_count(0)
    shot(page, "nodes-builtin")
    page.get_by_role("link", name="Configure", exact=True).click()
    expect(page.locator("#id_launcher")).to_have_count(0)
    shot(page, "nodes-builtin-configure")

    # Copy Existing Node: held off until saved.
    page.goto(f"{url}/computer/new")
    page.fill("#id_name", "linux-2")
    page.check("input[name=mode][value=copy]")
    page.fill("#id_copy_from", "linux-1")
    shot(page, "nodes-new-copy")
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(f"{url}/computer/linux-2/configure")
    expect(page.locator("#id_label_string")).to_have_value("linux docker arm64")
    assert Node.objects.get(name="linux-2").hold_off_launch is True

    # Delete Agent (with Jenkins' confirmation).
    page.goto(f"{url}/computer/linux-2/")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete Agent").click()
    expect(page).to_have_url(f"{url}/computer/")
    expect(page.locator("#computers tr[data-node=linux-2]")).to_have_count(0)
    page.goto(f"{url}/computer/linux-1/delete")
    expect(page.get_by_text("Delete the agent ‘linux-1’?")).to_be_visible()
    shot(page, "nodes-delete")
    page.get_by_role("button", name="Yes").click()
    expect(page.locator("#computers tbody tr")).to_have_count(1)
    assert not Node.objects.filter(name__startswith="linux-").exists()


def test_launch_an_agent_over_ssh_and_watch_its_log_live(
    browser_page,
    console_server,
    login,
    shot,
    sshd,  # noqa: F811
    remote_root,  # noqa: F811
):
    from nodes.models import Node

    url = console_server.url
    page = browser_page
    make_persona("olga", "Operators")
    make_persona("nadia", "Administrators", is_staff=True, is_superuser=True)
    password_credential("sshd-login", sshd.username, sshd.password)
    login(page, "nadia", PASSWORD)

    page.goto(f"{url}/computer/new")
    page.fill("#id_name", "ssh-agent")
    page.get_by_role("button", name="Create").click()
    page.fill("#id_remote_fs", str(remote_root))
    page.fill("#id_label_string", "linux")
    page.fill("#id_ssh-host", "127.0.0.1")
    expect(page.locator("#id_ssh-credentials_id option[value=sshd-login]")).to_have_count(1)
    page.select_option("#id_ssh-credentials_id", "sshd-login")
    page.select_option("#id_ssh-host_key_strategy", "manually_trusted")
    page.locator("#ssh-advanced summary").click()
    page.fill("#id_ssh-port", str(sshd.port))
    # Launched on demand only, so that pressing "Launch agent" is what starts it.
    page.check("input[name=retention][value=demand]")
    page.fill("#id_idle_delay", "30")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#computers tr[data-node=ssh-agent]")).to_be_visible()
    assert Node.objects.get(name="ssh-agent").launch_number == 0

    # An operator presses "Launch agent" and watches the log lines arrive.
    page.context.clear_cookies()
    login(page, "olga", PASSWORD)
    page.goto(f"{url}/computer/ssh-agent/")
    page.get_by_role("button", name="Launch agent").first.click()
    expect(page).to_have_url(f"{url}/computer/ssh-agent/log")
    wait_ws(page)
    log = page.locator("#agent-log")
    expect(log).to_contain_text(f"[SSH] Opening SSH connection to 127.0.0.1:{sshd.port}.")
    expect(log).to_contain_text(
        f"[SSH] The SSH key with fingerprint {sshd.fingerprint} has been automatically trusted",
        timeout=20_000,
    )
    expect(log).to_contain_text("[SSH] Authentication successful.", timeout=20_000)
    expect(log).to_contain_text("Agent successfully connected and online", timeout=30_000)
    expect(page.locator("#log-status")).to_contain_text("complete")
    assert sshd.password not in log.inner_text()
    shot(page, "nodes-ssh-launch-log")

    # The node is online, with its Architecture in the Nodes list (from the first monitor run).
    page.goto(f"{url}/computer/ssh-agent/")
    expect(page.locator("#node-connection")).to_contain_text("Connected")
    expect(page.locator("#node-availability")).to_contain_text("Accepting tasks")
    row = page.locator("#computers tr[data-node=ssh-agent]")
    deadline = time.monotonic() + 30
    while True:
        page.goto(f"{url}/computer/")
        text = row.inner_text()
        if "Linux (" in text or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    expect(row.locator("td.monitor").first).to_contain_text(re.compile(r"^Linux \(\w+\)$"))
    expect(row.locator(".status-icon")).to_have_class(re.compile("status-success"))
    shot(page, "nodes-list-online")

    # System Information shows what the agent reported.
    page.goto(f"{url}/computer/ssh-agent/systemInfo")
    expect(page.locator(".system-header")).to_contain_text("Linux agent, version")
    expect(page.locator("#environment-variables")).to_contain_text("HOME")
    shot(page, "nodes-system-info")

    # Disconnect (with a reason), then delete.
    page.goto(f"{url}/computer/ssh-agent/")
    page.get_by_role("link", name="Disconnect").click()
    expect(page.get_by_role("heading", name="Disconnect the computer ‘ssh-agent’?")).to_be_visible()
    page.fill("#id_offlineMessage", "end of test")
    page.get_by_role("button", name="Yes").click()
    expect(page.locator("#node-connection")).to_contain_text("Disconnected by olga : end of test")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete Agent").click()
    expect(page).to_have_url(f"{url}/computer/")


def builtin_online(page, url: str):
    """The built-in node, connected. The console launches it when it starts; a test before
    this one may have flushed the database since, so launch it from its page if needed."""
    from nodes.models import Node

    def connected():
        node = Node.objects.filter(is_builtin=True).first()
        return node if node is not None and node.connection == Node.Connection.CONNECTED else None

    deadline = time.monotonic() + 5
    while (node := connected()) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if node is not None:
        return node
    page.goto(f"{url}/computer/(built-in)/")
    page.locator("form[action$='/launchSlaveAgent'] button").first.click()
    deadline = time.monotonic() + 30
    while (node := connected()) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert node is not None, "the built-in node did not come online"
    return node


def test_node_page_follows_a_build_on_its_executors_live(browser_page, console_server, login, shot):
    from builds.models import Build, Job

    url = console_server.url
    page = browser_page
    make_persona("nadia", "Administrators", is_staff=True, is_superuser=True)
    login(page, "nadia", PASSWORD)
    builtin = builtin_online(page, url)
    Job.objects.create(
        name="sleepy", quiet_period=0, steps=[{"type": "shell", "command": "sleep 6"}]
    )
    Job.objects.create(name="on-controller", quiet_period=0, label_expression="built-in")
    Job.objects.create(name="gpu-job", quiet_period=0, label_expression="gpu")

    # The Built-In Node's page: its executors in the Build Executor Status widget, and the
    # projects tied to it (unlabelled jobs and those for its label).
    page.goto(f"{url}/computer/(built-in)/")
    wait_ws(page)
    widget = page.locator(f"#executors-{builtin.pk}")
    expect(widget.locator(".widget-header h2")).to_have_text("Build Executor Status")
    expect(widget.locator(".executor-count")).to_have_text("0/2")
    expect(widget.locator(".executor.idle")).to_have_count(2)
    expect(page.locator("#tied-projects tr[data-job]")).to_have_count(2)
    expect(page.locator("#tied-projects")).to_contain_text("on-controller")
    expect(page.locator("#tied-projects")).not_to_contain_text("gpu-job")
    page.evaluate("window.__samePage = true")

    # A build starts from the dashboard in another tab: this page follows it live.
    other = page.context.new_page()
    other.goto(f"{url}/")
    other.get_by_role("button", name="Schedule a Build for sleepy").click()
    busy = widget.locator(".executor.busy")
    expect(busy.locator("a.executor-build")).to_have_text("sleepy #1", timeout=15_000)
    expect(busy.locator("a.executor-build")).to_have_attribute("href", "/job/sleepy/1/console")
    expect(widget.locator(".executor-count")).to_have_text("1/2")
    expect(busy.locator(".executor-abort")).to_have_attribute("aria-label", "Abort sleepy #1")
    shot(page, "nodes-node-page-busy")

    # One node change refreshes both the state panel and the widget at once; neither request
    # cancels the other.
    other.goto(f"{url}/computer/(built-in)/markOffline")
    other.get_by_role("button", name="Mark this node temporarily offline").click()
    expect(page.locator("#node-availability")).to_contain_text("Offline by user")
    expect(widget.locator(".executor-node-note")).to_have_text("(suspended)")
    expect(busy.locator("a.executor-build")).to_have_text("sleepy #1")
    other.get_by_role("button", name="Bring this node back online").click()
    expect(page.locator("#node-availability")).to_contain_text("Accepting tasks")
    expect(widget.locator(".executor-node-note")).to_have_count(0)
    other.close()

    # The build ends: the executor is idle again, all without a reload.
    expect(widget.locator(".executor.idle")).to_have_count(2, timeout=20_000)
    expect(page.locator('#tied-projects tr[data-job="sleepy"] .ball')).to_have_attribute(
        "title", "Success", timeout=5_000
    )
    assert page.evaluate("window.__samePage") is True, "the page was reloaded"

    # Build History of the node.
    page.get_by_role("link", name="Build History").click()
    row = page.locator('#builds tr[data-build="sleepy #1"]')
    expect(row.locator(".build-result")).to_have_text("Success")
    expect(row.locator("a.build-number")).to_have_attribute("href", "/job/sleepy/1/")
    expect(row.locator("a.job-name")).to_have_attribute("href", "/job/sleepy/")
    expect(row.locator(".build-duration")).to_have_text(re.compile(r"^[67](\.\d)? sec$"))
    shot(page, "nodes-build-history-builds")
    assert Build.objects.get(job__name="sleepy", number=1).node_id == builtin.pk
