"""The node forms on their own: Jenkins' defaults and messages, and the launcher_config they
produce (the keys nodes/launchers/ssh.py reads)."""

from __future__ import annotations

import base64

import pytest
from django.http import QueryDict

from nodes.forms import (
    BUILTIN_INVALID_EXECUTORS,
    PYTHON_PATH_WARNING,
    RELATIVE_PATH_WARNING,
    BuiltinNodeForm,
    CommandLauncherForm,
    MonitorSettingsForm,
    NewNodeForm,
    NodeConfigForm,
    SSHLauncherForm,
)
from nodes.launchers.ssh import DEFAULTS
from nodes.models import MonitorSettings, Node

pytestmark = pytest.mark.django_db


def ssh_data(**overrides) -> dict:
    data = {
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
    }
    data.update(overrides)
    return data


def query(data: dict) -> QueryDict:
    q = QueryDict(mutable=True)
    for key, value in data.items():
        if isinstance(value, list):
            q.setlist(key, value)
        else:
            q[key] = value
    return q


def config_data(**overrides) -> QueryDict:
    data = {
        "name": "agent1",
        "description": "",
        "num_executors": "1",
        "remote_fs": "/srv/agent",
        "label_string": "",
        "mode": "NORMAL",
        "launcher": "ssh",
        "retention": "always",
        "in_demand_delay": "0",
        "idle_delay": "1",
        "command-command": "",
        **ssh_data(),
    }
    data.update(overrides)
    return query(data)


def test_ssh_form_initial_values_are_the_plugin_defaults():
    form = SSHLauncherForm(prefix="ssh", initial=SSHLauncherForm.initial_from({}))
    assert form["port"].value() == 22
    assert form["launch_timeout"].value() == 60
    assert form["max_retries"].value() == 10
    assert form["retry_wait"].value() == 15
    assert form["tcp_nodelay"].value() is True
    assert form["host_key_strategy"].value() == DEFAULTS["host_key_strategy"]
    labels = [form[name].label for name in SSHLauncherForm.ADVANCED]
    assert labels == [
        "Port",
        "Python Path",
        "Prefix Start Agent Command",
        "Suffix Start Agent Command",
        "Connection Timeout in Seconds",
        "Maximum Number of Retries",
        "Seconds To Wait Between Retries",
        "Use TCP_NODELAY flag on the SSH connection",
    ]
    strategies = [label for _value, label in form.fields["host_key_strategy"].choices]
    assert strategies == [
        "Known hosts file Verification Strategy",
        "Manually provided key Verification Strategy",
        "Manually trusted key Verification Strategy",
        "Non verifying Verification Strategy",
    ]


def test_ssh_form_config_has_the_launcher_keys():
    form = SSHLauncherForm(ssh_data(**{"ssh-port": "2222", "ssh-tcp_nodelay": ""}), prefix="ssh")
    assert form.is_valid(), form.errors
    config = form.config()
    assert set(config) == set(DEFAULTS) | {"host", "credentials_id"}
    assert config["port"] == 2222 and config["tcp_nodelay"] is False
    assert config["host"] == "agent.example.com"


@pytest.mark.parametrize(
    ("port", "message"),
    [
        ("", "The port must be specified"),
        ("x", "Cannot parse the port"),
        ("-1", "The port value must be greater than 0"),
        ("70000", "The port value must be less than 65536"),
    ],
)
def test_port_messages(port, message):
    form = SSHLauncherForm(ssh_data(**{"ssh-port": port}), prefix="ssh")
    assert not form.is_valid()
    assert form.errors["port"] == [message]


def test_manually_provided_key_is_validated_and_normalised():
    blob = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + b"k" * 32).decode()
    form = SSHLauncherForm(
        ssh_data(
            **{
                "ssh-host_key_strategy": "manually_provided",
                "ssh-provided_key": f"  ssh-ed25519   {blob}  root@host\n",
            }
        ),
        prefix="ssh",
    )
    assert form.is_valid(), form.errors
    assert form.config()["provided_key"] == f"ssh-ed25519 {blob}"
    bad = SSHLauncherForm(
        ssh_data(
            **{"ssh-host_key_strategy": "manually_provided", "ssh-provided_key": "ssh-ed25519 AAAA"}
        ),
        prefix="ssh",
    )
    assert not bad.is_valid()
    assert bad.errors["provided_key"] == ["Key value does not parse into a valid ssh-ed25519 key"]


def test_provided_key_and_manual_trust_only_kept_for_their_strategy():
    form = SSHLauncherForm(
        ssh_data(**{"ssh-host_key_strategy": "non_verifying", "ssh-require_manual_trust": "on"}),
        prefix="ssh",
    )
    assert form.is_valid()
    assert form.config()["require_manual_trust"] is False
    form = SSHLauncherForm(ssh_data(**{"ssh-require_manual_trust": "on"}), prefix="ssh")
    assert form.is_valid()
    assert form.config()["require_manual_trust"] is True


def test_python_path_with_spaces_is_a_warning_not_an_error():
    form = SSHLauncherForm(ssh_data(**{"ssh-python_path": "/opt/py 3/bin/python3"}), prefix="ssh")
    assert form.is_valid()
    assert form.warnings == {"python_path": [PYTHON_PATH_WARNING]}
    quoted = SSHLauncherForm(
        ssh_data(**{"ssh-python_path": '"/opt/py 3/bin/python3"'}), prefix="ssh"
    )
    assert quoted.is_valid() and quoted.warnings == {}


def test_command_form():
    form = CommandLauncherForm(
        {"command-command": "ssh 'build host' python3 agent.pyz"}, prefix="command"
    )
    assert form.is_valid() and form.config() == {"command": "ssh 'build host' python3 agent.pyz"}
    form = CommandLauncherForm({"command-command": "ssh 'unclosed"}, prefix="command")
    assert not form.is_valid()
    assert form.errors["command"][0].startswith("The launch command cannot be parsed")


def test_node_config_form_saves_only_the_chosen_launcher():
    form = NodeConfigForm(
        config_data(launcher="command", **{"command-command": "python3 /agent.pyz", "ssh-host": ""})
    )
    assert form.is_valid(), form.errors
    node = form.save()
    assert node.launcher == "command" and node.launcher_config == {"command": "python3 /agent.pyz"}


def test_node_config_form_errors_of_the_launcher_block_saving():
    form = NodeConfigForm(config_data(**{"ssh-host": ""}))
    assert not form.is_valid()
    assert form.launcher_forms["ssh"].errors["host"] == ["The Host must be specified"]
    assert "The launch method's settings have errors: see below." in form.non_field_errors()


def test_node_config_form_relative_remote_root_warns():
    form = NodeConfigForm(config_data(remote_fs="agent"))
    assert form.is_valid()
    assert form.all_warnings() == [RELATIVE_PATH_WARNING]


def test_environment_variables_rows():
    form = NodeConfigForm(config_data(env_name=["A", "", "B"], env_value=["1", "", "two words"]))
    assert form.is_valid(), form.errors
    assert form.save().env_vars == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "two words"},
    ]
    dup = NodeConfigForm(config_data(env_name=["A", "A"], env_value=["1", "2"]))
    assert not dup.is_valid()
    assert dup.env_errors == ["The environment variable ‘A’ is defined twice"]
    unnamed = NodeConfigForm(config_data(env_name=[""], env_value=["orphan"]))
    assert not unnamed.is_valid() and unnamed.env_errors == ["Name is mandatory"]


def test_disk_thresholds_accept_sizes_and_percentages():
    form = NodeConfigForm(
        config_data(freeDiskSpaceThreshold="1.5GB", freeTempSpaceWarningThreshold="5%")
    )
    assert form.is_valid(), form.errors
    assert form.save().disk_thresholds == {
        "freeDiskSpaceThreshold": "1.5GB",
        "freeTempSpaceWarningThreshold": "5%",
    }
    bad = NodeConfigForm(config_data(freeTempSpaceThreshold="150%"))
    assert not bad.is_valid()
    assert bad.errors["freeTempSpaceThreshold"] == [
        "“150%” is not a percentage between 0% and 100%"
    ]


def test_rename_keeps_own_name_and_refuses_anothers():
    node = Node.objects.create(name="agent1", remote_fs="/srv")
    Node.objects.create(name="agent2", remote_fs="/srv")
    assert NodeConfigForm(config_data(), instance=node).is_valid()
    taken = NodeConfigForm(config_data(name="agent2"), instance=node)
    assert not taken.is_valid()
    assert taken.errors["name"] == ["Agent called ‘agent2’ already exists"]


def test_builtin_form_allows_zero_executors_only_non_negative():
    builtin = Node.objects.create(name="(built-in)", is_builtin=True, launcher="builtin")
    form = BuiltinNodeForm(
        {"num_executors": "0", "label_string": " a  b ", "mode": "NORMAL"}, instance=builtin
    )
    assert form.is_valid()
    assert form.save().label_string == "a b"
    for bad in ("-1", "two", ""):
        form = BuiltinNodeForm(
            {"num_executors": bad, "label_string": "", "mode": "NORMAL"}, instance=builtin
        )
        assert not form.is_valid()
        assert form.errors["num_executors"] == [BUILTIN_INVALID_EXECUTORS], bad


def test_new_node_form():
    assert NewNodeForm({"name": "ok", "mode": "permanent"}).is_valid()
    form = NewNodeForm({"name": "(built-in)", "mode": "permanent"})
    assert not form.is_valid() and form.errors["name"] == ["“(built-in)” is not an allowed name"]
    form = NewNodeForm({"name": "tab\there", "mode": "permanent"})
    assert not form.is_valid() and form.errors["name"] == ["No control code is allowed: 9"]


def test_monitor_settings_form():
    settings_row = MonitorSettings.load()
    data = {
        "interval_seconds": "5",
        "free_disk_threshold": "2GiB",
        "free_disk_warning": "1GiB",
        "free_temp_threshold": "1GiB",
        "free_temp_warning": "2GiB",
    }
    form = MonitorSettingsForm(data, instance=settings_row)
    assert not form.is_valid()
    assert form.errors["interval_seconds"] == ["The interval must be at least 10 seconds"]
    assert form.errors["free_disk_warning"] == [
        "The warning threshold must not be below the threshold"
    ]
