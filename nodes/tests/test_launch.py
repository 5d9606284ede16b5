"""Launching agents for real: a real sshd on loopback, a real Celery worker, the real agent.

Each test goes through nodes.services.request_launch → the Celery task on the in-process
worker → the launcher → the agent's hello, and checks what an admin would: the node's state,
its cause in words, and the lines of its agent log.
"""

from __future__ import annotations

import socket
import sys
import time

import pytest

from console import logs
from console.models import LogStream
from credentials import services as credentials
from credentials.forms import CredentialInput
from nodes import agent_package, hostkeys, services
from nodes.connections import pool
from nodes.models import Node, NodeHostKey
from nodes.tests.sshd import HostKey

pytestmark = pytest.mark.django_db(transaction=True)

Connection = Node.Connection


def ssh_key_credential(key, credential_id="agent-key", username="steward-agent", passphrase=""):
    return credentials.create_credential(
        CredentialInput(
            kind="sshUserPrivateKey",
            scope="SYSTEM",
            credential_id=credential_id,
            description="agent login",
            username=username,
            secrets={"private_key": key.private_text, "passphrase": passphrase},
        )
    )


def password_credential(username, password, credential_id="agent-password"):
    return credentials.create_credential(
        CredentialInput(
            kind="usernamePassword",
            scope="SYSTEM",
            credential_id=credential_id,
            description="",
            username=username,
            secrets={"password": password},
        )
    )


def ssh_node(server, remote_root, name="n1", credential_id="agent-key", **config) -> Node:
    launcher_config = {
        "host": "127.0.0.1",
        "port": server.port,
        "credentials_id": credential_id,
        "host_key_strategy": "non_verifying",
        "max_retries": 0,
        "retry_wait": 1,
        "launch_timeout": 10,
    }
    launcher_config.update(config)
    return Node.objects.create(
        name=name,
        remote_fs=str(remote_root),
        num_executors=2,
        launcher="ssh",
        launcher_config=launcher_config,
        retention=Node.Retention.DEMAND,
    )


def wait_for(node: Node, states, timeout: float = 20.0) -> Node:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        node.refresh_from_db()
        if node.connection in states:
            return node
        time.sleep(0.05)
    raise AssertionError(
        f"node stayed {node.connection} ({node.connection_cause}):\n{log_text(node)}"
    )


def log_text(node: Node, launch_number: int | None = None) -> str:
    key = f"node-{node.pk}-log-{launch_number or node.launch_number}"
    stream = LogStream.objects.filter(key=key).first()
    return b"".join(logs.iter_bytes(stream.pk)).decode() if stream else ""


def launch(node: Node, states=(Connection.CONNECTED, Connection.FAILED)) -> Node:
    services.request_launch(node)
    return wait_for(node, states)


@pytest.fixture(autouse=True)
def _close_connections():
    yield
    pool.close_all()


def test_key_authentication_brings_the_node_online(celery_worker, sshd, client_key, remote_root):
    ssh_key_credential(client_key)
    node = launch(ssh_node(sshd, remote_root))
    text = log_text(node)
    assert node.connection == Connection.CONNECTED, text
    assert node.connection_cause == "Agent successfully connected and online"
    lines = [
        "SSHLauncher{host='127.0.0.1'",
        f"[SSH] Opening SSH connection to 127.0.0.1:{sshd.port}.",
        "[SSH] WARNING: SSH Host Keys are not being verified.",
        "[SSH] Authentication successful.",
        "[SSH] Checking Python version of python3",
        f"[SSH] Remote file system root {remote_root} does not exist. Will try to create it...",
        "[SSH] Copying latest agent.pyz...",
        "[SSH] Copied ",
        "[SSH] Starting agent process: ",
        "Launcher: SSHLauncher",
        "This is a Unix agent",
        "Agent successfully connected and online",
    ]
    position = 0
    for line in lines:
        found = text.find(line, position)
        assert found >= 0, f"missing or out of order: {line!r}\n{text}"
        position = found
    assert node.agent_info["remote_root"] == str(remote_root)
    assert node.agent_info["architecture"]["label"].startswith("Linux (")
    assert remote_root.is_dir()
    assert (remote_root / "agent.pyz").read_bytes() == agent_package.agent_bytes()
    usage = credentials.Credential.objects.get(credential_id="agent-key").usages.get()
    assert usage.consumer_type == "node" and usage.name == "n1"
    # The cached connection runs the agent.
    code, out, _ = pool.get(node).run_agent(["hash"])
    assert code == 0 and out.decode().strip() == agent_package.agent_hash()


def test_second_launch_skips_the_copy(celery_worker, sshd, client_key, remote_root):
    ssh_key_credential(client_key)
    node = launch(ssh_node(sshd, remote_root))
    assert "[SSH] Copied " in log_text(node)
    services.disconnect(node)
    node = launch(node)
    text = log_text(node)
    assert node.connection == Connection.CONNECTED, text
    assert "Verified agent. No update is necessary." in text
    assert "[SSH] Copied " not in text


def test_password_authentication(celery_worker, sshd, remote_root):
    password_credential(sshd.username, sshd.password)
    node = launch(ssh_node(sshd, remote_root, credential_id="agent-password"))
    assert node.connection == Connection.CONNECTED, log_text(node)


def test_wrong_password_fails_with_the_cause(celery_worker, sshd, remote_root):
    password_credential(sshd.username, "not-the-password")
    node = launch(ssh_node(sshd, remote_root, credential_id="agent-password"))
    text = log_text(node)
    assert node.connection == Connection.FAILED
    assert node.connection_cause == "Authentication failed."
    assert "[SSH] Authentication failed." in text
    assert f"ERROR: Failed to authenticate as {sshd.username}. Wrong password." in text
    assert "not-the-password" not in text


def test_encrypted_key_with_passphrase(celery_worker, sshd, encrypted_client_key, remote_root):
    ssh_key_credential(encrypted_client_key, passphrase=encrypted_client_key.passphrase)
    node = launch(ssh_node(sshd, remote_root))
    assert node.connection == Connection.CONNECTED, log_text(node)


def test_missing_credential_is_named(celery_worker, sshd, remote_root):
    node = launch(ssh_node(sshd, remote_root, credential_id="nope"))
    assert node.connection == Connection.FAILED
    assert node.connection_cause == "Cannot find SSH User credentials with id: nope"


def test_junk_from_login_scripts_stops_the_launch(
    celery_worker, sshd_factory, client_key, remote_root
):
    server = sshd_factory(junk="Welcome to the build farm!")
    ssh_key_credential(client_key)
    node = launch(ssh_node(server, remote_root, max_retries=3))
    text = log_text(node)
    assert node.connection == Connection.FAILED
    assert "SSH connection reports a garbage before a command execution." in text
    assert "Welcome to the build farm!" in text
    assert "retrying" not in text  # junk does not go away by itself


def test_no_python_on_the_agent(celery_worker, sshd_factory, client_key, remote_root):
    server = sshd_factory(no_python=True)
    ssh_key_credential(client_key)
    node = launch(ssh_node(server, remote_root))
    assert node.connection == Connection.FAILED
    assert "python3 was not found or does not run on the agent" in node.connection_cause
    assert "Python 3.8 or later" in node.connection_cause


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_port_retries_then_fails_with_back_off(
    celery_worker, db, client_key, remote_root
):
    ssh_key_credential(client_key)

    class Closed:
        port = _closed_port()

    node = ssh_node(Closed, remote_root, max_retries=2, retry_wait=1)
    Node.objects.filter(pk=node.pk).update(retention=Node.Retention.ALWAYS)
    started = time.monotonic()
    services.request_launch(node)
    node = wait_for(node, (Connection.FAILED,), timeout=30)
    elapsed = time.monotonic() - started
    text = log_text(node)
    assert "retrying in 1 seconds. There are 1 more retries left." in text
    assert "retrying in 1 seconds. There are 0 more retries left." in text
    assert text.count(f"[SSH] Opening SSH connection to 127.0.0.1:{Closed.port}.") == 3
    assert elapsed >= 2.0  # two waits of one second
    assert f"Cannot connect to 127.0.0.1:{Closed.port}" in node.connection_cause
    # "Keep online": a next attempt is planned after a back-off, never silently given up.
    assert node.next_launch_at is not None
    assert node.consecutive_failures == 1
    assert services.backoff_seconds(1) < services.backoff_seconds(2) < services.backoff_seconds(3)
    assert services.backoff_seconds(50) == services.BACKOFF_CAP_SECONDS


def test_cancel_while_waiting_to_retry(celery_worker, db, client_key, remote_root):
    ssh_key_credential(client_key)

    class Closed:
        port = _closed_port()

    node = ssh_node(Closed, remote_root, max_retries=5, retry_wait=30)
    services.request_launch(node)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        node.refresh_from_db()
        if node.next_launch_at is not None:
            break
        time.sleep(0.05)
    assert node.next_launch_at is not None
    assert services.cancel_launch(node)
    node.refresh_from_db()
    assert node.connection == Connection.DISCONNECTED
    assert node.connection_cause == "Launching agent process aborted."


def test_launching_twice_at_once_is_impossible(celery_worker, sshd, client_key, remote_root):
    ssh_key_credential(client_key)
    node = ssh_node(sshd, remote_root)
    services.request_launch(node)
    with pytest.raises(services.NodeError, match="being launched|is connected"):
        services.request_launch(node)
    node = wait_for(node, (Connection.CONNECTED,))
    with pytest.raises(services.NodeError, match="The Agent is connected"):
        services.request_launch(node)


def test_disconnect_closes_the_connection(celery_worker, sshd, client_key, remote_root, admin):
    ssh_key_credential(client_key)
    node = launch(ssh_node(sshd, remote_root))
    connection = pool.get(node)
    assert connection.is_alive()
    services.disconnect(node, admin, "maintenance")
    node.refresh_from_db()
    assert node.connection == Connection.DISCONNECTED
    assert node.connection_cause == "Disconnected by admin : maintenance"
    assert not connection.is_alive()
    assert pool.peek(node.pk) is None


# --- host key verification strategies -----------------------------------------------------


def test_manually_trusted_key_is_trusted_on_first_use_and_a_changed_key_refused(
    celery_worker, sshd_factory, client_key, remote_root, tmp_path
):
    first = sshd_factory(key_types=("ed25519",))
    ssh_key_credential(client_key)
    node = launch(ssh_node(first, remote_root, host_key_strategy="manually_trusted"))
    text = log_text(node)
    assert node.connection == Connection.CONNECTED, text
    assert (
        f"[SSH] The SSH key with fingerprint {first.fingerprint} has been automatically trusted"
        in text
    )
    trusted = NodeHostKey.objects.get(node=node, trusted=True)
    assert trusted.fingerprint == first.fingerprint

    # Same host and port, another host key: a man in the middle, or a reinstalled host.
    services.disconnect(node)
    port = first.port
    first.stop()
    second = sshd_factory(port=port, host_keys=[HostKey.generate(tmp_path, "ed25519")])
    assert second.fingerprint != first.fingerprint
    node = launch(node)
    text = log_text(node)
    assert node.connection == Connection.FAILED
    assert "[SSH] WARNING: The SSH key for this host is not currently trusted." in text
    assert "Host key verification failed" in node.connection_cause
    pending = NodeHostKey.objects.get(node=node, trusted=False)
    assert pending.fingerprint == second.fingerprint
    assert NodeHostKey.objects.get(node=node, trusted=True).fingerprint == first.fingerprint

    # The admin says Yes on "Trust SSH Host Key": the new key replaces the old one.
    hostkeys.trust_pending_key(node, None)
    node = launch(node)
    assert node.connection == Connection.CONNECTED, log_text(node)
    assert "[SSH] SSH host key matches key seen previously for this host." in log_text(node)


def test_manual_verification_of_the_initial_connection(
    celery_worker, sshd, client_key, remote_root
):
    ssh_key_credential(client_key)
    node = launch(
        ssh_node(sshd, remote_root, host_key_strategy="manually_trusted", require_manual_trust=True)
    )
    assert node.connection == Connection.FAILED
    assert NodeHostKey.objects.filter(node=node, trusted=False).exists()
    assert not NodeHostKey.objects.filter(node=node, trusted=True).exists()
    hostkeys.trust_pending_key(node, None)
    node = launch(node)
    assert node.connection == Connection.CONNECTED, log_text(node)


def test_manually_provided_key(celery_worker, sshd_factory, client_key, remote_root, tmp_path):
    server = sshd_factory(key_types=("ed25519",))
    ssh_key_credential(client_key)
    node = launch(
        ssh_node(
            server,
            remote_root,
            host_key_strategy="manually_provided",
            provided_key=server.host_key_line("ssh-ed25519"),
        )
    )
    assert node.connection == Connection.CONNECTED, log_text(node)
    assert "[SSH] SSH host key matched the key required for this connection." in log_text(node)

    other = HostKey.generate(tmp_path, "ed25519")
    Node.objects.filter(pk=node.pk).update(
        launcher_config={**node.launcher_config, "provided_key": other.public_line}
    )
    services.disconnect(node)
    node.refresh_from_db()
    node = launch(node)
    assert node.connection == Connection.FAILED
    assert "does not match the key required in the connection configuration" in log_text(node)


def test_known_hosts_file(celery_worker, sshd, client_key, remote_root, tmp_path, monkeypatch):
    known_hosts = tmp_path / "known_hosts"
    monkeypatch.setenv("STEWARD_KNOWN_HOSTS_FILE", str(known_hosts))
    ssh_key_credential(client_key)
    node = launch(ssh_node(sshd, remote_root, host_key_strategy="known_hosts"))
    assert node.connection == Connection.FAILED
    assert "No Known Hosts file was found at" in log_text(node)

    known_hosts.write_text("[somewhere-else]:22 " + sshd.host_key_line() + "\n")
    node = launch(node)
    assert "No entry currently exists in the Known Hosts file for this host." in log_text(node)

    known_hosts.write_text("".join(f"{line}\n" for line in sshd.known_hosts_lines()))
    node = launch(node)
    assert node.connection == Connection.CONNECTED, log_text(node)
    assert "[SSH] SSH host key matches key in Known Hosts file." in log_text(node)


# --- the other launchers --------------------------------------------------------------------


def test_command_launcher(celery_worker, db, agent_pyz, tmp_path):
    node = Node.objects.create(
        name="cmd",
        remote_fs=str(tmp_path / "root"),
        launcher="command",
        launcher_config={"command": f"{sys.executable} {agent_pyz}"},
    )
    node = launch(node)
    text = log_text(node)
    assert node.connection == Connection.CONNECTED, text
    assert "Launcher: CommandLauncher" in text
    assert "Communication Protocol: Standard in/out" in text


def test_command_launcher_failure(celery_worker, db, tmp_path):
    node = Node.objects.create(
        name="cmd-bad",
        remote_fs=str(tmp_path),
        launcher="command",
        launcher_config={"command": "/bin/false"},
    )
    node = launch(node)
    assert node.connection == Connection.FAILED
    assert node.connection_cause == "Process terminated with exit code 1"


def test_built_in_node_runs_the_same_agent_locally(celery_worker, db):
    node = services.ensure_builtin_node()
    node = launch(node)
    assert node.connection == Connection.CONNECTED, log_text(node)
    assert node.display_name == "Built-In Node"
    code, out, _ = pool.get(node).run_agent(["hash"])
    assert out.decode().strip() == agent_package.agent_hash()


def test_restart_relaunches_nodes_that_were_online(
    celery_worker, sshd, client_key, remote_root, settings
):
    from nodes.tasks import recover_nodes

    # The embedded process's restart: every connection died with the old process. (With
    # separate worker processes, other workers' connections live on; see recover_nodes.)
    settings.STEWARD_SCALED = False

    ssh_key_credential(client_key)
    node = ssh_node(sshd, remote_root)
    Node.objects.filter(pk=node.pk).update(retention=Node.Retention.ALWAYS)
    node = launch(node)
    assert node.connection == Connection.CONNECTED
    pool.close_all()  # the old process and its connections are gone
    before = node.launch_number
    recover_nodes()
    node = wait_for(node, (Connection.CONNECTED,))
    assert node.launch_number == before + 1
    assert "Relaunching after a restart" not in log_text(node)  # the cause is on the row
    assert node.connection_cause == "Agent successfully connected and online"


def test_retention_sweep_relaunches_a_failed_keep_online_node(
    celery_worker, sshd, client_key, remote_root
):
    from nodes.tasks import retention_sweep

    ssh_key_credential(client_key)
    node = ssh_node(sshd, remote_root, credential_id="missing-for-now")
    Node.objects.filter(pk=node.pk).update(retention=Node.Retention.ALWAYS)
    node = launch(node)
    assert node.connection == Connection.FAILED
    assert node.next_launch_at is not None
    retention_sweep()  # back-off not over yet: nothing happens
    node.refresh_from_db()
    assert node.connection == Connection.FAILED
    Node.objects.filter(pk=node.pk).update(
        next_launch_at=None,
        launcher_config={**node.launcher_config, "credentials_id": "agent-key"},
    )
    assert retention_sweep() == 1
    node = wait_for(node, (Connection.CONNECTED,))
