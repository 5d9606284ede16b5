"""The Manage Nodes screens through Django's test client: every page and action, for the
administrator, the operator and the viewer, with Jenkins' words on the page."""

from __future__ import annotations

import html as html_module
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from builds.models import Build, Executor, Job
from console import logs
from credentials import services as credential_services
from credentials.forms import CredentialInput
from nodes import agent_package, launchlog, services
from nodes.models import MonitorSettings, Node, NodeHostKey

pytestmark = pytest.mark.django_db

SSH_CONFIG = {
    "host": "agent1.example.com",
    "port": 22,
    "credentials_id": "",
    "host_key_strategy": "manually_trusted",
    "require_manual_trust": False,
    "provided_key": "",
    "python_path": "",
    "prefix_start_cmd": "",
    "suffix_start_cmd": "",
    "launch_timeout": 60,
    "max_retries": 10,
    "retry_wait": 15,
    "tcp_nodelay": True,
}


def _client_for(user) -> Client:
    # One Client per persona: tests act as several people in turn.
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def as_admin(admin) -> Client:
    return _client_for(admin)


@pytest.fixture
def as_operator(operator) -> Client:
    return _client_for(operator)


@pytest.fixture
def as_viewer(viewer) -> Client:
    return _client_for(viewer)


def make_node(name: str = "agent1", **fields) -> Node:
    defaults = {
        "remote_fs": "/home/agent",
        "label_string": "linux docker",
        "launcher": "ssh",
        "launcher_config": dict(SSH_CONFIG),
        "num_executors": 2,
    }
    defaults.update(fields)
    return Node.objects.create(name=name, **defaults)


def url(name: str, node: Node | None = None) -> str:
    return reverse(f"nodes:{name}", args=[node.url_name] if node is not None else [])


def text_of(response) -> str:
    """The page as a user reads it: tags stripped, whitespace collapsed."""
    html = response.content.decode()
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return html_module.unescape(" ".join(re.sub(r"<[^>]+>", " ", html).split()))


def tasks_of(response) -> list[str]:
    """The labels of the side panel's tasks (links and one-button forms)."""
    html = response.content.decode()
    panel = re.search(r'<aside class="side-panel".*?</aside>', html, re.S).group(0)
    return [
        html_module.unescape(t)
        for t in re.findall(r'class="task-link[^"]*"[^>]*>.*?<span>(.*?)</span>', panel, re.S)
    ]


def agent_form(**overrides) -> dict:
    data = {
        "name": "agent-new",
        "description": "A build box",
        "num_executors": "2",
        "remote_fs": "/home/steward/agent",
        "label_string": "linux  docker",
        "mode": "NORMAL",
        "launcher": "ssh",
        "retention": "always",
        "in_demand_delay": "0",
        "idle_delay": "1",
        "ssh-host": "agent.example.com",
        "ssh-credentials_id": "",
        "ssh-host_key_strategy": "manually_trusted",
        "ssh-provided_key": "",
        "ssh-port": "22",
        "ssh-python_path": "",
        "ssh-prefix_start_cmd": "",
        "ssh-suffix_start_cmd": "",
        "ssh-launch_timeout": "60",
        "ssh-max_retries": "10",
        "ssh-retry_wait": "15",
        "ssh-tcp_nodelay": "on",
        "command-command": "",
        "env_name": ["", ""],
        "env_value": ["", ""],
        "freeDiskSpaceThreshold": "",
        "freeDiskSpaceWarningThreshold": "",
        "freeTempSpaceThreshold": "",
        "freeTempSpaceWarningThreshold": "",
    }
    data.update(overrides)
    return data


def ssh_credential(credential_id: str = "agent-key", *, username: str = "steward", domain=None):
    data = CredentialInput(
        kind="usernamePassword",
        scope="SYSTEM",
        credential_id=credential_id,
        description="",
        username=username,
        secrets={"password": "not-shown-anywhere-7"},
    )
    return credential_services.create_credential(data, domain=domain)


# --- the Nodes list ------------------------------------------------------------------------------


def test_nodes_list_shows_builtin_node_and_agents_with_jenkins_columns(as_admin):
    make_node("agent1")
    response = as_admin.get("/computer/")
    assert response.status_code == 200
    page = text_of(response)
    for caption in (
        "Nodes",
        "Name",
        "Architecture",
        "Clock Difference",
        "Free Disk Space",
        "Free Swap Space",
        "Free Temp Space",
        "Response Time",
        "Data obtained",
        "Built-In Node",
        "agent1",
        "New Node",
        "Configure Monitors",
        "Refresh status",
    ):
        assert caption in page, caption
    assert "Not yet" in page
    assert Node.objects.filter(is_builtin=True).count() == 1
    # Jenkins serves the same page under /manage/computer/ too.
    assert as_admin.get("/manage/computer/").status_code == 200


def test_nodes_list_monitor_cells_warn_and_error_by_threshold(as_admin):
    now = timezone.now().isoformat()
    gib = 1 << 30
    make_node(
        "low-disk",
        monitor_data={
            "architecture": {"label": "Linux (amd64)", "machine": "x86_64", "at": now},
            "disk": {"path": "/home/agent", "free": gib // 2, "total": 100 * gib, "at": now},
            "temp": {"path": "/tmp", "free": gib + gib // 2, "total": 100 * gib, "at": now},
            "clock": {"diff_ms": 12, "at": now},
            "response": {"samples": [40, 42], "timeouts": 0, "at": now},
        },
    )
    page = as_admin.get("/computer/").content.decode()
    row = re.search(r'<tr id="node-\d+" data-node="low-disk".*?</tr>', page, re.S).group(0)
    assert "Linux (amd64)" in row
    assert re.search(
        r'class="monitor error"[^>]*title="Disk space is below threshold of 1\.00 GiB', row
    )
    assert re.search(r'class="monitor warning"[^>]*>1\.50 GiB<', row)
    assert "In sync" in row and "41ms" in row
    assert 'data="536870912"' in row


def test_free_swap_space_column_is_for_administrators_only(as_admin, client, operator):
    assert "Free Swap Space" in text_of(as_admin.get("/computer/"))
    client.force_login(operator)
    page = text_of(client.get("/computer/"))
    assert "Free Swap Space" not in page and "Free Disk Space" in page


def rows_of(response) -> list[str]:
    return re.findall(r'<tr id="node-\d+" data-node="([^"]+)"', response.content.decode())


def test_nodes_list_filters_by_label_and_state(as_admin, admin):
    make_node("web1", label_string="linux web")
    make_node("db1", label_string="linux db")
    offline = make_node("win1", label_string="windows")
    services.mark_offline(offline, admin, "patching")
    assert rows_of(as_admin.get("/computer/?label=web")) == ["web1"]
    assert rows_of(as_admin.get("/computer/?label=linux")) == ["db1", "web1"]
    assert rows_of(as_admin.get("/computer/?label=db1")) == ["db1"]  # its own name
    assert rows_of(as_admin.get("/computer/?state=temp-offline")) == ["win1"]
    assert rows_of(as_admin.get("/computer/?label=built-in")) == ["(built-in)"]
    assert rows_of(as_admin.get("/computer/?label=linux&state=online")) == []


def test_nodes_list_sorts_and_pages_on_the_server(as_admin):
    for i in range(30):
        make_node(f"n{i:02d}")
    names = rows_of(as_admin.get("/computer/?per_page=25"))
    assert names[:3] == ["(built-in)", "n00", "n01"] and len(names) == 25
    assert rows_of(as_admin.get("/computer/?per_page=25&page=2")) == [
        f"n{i:02d}" for i in range(24, 30)
    ]
    assert rows_of(as_admin.get("/computer/?sort=-name&per_page=25"))[:2] == ["(built-in)", "n29"]


@pytest.mark.parametrize("count", [1, 50])
def test_nodes_list_query_count_does_not_grow_with_nodes(
    as_admin, count, django_assert_num_queries
):
    services.ensure_builtin_node()
    MonitorSettings.load()
    for i in range(count):
        make_node(f"q{i:03d}", monitor_data={"disk": {"free": 1, "total": 2, "path": "/"}})
    as_admin.get("/computer/")  # warm the session
    # session, user, built-in node, monitor settings, count, page, busy executors, labels
    with django_assert_num_queries(8):
        response = as_admin.get("/computer/?per_page=100")
    assert response.content.decode().count('data-node="q') == count


def test_nodes_list_htmx_request_gets_the_table_partial(as_admin):
    make_node("agent1")
    response = as_admin.get("/computer/", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.lstrip().startswith("{#") is False
    assert 'id="nodes-table"' in html and "<html" not in html


def test_viewer_sees_the_list_without_management_actions(as_viewer):
    page = text_of(as_viewer.get("/computer/"))
    assert "Built-In Node" in page
    assert "New Node" not in page and "Configure Monitors" not in page


def test_refresh_status_asks_the_monitors(as_admin, as_viewer, monkeypatch):
    from nodes import monitors

    calls = []
    monkeypatch.setattr(monitors, "refresh_now", lambda: calls.append(1))
    response = as_admin.post(url("update-now"))
    assert response.status_code == 302 and calls == [1]
    assert as_viewer.post(url("update-now")).status_code == 403
    assert as_admin.get(url("update-now")).status_code == 405


def test_configure_monitors_saves_thresholds(as_admin, as_viewer):
    response = as_admin.get(url("configure-monitors"))
    assert "Don't mark agents temporarily offline" in text_of(response)
    response = as_admin.post(
        url("configure-monitors"),
        {
            "interval_seconds": "120",
            "free_disk_threshold": "2GiB",
            "free_disk_warning": "4GiB",
            "free_temp_threshold": "1GiB",
            "free_temp_warning": "2GiB",
            "disk_ignored": "on",
        },
    )
    assert response.status_code == 302
    settings_row = MonitorSettings.load()
    assert settings_row.free_disk_threshold == "2GiB" and settings_row.disk_ignored
    bad = as_admin.post(
        url("configure-monitors"),
        {
            "interval_seconds": "60",
            "free_disk_threshold": "lots",
            "free_disk_warning": "1GiB",
            "free_temp_threshold": "1GiB",
            "free_temp_warning": "2GiB",
        },
    )
    assert "“lots” is not a size" in text_of(bad)
    assert as_viewer.get(url("configure-monitors")).status_code == 403


# --- New Node ----------------------------------------------------------------------------------------


def test_new_node_page_offers_copy_only_when_agents_exist(as_admin):
    page = text_of(as_admin.get(url("new")))
    assert "Node name" in page and "Permanent Agent" in page
    assert "Copy Existing Node" not in page
    make_node("agent1")
    page = as_admin.get(url("new")).content.decode()
    assert "Copy Existing Node" in page and 'placeholder="Type for suggestions"' in page


def test_new_node_name_messages(as_admin):
    make_node("taken")
    cases = {
        "": "Name is mandatory",
        "bad/name": "‘/’ is an unsafe character",
        "trailing.": "A name cannot end with ‘.’",
        "..": "“..” is not an allowed name",
        "taken": "Agent called ‘taken’ already exists",
    }
    for name, message in cases.items():
        response = as_admin.post(url("create-item"), {"name": name, "mode": "permanent"})
        assert response.status_code == 400
        assert message in text_of(response), name


def test_new_permanent_agent_then_save_creates_it_and_requests_a_launch(
    as_admin, django_capture_on_commit_callbacks, monkeypatch
):
    response = as_admin.post(url("create-item"), {"name": "agent-new", "mode": "permanent"})
    assert response.status_code == 200
    page = text_of(response)
    for label in (
        "Name",
        "Description",
        "Number of executors",
        "Remote root directory",
        "Labels",
        "Usage",
        "Use this node as much as possible",
        "Only build jobs with label expressions matching this node",
        "Launch method",
        "Launch agents via SSH",
        "Launch agent via execution of command on the controller",
        "Host",
        "Credentials",
        "Host Key Verification Strategy",
        "Advanced",
        "Port",
        "Python Path",
        "Prefix Start Agent Command",
        "Suffix Start Agent Command",
        "Connection Timeout in Seconds",
        "Maximum Number of Retries",
        "Seconds To Wait Between Retries",
        "Use TCP_NODELAY flag on the SSH connection",
        "Availability",
        "Keep this agent online as much as possible",
        "Bring this agent online when in demand, and take offline when idle",
        "In demand delay",
        "Idle delay",
        "Node Properties",
        "Environment variables",
        "Disk Space Monitoring Thresholds",
    ):
        assert label in page, label
    assert 'value="agent-new"' in response.content.decode()

    launched = []
    monkeypatch.setattr(services, "request_launch", lambda node, **kw: launched.append(node.name))
    data = agent_form(
        env_name=["JAVA_HOME", ""], env_value=["/opt/jdk", ""], freeDiskSpaceThreshold="5GiB"
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = as_admin.post(url("do-create-item"), data)
    assert response.status_code == 302 and response["Location"] == "/computer/"
    node = Node.objects.get(name="agent-new")
    assert node.label_string == "linux docker"
    assert node.num_executors == 2 and node.remote_fs == "/home/steward/agent"
    assert node.launcher_config["host"] == "agent.example.com"
    assert node.launcher_config["port"] == 22 and node.launcher_config["tcp_nodelay"] is True
    assert node.launcher_config["host_key_strategy"] == "manually_trusted"
    assert node.env_vars == [{"name": "JAVA_HOME", "value": "/opt/jdk"}]
    assert node.disk_thresholds == {"freeDiskSpaceThreshold": "5GiB"}
    assert launched == ["agent-new"]


def test_new_demand_node_is_not_launched(as_admin, django_capture_on_commit_callbacks, monkeypatch):
    launched = []
    monkeypatch.setattr(services, "request_launch", lambda node, **kw: launched.append(node.name))
    with django_capture_on_commit_callbacks(execute=True):
        as_admin.post(url("do-create-item"), agent_form(retention="demand", idle_delay="5"))
    node = Node.objects.get(name="agent-new")
    assert node.retention == "demand" and node.idle_delay == 5
    assert launched == []


def test_copy_existing_node(as_admin):
    source = make_node("source", env_vars=[{"name": "A", "value": "1"}])
    response = as_admin.post(url("create-item"), {"name": "copy", "mode": "copy", "copy_from": ""})
    assert "Specify which agent to copy" in text_of(response)
    response = as_admin.post(
        url("create-item"), {"name": "copy", "mode": "copy", "copy_from": "ghost"}
    )
    assert "No such agent: ghost" in text_of(response)
    response = as_admin.post(
        url("create-item"), {"name": "copy", "mode": "copy", "copy_from": "source"}
    )
    assert response.status_code == 302 and response["Location"] == "/computer/copy/configure"
    copy = Node.objects.get(name="copy")
    assert copy.hold_off_launch is True
    assert copy.launcher_config == source.launcher_config
    assert copy.env_vars == source.env_vars and copy.label_string == source.label_string
    assert copy.connection == Node.Connection.DISCONNECTED and copy.launch_number == 0


def test_operator_may_create_but_viewer_may_not(as_operator, as_viewer):
    assert as_operator.get(url("new")).status_code == 200
    assert as_viewer.get(url("new")).status_code == 403
    assert as_viewer.post(url("create-item"), {"name": "x", "mode": "permanent"}).status_code == 403
    assert as_viewer.post(url("do-create-item"), agent_form()).status_code == 403
    assert not Node.objects.filter(name__in=["x", "agent-new"]).exists()


# --- configuration -------------------------------------------------------------------------------


def test_configure_validation_messages(as_admin):
    node = make_node("agent1")
    make_node("other")
    cases = [
        (
            {"num_executors": "0"},
            "Invalid agent configuration for agent1. Invalid number of executors.",
        ),
        ({"remote_fs": ""}, "Remote directory is mandatory"),
        ({"name": "other"}, "Agent called ‘other’ already exists"),
        ({"name": "a;b"}, "‘;’ is an unsafe character"),
        ({"ssh-host": ""}, "The Host must be specified"),
        ({"ssh-port": ""}, "The port must be specified"),
        ({"ssh-port": "0"}, "The port value must be greater than 0"),
        ({"ssh-port": "65536"}, "The port value must be less than 65536"),
        ({"ssh-port": "ssh"}, "Cannot parse the port"),
        (
            {"ssh-host_key_strategy": "manually_provided", "ssh-provided_key": "ssh-ed25519"},
            "Key should be 2 parts: algorithm and Base 64 encoded key value.",
        ),
        (
            {"ssh-host_key_strategy": "manually_provided", "ssh-provided_key": "ssh-ed25519 !!!"},
            "The value part of the key should be a Base64 encoded value.",
        ),
        ({"freeTempSpaceThreshold": "much"}, "“much” is not a size"),
        ({"launcher": "command", "command-command": ""}, "No launch command specified"),
        (
            {"env_name": ["1BAD"], "env_value": ["x"]},
            "‘1BAD’ is not a valid environment variable name",
        ),
    ]
    for overrides, message in cases:
        data = agent_form(**{"name": "agent1", **overrides})
        response = as_admin.post(url("config-submit", node), data)
        assert response.status_code == 400, overrides
        assert message in text_of(response), overrides
    node.refresh_from_db()
    assert node.name == "agent1" and node.num_executors == 2


def test_configure_saves_and_warns_on_relative_path_and_python_path(as_admin):
    node = make_node("agent1")
    data = agent_form(
        name="renamed", remote_fs="agent-root", **{"ssh-python_path": "/opt/my python/bin/python3"}
    )
    response = as_admin.post(url("config-submit", node), data, follow=True)
    page = text_of(response)
    assert "Are you sure you want to use a relative path for the FS root?" in page
    assert "The Python path specified contains whitespaces" in page
    node.refresh_from_db()
    assert node.name == "renamed" and node.remote_fs == "agent-root"
    assert node.launcher_config["python_path"] == "/opt/my python/bin/python3"


def test_configure_shows_stored_values(as_admin):
    node = make_node(
        "agent1",
        env_vars=[{"name": "PATH_EXTRA", "value": "/opt/bin"}],
        disk_thresholds={"freeDiskSpaceWarningThreshold": "3GiB"},
    )
    html = as_admin.get(url("configure", node)).content.decode()
    assert 'value="agent1.example.com"' in html
    assert 'value="PATH_EXTRA"' in html and 'value="/opt/bin"' in html
    assert 'value="3GiB"' in html


def test_command_launcher_config(as_admin):
    node = make_node("agent1")
    data = agent_form(
        name="agent1",
        launcher="command",
        **{"command-command": "docker exec -i c python3 /agent.pyz"},
    )
    assert as_admin.post(url("config-submit", node), data).status_code == 302
    node.refresh_from_db()
    assert node.launcher == "command"
    assert node.launcher_config == {"command": "docker exec -i c python3 /agent.pyz"}
    page = text_of(as_admin.get(url("configure", node)))
    assert "ssh host python3 agent.pyz" in page


def test_saving_a_copied_node_releases_the_hold_and_launches(
    as_admin, django_capture_on_commit_callbacks, monkeypatch
):
    node = make_node("copied", hold_off_launch=True)
    launched = []
    monkeypatch.setattr(services, "request_launch", lambda n, **kw: launched.append(n.name))
    with django_capture_on_commit_callbacks(execute=True):
        as_admin.post(url("config-submit", node), agent_form(name="copied"))
    node.refresh_from_db()
    assert node.hold_off_launch is False and launched == ["copied"]


def test_ssh_credentials_offered_by_kind_and_domain_with_reasons(as_admin):
    from credentials.models import Domain

    ssh_credential("everywhere")
    corp = Domain.objects.create(
        name="corp",
        specifications=[{"type": "hostname", "includes": "*.corp.example", "excludes": ""}],
    )
    ssh_credential("corp-only", domain=corp)
    text = CredentialInput(
        kind="string",
        scope="GLOBAL",
        credential_id="token",
        description="",
        secrets={"secret": "s3cr3t-value"},
    )
    credential_services.create_credential(text)

    html = as_admin.get(url("ssh-credentials") + "?ssh-host=build.corp.example").content.decode()
    assert 'value="everywhere"' in html and 'value="corp-only"' in html
    assert "token" in html and "Secret text" in html  # listed as not offered, with why

    html = as_admin.get(url("ssh-credentials") + "?ssh-host=other.example").content.decode()
    assert 'value="corp-only"' not in html
    assert "Its domain ‘corp’ does not apply here" in text_of_html(html)
    assert "s3cr3t-value" not in html and "not-shown-anywhere-7" not in html

    node = make_node("agent1")
    data = agent_form(
        name="agent1", **{"ssh-host": "other.example", "ssh-credentials_id": "corp-only"}
    )
    response = as_admin.post(url("config-submit", node), data)
    assert (
        "The selected credentials cannot be found: Its domain ‘corp’ does not apply here"
        in text_of(response)
    )
    data = agent_form(
        name="agent1", **{"ssh-host": "b.corp.example", "ssh-credentials_id": "corp-only"}
    )
    assert as_admin.post(url("config-submit", node), data).status_code == 302
    node.refresh_from_db()
    assert node.launcher_config["credentials_id"] == "corp-only"


def text_of_html(html: str) -> str:
    return html_module.unescape(" ".join(re.sub(r"<[^>]+>", " ", html).split()))


def test_builtin_node_configuration(as_admin):
    builtin = services.ensure_builtin_node()
    response = as_admin.get("/computer/(built-in)/configure")
    page = text_of(response)
    assert "Number of executors" in page and "Labels" in page and "Usage" in page
    assert "Launch method" not in page and "Remote root directory" not in page
    response = as_admin.post(
        "/computer/(built-in)/configSubmit",
        {"num_executors": "-1", "label_string": "", "mode": "NORMAL"},
    )
    assert 'Incorrect field "Number of executors". It should be a non-negative number.' in text_of(
        response
    )
    response = as_admin.post(
        "/computer/(built-in)/configSubmit",
        {"num_executors": "0", "label_string": "controller", "mode": "EXCLUSIVE"},
    )
    assert response.status_code == 302
    builtin.refresh_from_db()
    assert builtin.num_executors == 0 and builtin.label_string == "controller"
    assert builtin.mode == "EXCLUSIVE"


def test_configure_permissions(as_operator, as_viewer):
    node = make_node("agent1")
    assert as_operator.get(url("configure", node)).status_code == 200
    assert as_viewer.get(url("configure", node)).status_code == 403
    assert as_viewer.post(url("config-submit", node), agent_form(name="hacked")).status_code == 403
    node.refresh_from_db()
    assert node.name == "agent1"


# --- the node page and its actions ---------------------------------------------------------------------


def test_node_page_shows_both_facts_and_sections(as_admin, admin):
    node = make_node("agent1", description="Linux build box")
    Node.objects.filter(pk=node.pk).update(
        connection=Node.Connection.FAILED,
        connection_cause="Connection refused",
        connection_changed_at=timezone.now() - timedelta(minutes=3),
        next_launch_at=timezone.now() + timedelta(seconds=90),
        consecutive_failures=2,
        launch_number=2,
    )
    services.mark_offline(node, admin, "disk replacement")
    response = as_admin.get(url("detail", node))
    page = text_of(response)
    assert "Agent agent1" in page and "Linux build box" in page
    assert "Failed — Connection refused" in page
    assert re.search(r"\((2 min 59|3 min 0) sec ago\)", page)
    assert "Next launch attempt in" in page and "2 failed launches in a row" in page
    assert "Offline by user — Disconnected by admin : disk replacement" in page
    assert "Monitoring Data" in page and "Labels" in page and "linux" in page
    assert "Build Executor Status" in page and "agent1 (offline) 0/2" in page
    assert "Projects tied to agent1 None" in page
    tasks = tasks_of(response)
    for action in (
        "Relaunch agent",
        "Configure",
        "Delete Agent",
        "Log",
        "System Information",
        "Build History",
        "Bring this node back online",
        "Update offline reason",
    ):
        assert action in tasks, action
    assert "Mark this node temporarily offline" not in tasks


def test_node_page_actions_follow_permissions(client, operator, viewer):
    node = make_node("agent1")
    client.force_login(viewer)
    response = client.get(url("detail", node))
    assert "Agent agent1" in text_of(response)
    assert tasks_of(response) == ["Back to List", "Status", "Build History"]
    client.force_login(operator)
    tasks = tasks_of(client.get(url("detail", node)))
    for action in (
        "Launch agent",
        "Configure",
        "Delete Agent",
        "Mark this node temporarily offline",
        "Log",
        "System Information",
    ):
        assert action in tasks, action


def test_node_state_partial_has_side_panel_out_of_band(as_admin):
    node = make_node("agent1")
    html = as_admin.get(url("state", node)).content.decode()
    assert 'id="node-state"' in html and 'id="node-tasks" hx-swap-oob="true"' in html
    assert "<html" not in html
    tasks = as_admin.get(url("state", node) + "?part=tasks&active=log").content.decode()
    assert tasks.lstrip().startswith('<div id="node-tasks">') and "hx-swap-oob" not in tasks
    assert 'aria-current="page"' in tasks and "Launch agent" in tasks


def test_builtin_node_page(as_admin):
    for path in ("/computer/(built-in)/", "/computer/(master)/"):
        page = text_of(as_admin.get(path))
        assert "Built-In Node" in page and "built-in" in page
        assert "Delete Agent" not in page
    assert as_admin.post("/computer/(built-in)/doDelete").status_code == 302
    assert Node.objects.filter(is_builtin=True).exists()
    assert as_admin.get("/computer/(built-in)/delete").status_code == 404


def test_unknown_node_is_404(as_admin):
    assert as_admin.get("/computer/ghost/").status_code == 404
    assert as_admin.post("/computer/ghost/doDelete").status_code == 404


def test_launch_agent(as_admin, as_viewer, monkeypatch):
    node = make_node("agent1")
    requested = []

    def fake_launch(n, reason=""):
        requested.append(reason)
        return 1

    monkeypatch.setattr(services, "request_launch", fake_launch)
    assert as_viewer.post(url("launch", node)).status_code == 403
    response = as_admin.post(url("launch", node))
    assert response.status_code == 302 and response["Location"] == url("log", node)
    assert requested == ["Launched by admin"]


def test_launch_agent_shows_why_not(as_admin):
    node = make_node("agent1")
    Node.objects.filter(pk=node.pk).update(connection=Node.Connection.CONNECTED)
    response = as_admin.post(url("launch", node), follow=True)
    assert "The Agent is connected, disconnect it before to try to connect it again." in text_of(
        response
    )
    Node.objects.filter(pk=node.pk).update(connection=Node.Connection.CONNECTING)
    response = as_admin.post(url("launch", node), follow=True)
    assert "This node is being launched. See log for more details" in text_of(response)


def test_cancel_launch_while_connecting(as_admin, as_viewer):
    node = make_node("agent1")
    Node.objects.filter(pk=node.pk).update(connection=Node.Connection.CONNECTING, launch_number=1)
    page = text_of(as_admin.get(url("detail", node)))
    assert "Cancel launch" in page and "This node is being launched." in page
    assert as_viewer.post(url("cancel-launch", node)).status_code == 403
    as_admin.post(url("cancel-launch", node))
    node.refresh_from_db()
    assert node.launch_cancel_requested is True


def test_disconnect(as_admin, as_viewer):
    node = make_node("agent1")
    Node.objects.filter(pk=node.pk).update(connection=Node.Connection.CONNECTED)
    page = text_of(as_admin.get(url("disconnect", node)))
    assert "Disconnect the computer ‘agent1’?" in page
    assert as_viewer.post(url("do-disconnect", node)).status_code == 403
    response = as_admin.post(url("do-disconnect", node), {"offlineMessage": "maintenance"})
    assert response.status_code == 302
    node.refresh_from_db()
    assert node.connection == Node.Connection.DISCONNECTED
    assert node.connection_cause == "Disconnected by admin : maintenance"


def test_mark_offline_update_reason_and_bring_online(as_admin, as_viewer):
    node = make_node("agent1")
    page = text_of(as_admin.get(url("mark-offline", node)))
    assert "Taking agent1 Offline" in page
    assert (
        "You can optionally explain why you are taking this node offline, so that others can see why:"
        in page
    )
    assert as_viewer.post(url("toggle-offline", node), {"offlineMessage": "x"}).status_code == 403
    as_admin.post(url("toggle-offline", node), {"offlineMessage": "new disk"})
    node.refresh_from_db()
    assert node.offline == Node.Offline.USER and node.offline_message == "new disk"
    assert "Set agent1 Offline Reason" in text_of(as_admin.get(url("set-offline-cause", node)))
    as_admin.post(url("change-offline-cause", node), {"offlineMessage": "new disk, 2nd try"})
    node.refresh_from_db()
    assert node.offline_message == "new disk, 2nd try"
    assert as_viewer.post(url("toggle-offline", node)).status_code == 403
    as_admin.post(url("toggle-offline", node))
    node.refresh_from_db()
    assert node.offline == Node.Offline.NONE


def test_delete_agent(as_admin, as_viewer):
    node = make_node("agent1")
    page = text_of(as_admin.get(url("delete", node)))
    assert "Delete the agent ‘agent1’?" in page
    html = as_admin.get(url("detail", node)).content.decode()
    assert 'data-confirm="Delete the agent ‘agent1’?"' in html
    assert as_viewer.post(url("do-delete", node)).status_code == 403
    response = as_admin.post(url("do-delete", node))
    assert response.status_code == 302 and response["Location"] == "/computer/"
    assert not Node.objects.filter(name="agent1").exists()


def test_system_information(as_admin, as_viewer):
    node = make_node("agent1")
    page = text_of(as_admin.get(url("system-info", node)))
    assert "System Information is unavailable when agent is offline." in page
    Node.objects.filter(pk=node.pk).update(
        connection=Node.Connection.CONNECTED,
        agent_info={
            "agent_version": "1.0.0",
            "os": {"name": "Linux", "release": "6.1.0", "version": "#1 SMP"},
            "architecture": {"label": "Linux (amd64)", "machine": "x86_64"},
            "python": {
                "version": "3.11.2",
                "implementation": "cpython",
                "executable": "/usr/bin/python3",
            },
            "cpus": 8,
            "memory": {
                "total_physical": 8 << 30,
                "available_physical": 4 << 30,
                "total_swap": 0,
                "available_swap": 0,
            },
            "environment": {"HOME": "/home/agent", "LANG": "C.UTF-8"},
        },
    )
    page = text_of(as_admin.get(url("system-info", node)))
    assert "Linux agent, version 1.0.0" in page
    for fact in (
        "Linux 6.1.0",
        "Linux (amd64) (x86_64)",
        "cpython 3.11.2",
        "CPUs",
        "8",
        "4.00 GiB free of 8.00 GiB",
        "Environment Variables",
        "HOME",
        "/home/agent",
    ):
        assert fact in page, fact
    assert as_viewer.get(url("system-info", node)).status_code == 403


def test_build_history_without_builds(as_viewer):
    node = make_node("agent1")
    page = text_of(as_viewer.get(url("builds", node)))
    assert "Build History of agent1" in page and "No builds" in page


def test_trust_ssh_host_key(as_admin, as_viewer, admin):
    node = make_node("agent1")
    assert "Trust SSH Host Key" not in text_of(as_admin.get(url("detail", node)))
    NodeHostKey.objects.create(
        node=node,
        algorithm="ssh-ed25519",
        key_base64="AAAA",
        fingerprint="SHA256:new",
        trusted=False,
    )
    assert "Trust SSH Host Key" in text_of(as_admin.get(url("detail", node)))
    page = text_of(as_admin.get(url("trust-host-key", node)))
    assert (
        "Do you want to trust the SSH Host Key with fingerprint SHA256:new for future "
        "connections to this host?"
    ) in page
    assert as_viewer.post(url("trust-host-key", node), {"yes": "1"}).status_code == 403
    as_admin.post(url("trust-host-key", node), {"yes": "1"})
    key = NodeHostKey.objects.get(node=node)
    assert key.trusted and key.trusted_by == admin

    NodeHostKey.objects.create(
        node=node,
        algorithm="ssh-ed25519",
        key_base64="BBBB",
        fingerprint="SHA256:newer",
        trusted=False,
    )
    page = text_of(as_admin.get(url("trust-host-key", node)))
    assert (
        "Do you want to replace the SSH Host Key with fingerprint SHA256:new with the SSH "
        "Host Key with fingerprint SHA256:newer for all future connections to this host?"
    ) in page
    as_admin.post(url("trust-host-key", node), {"no": "1"})
    assert list(NodeHostKey.objects.filter(node=node).values_list("fingerprint", flat=True)) == [
        "SHA256:new"
    ]


# --- the agent log ----------------------------------------------------------------------------------


def write_launch_log(node: Node, number: int, text: str) -> None:
    Node.objects.filter(pk=node.pk).update(launch_number=number)
    node.refresh_from_db()
    log = launchlog.LaunchLog(node, number)
    log.raw(text)
    log.close()


def test_log_page_selects_launches_and_downloads(as_admin, as_viewer):
    node = make_node("agent1")
    page = text_of(as_admin.get(url("log", node)))
    assert "This node has not been launched yet" in page
    write_launch_log(node, 1, "first launch line")
    write_launch_log(node, 2, "second launch line")
    html = as_admin.get(url("log", node)).content.decode()
    assert 'data-launch="2"' in html and "#2 (latest)" in html and ">#1<" in html
    assert f'data-ws-base="/ws/computer/{node.pk}/log/"' in html
    assert 'data-launch="1"' in as_admin.get(url("log", node) + "?launch=1").content.decode()
    response = as_admin.get(url("log-text", node) + "?launch=1")
    assert response["Content-Type"].startswith("text/plain")
    assert b"".join(response.streaming_content) == b"first launch line\n"
    assert as_viewer.get(url("log", node)).status_code == 403
    assert as_viewer.get(url("log-text", node)).status_code == 403


def test_log_page_starts_at_the_tail_of_a_long_log(as_admin):
    node = make_node("agent1")
    line = "x" * 99 + "\n"
    write_launch_log(node, 1, line * 5000)  # 500 kB
    html = as_admin.get(url("log", node)).content.decode()
    offset = int(re.search(r'data-offset="(\d+)"', html).group(1))
    stream = logs.open_stream(f"node-{node.pk}-log-1")
    assert 0 < offset < stream.size and offset % 100 == 0  # at a line start
    assert stream.size - offset <= 256 * 1024


# --- the agent program ------------------------------------------------------------------------------


def test_agent_pyz_download(as_admin, client):
    response = as_admin.get("/jnlpJars/agent.pyz")
    assert response.status_code == 200
    assert response.content == agent_package.agent_bytes()
    assert response["X-Agent-Hash"] == agent_package.agent_hash()
    assert client.get("/jnlpJars/agent.pyz").status_code == 302  # sign in first


def test_manage_page_links_to_nodes(as_admin):
    html = as_admin.get("/manage/").content.decode()
    assert 'href="/computer/"' in html


# --- the node page and the builds: executors, projects tied, Build History -----------------------


def make_job(name: str, label_expression: str = "", **fields) -> Job:
    return Job.objects.create(name=name, label_expression=label_expression, **fields)


def make_build(job: Job, node: Node | None, number: int, **fields) -> Build:
    defaults = {
        "status": Build.Status.FINISHED,
        "result": Build.Result.SUCCESS,
        "started_at": timezone.now() - timedelta(minutes=5),
        "duration_ms": 4_200,
        "node_name": node.url_name if node is not None else "",
    }
    defaults.update(fields)
    return Build.objects.create(job=job, node=node, number=number, **defaults)


def section_of(response, section_id: str) -> str:
    html = response.content.decode()
    match = re.search(rf'<section class="card"[^>]*id="{section_id}">.*?</section>', html, re.S)
    assert match, f"no section #{section_id}"
    return match.group(0)


def tied_names(response) -> list[str]:
    return re.findall(r'<tr data-job="([^"]+)"', section_of(response, "tied-projects"))


def test_node_page_shows_the_build_executor_status_widget_of_this_node(as_admin, as_viewer):
    node = make_node("agent1", num_executors=2)
    make_node("agent2")
    Node.objects.filter(pk=node.pk).update(connection=Node.Connection.CONNECTED)
    job = make_job("compile")
    running = make_build(
        job,
        node,
        7,
        status=Build.Status.RUNNING,
        result="",
        started_at=timezone.now() - timedelta(seconds=30),
        duration_ms=None,
    )
    Executor.objects.create(node=node, number=1, build=running)
    Executor.objects.create(node=node, number=2)
    response = as_admin.get(url("detail", node))
    html = response.content.decode()
    widget = re.search(
        rf'<section class="widget" id="executors-{node.pk}".*?</section>', html, re.S
    ).group(0)
    assert 'data-refresh-url="/widgets/executors?node=agent1"' in widget
    assert "Build Executor Status" in widget and "agent2" not in widget
    page = text_of(response)
    assert "agent1 1/2" in page and "compile #7" in page and "2 Idle" in page
    assert 'href="/job/compile/7/console"' in widget
    assert 'aria-label="Abort compile #7"' in widget
    assert "Abort compile #7" not in as_viewer.get(url("detail", node)).content.decode()
    # The widget sits in a preserved placeholder: re-fetching the state panel keeps the live
    # widget in the page, so the htmx answer carries the placeholder only.
    assert re.search(
        rf'<div id="node-executors" class="node-executors" hx-preserve>.*?id="executors-{node.pk}"',
        html,
        re.S,
    )
    partial = as_admin.get(url("state", node)).content.decode()
    assert '<div id="node-executors" class="node-executors" hx-preserve></div>' in partial
    assert "executors-" not in partial


def test_projects_tied_to_an_agent_are_the_jobs_its_labels_satisfy(as_viewer):
    node = make_node("agent1", label_string="linux docker")
    make_job("docker-build", "linux && docker")
    make_job("own-name", "agent1")
    make_job("linux-or-windows", " linux || windows ")
    make_job("windows-only", "windows")
    make_job("not-docker", "linux && !docker")
    make_job("broken", "linux &&")  # never runs anywhere
    make_job("anywhere")  # no label expression: not tied to an agent
    make_job("on-controller", "built-in")
    response = as_viewer.get(url("detail", node))
    assert tied_names(response) == ["docker-build", "linux-or-windows", "own-name"]
    section = section_of(response, "tied-projects")
    assert 'href="/job/docker-build/"' in section
    assert "<code>linux &amp;&amp; docker</code>" in section
    assert 'title="Not built"' in section


def test_projects_tied_show_the_status_of_their_last_build(as_viewer):
    node = make_node("agent1", label_string="linux")
    failing = make_job("failing", "linux")
    make_build(failing, node, 1, result=Build.Result.FAILURE)
    section = section_of(as_viewer.get(url("detail", node)), "tied-projects")
    assert "ball-red" in section and 'title="Failed"' in section


def test_unlabelled_jobs_are_tied_to_the_builtin_node_unless_it_is_exclusive(as_viewer):
    builtin = services.ensure_builtin_node()
    make_job("anywhere")
    make_job("on-controller", "built-in")
    make_job("on-linux", "linux")
    response = as_viewer.get(url("detail", builtin))
    assert "Projects tied to Built-In Node" in text_of(response)
    assert tied_names(response) == ["anywhere", "on-controller"]
    assert "No label expression" in section_of(response, "tied-projects")
    Node.objects.filter(pk=builtin.pk).update(mode=Node.Mode.EXCLUSIVE)
    assert tied_names(as_viewer.get(url("detail", builtin))) == ["on-controller"]


def test_an_exclusive_agent_is_tied_to_the_jobs_whose_expression_matches(as_viewer):
    node = make_node("gpu-box", label_string="gpu", mode=Node.Mode.EXCLUSIVE)
    make_job("anywhere")
    make_job("train", "gpu")
    make_job("cpu-only", "!gpu")
    assert tied_names(as_viewer.get(url("detail", node))) == ["train"]


def test_no_projects_tied_says_none(as_viewer):
    node = make_node("agent1", label_string="linux")
    make_job("elsewhere", "windows")
    section = section_of(as_viewer.get(url("detail", node)), "tied-projects")
    assert '<p class="muted">None</p>' in section and "<table" not in section


def test_projects_tied_parse_each_expression_once_in_a_fixed_number_of_queries(
    as_viewer, monkeypatch
):
    from builds import labels as build_labels

    node = make_node("agent1", label_string="linux")
    make_job("job-0", "linux")
    as_viewer.get(url("detail", node))  # warm the session
    with CaptureQueriesContext(connection) as few:
        as_viewer.get(url("detail", node))
    for i in range(1, 40):
        make_job(f"job-{i}", "linux" if i % 2 else "windows")
    parsed = []
    real_parse = build_labels.parse_label_expression
    monkeypatch.setattr(
        build_labels,
        "parse_label_expression",
        lambda text: parsed.append(text) or real_parse(text),
    )
    with CaptureQueriesContext(connection) as many:
        response = as_viewer.get(url("detail", node))
    assert len(tied_names(response)) == 21  # job-0 and the 20 odd ones
    assert sorted(parsed) == ["linux", "windows"]
    assert len(many.captured_queries) == len(few.captured_queries)


def test_build_history_lists_the_builds_of_this_node_newest_first(as_viewer):
    node = make_node("agent1")
    other = make_node("agent2")
    compile_job = make_job("compile")
    tests_job = make_job("tests")
    make_build(compile_job, node, 1, duration_ms=65_000)
    make_build(tests_job, node, 4, result=Build.Result.FAILURE, duration_ms=1_500)
    make_build(compile_job, other, 2)  # ran elsewhere
    make_build(
        compile_job,
        node,
        3,
        status=Build.Status.RUNNING,
        result="",
        started_at=timezone.now() - timedelta(seconds=75),
        duration_ms=None,
    )
    make_build(tests_job, node, 5, status=Build.Status.PENDING, result="", started_at=None)
    response = as_viewer.get(url("builds", node))
    html = response.content.decode()
    assert re.findall(r'<tr data-build="([^"]+)"', html) == [
        "tests #5",
        "compile #3",
        "tests #4",
        "compile #1",
    ]
    rows = {
        m.group(1): text_of_html(m.group(0))
        for m in re.finditer(r'<tr data-build="([^"]+)".*?</tr>', html, re.S)
    }
    assert rows["compile #1"] == "compile #1 Success 5 min 0 sec ago 1 min 5 sec"
    assert rows["tests #4"] == "tests #4 Failed 5 min 0 sec ago 1.5 sec"
    assert re.fullmatch(
        r"compile #3 In progress 1 min 1[56] sec ago Running for 1 min 1[56] sec",
        rows["compile #3"],
    )
    assert rows["tests #5"] == "tests #5 Pending Not started —"
    assert 'href="/job/compile/"' in html and 'href="/job/compile/3/"' in html
    assert 'class="ball ball-red"' in html and "ball-anime" in html
    assert "No builds" not in html


def test_build_history_keeps_the_builds_of_a_deleted_node_of_the_same_name(as_viewer):
    job = make_job("compile")
    make_build(job, None, 1, node_name="agent1")  # its node was deleted since
    make_build(job, None, 2, node_name="agent9")
    node = make_node("agent1")
    html = as_viewer.get(url("builds", node)).content.decode()
    assert re.findall(r'<tr data-build="([^"]+)"', html) == ["compile #1"]


def test_build_history_is_paged(as_viewer):
    node = make_node("agent1")
    job = make_job("compile")
    Build.objects.bulk_create(
        Build(
            job=job,
            node=node,
            node_name="agent1",
            number=n,
            status=Build.Status.FINISHED,
            result=Build.Result.SUCCESS,
            started_at=timezone.now(),
            duration_ms=1000,
        )
        for n in range(1, 53)
    )
    first = as_viewer.get(url("builds", node)).content.decode()
    numbers = re.findall(r'<tr data-build="compile #(\d+)"', first)
    assert len(numbers) == 50 and numbers[0] == "52" and numbers[-1] == "3"
    assert "Page 1 of 2" in first and 'href="?page=2">Older builds' in first
    second = as_viewer.get(url("builds", node) + "?page=2").content.decode()
    assert re.findall(r'<tr data-build="compile #(\d+)"', second) == ["2", "1"]
    assert 'href="?page=1">Newer builds' in second


@pytest.mark.parametrize("count", [1, 40])
def test_build_history_query_count_does_not_grow_with_builds(
    as_viewer, count, django_assert_num_queries
):
    node = make_node("agent1")
    MonitorSettings.load()
    jobs = [make_job(f"job-{i}") for i in range(count)]
    for i, job in enumerate(jobs):
        make_build(job, node, i + 1)
    as_viewer.get(url("builds", node))  # warm the session
    # session, user, its permissions and its groups', node, count, monitor settings, pending
    # host key, the page of builds (with their jobs)
    with django_assert_num_queries(9):
        response = as_viewer.get(url("builds", node))
    assert response.content.decode().count("<tr data-build=") == count


def test_users_who_may_not_see_jobs_get_no_projects_and_no_build_history(client):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user("nodes-only", password="x")
    user.user_permissions.add(Permission.objects.get(codename="view_node"))
    client.force_login(user)
    node = make_node("agent1")
    make_job("compile", "linux")
    response = client.get(url("detail", node))
    assert "Agent agent1" in text_of(response)
    assert "Projects tied to" not in text_of(response)
    assert tasks_of(response) == ["Back to List", "Status"]
    assert client.get(url("builds", node)).status_code == 403


def test_new_item_task_is_for_users_who_may_create_jobs(as_admin, as_viewer):
    admin_tasks = as_admin.get("/computer/").content.decode()
    assert re.search(
        r'<a class="task-link" href="/newJob">.*?<span>New Item</span>', admin_tasks, re.S
    )
    assert "not available in this version" not in admin_tasks
    viewer_page = as_viewer.get("/computer/")
    assert "New Item" not in tasks_of(viewer_page)
