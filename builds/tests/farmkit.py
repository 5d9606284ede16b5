"""Helpers for the end-to-end build tests: SSH nodes on the real sshd fixture, waiting for
builds, reading their console, and looking for a build's processes in /proc."""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from builds.models import Build, Job
from console import logs
from console.models import LogStream
from credentials import services as credentials
from credentials.forms import CredentialInput
from nodes import services as node_services
from nodes.models import Node

Connection = Node.Connection
ACTIVE = (Build.Status.PENDING, Build.Status.RUNNING)


def wait_until(predicate: Callable[[], object], timeout: float, what: str, step: float = 0.05):
    """Poll ``predicate`` until it returns something true; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


# --- nodes ------------------------------------------------------------------------------------


def agent_key_credential(client_key, credential_id: str = "agent-key") -> None:
    credentials.create_credential(
        CredentialInput(
            kind="sshUserPrivateKey", scope="SYSTEM", credential_id=credential_id,
            description="agent login", username="steward-agent",
            secrets={"private_key": client_key.private_text, "passphrase": ""},
        )
    )  # fmt: skip


def ssh_node(
    server,
    root: Path,
    name: str,
    labels: str = "",
    executors: int = 2,
    retention: str = Node.Retention.ALWAYS,
) -> Node:
    """An SSH node on ``server`` ("Keep this agent online as much as possible" by default)."""
    return Node.objects.create(
        name=name, remote_fs=str(root), num_executors=executors, label_string=labels,
        launcher="ssh", retention=retention,
        launcher_config={
            "host": "127.0.0.1", "port": server.port, "credentials_id": "agent-key",
            "host_key_strategy": "non_verifying", "max_retries": 0, "retry_wait": 1,
            "launch_timeout": 15,
        },
    )  # fmt: skip


def node_log(node: Node) -> str:
    stream = LogStream.objects.filter(key=node.log_key).first()
    return b"".join(logs.iter_bytes(stream.pk)).decode() if stream else ""


def wait_online(node: Node, timeout: float = 30) -> Node:
    def online():
        node.refresh_from_db()
        if node.connection == Connection.FAILED:
            raise AssertionError(
                f"{node.name} failed to launch: {node.connection_cause}\n{node_log(node)}"
            )
        return node.connection == Connection.CONNECTED

    wait_until(online, timeout, f"{node.display_name} to come online")
    return node


def launch(node: Node, timeout: float = 30) -> Node:
    """Launch for real (the launch task on the worker) and wait until it is online."""
    node_services.request_launch(node)
    return wait_online(node, timeout)


def online_builtin(executors: int = 1) -> Node:
    node = node_services.ensure_builtin_node()
    Node.objects.filter(pk=node.pk).update(num_executors=executors)
    node.refresh_from_db()
    return launch(node)


@pytest.fixture
def remote_roots(agent_user) -> Iterator[Callable[[], Path]]:
    """Makes fresh remote root paths under the agent user's home (removed afterwards)."""
    made: list[Path] = []

    def make() -> Path:
        path = agent_user.home / "roots" / uuid.uuid4().hex[:12]
        made.append(path)
        return path

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


# --- jobs and builds --------------------------------------------------------------------------


def make_job(name: str, command: str, **fields) -> Job:
    fields.setdefault("quiet_period", 0)
    return Job.objects.create(name=name, steps=[{"type": "shell", "command": command}], **fields)


def console_text(build: Build | None) -> str:
    if build is None:
        return ""
    stream = LogStream.objects.filter(key=build.log_key).first()
    return b"".join(logs.iter_bytes(stream.pk)).decode(errors="replace") if stream else ""


def wait_build(
    job: Job,
    number: int = 1,
    timeout: float = 30,
    status=Build.Status.FINISHED,
    text: str | None = None,
) -> Build:
    """Until build ``number`` of ``job`` has ``status`` (and ``text`` in its console)."""

    def ready():
        build = Build.objects.filter(job=job, number=number).first()
        if build is None or build.status != status:
            return None
        if text is not None and text not in console_text(build):
            return None
        return build

    try:
        return wait_until(ready, timeout, f"{job.name} #{number} to be {status}")
    except AssertionError as exc:
        build = Build.objects.filter(job=job, number=number).first()
        state = f"{build.status} {build.result}" if build else "no build"
        raise AssertionError(f"{exc} (it is {state}); console:\n{console_text(build)}") from None


def reported_pid(build: Build, name: str) -> int:
    """A pid the build's script printed as ``<name>=<pid>``."""
    found = re.search(rf"\b{name}=(\d+)\b", console_text(build))
    assert found, f"the build did not print {name}=:\n{console_text(build)}"
    return int(found.group(1))


# --- processes --------------------------------------------------------------------------------


def _stat(pid: int) -> list[bytes] | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    return None if fields[0] in (b"Z", b"X") else fields


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes whose process group is ``pgid``."""
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat(int(name))
            if fields is not None and int(fields[2]) == pgid:
                members.append(int(name))
    return members


def alive(pid: int) -> bool:
    return _stat(pid) is not None
