"""What goes wrong in a build farm, for real: an abort over SSH, the SSH connection dropping
mid-build, the worker process killed mid-build, and the controller restarting with a queue.

Each test checks what an admin would: the build's result and the cause in its console, the
executor freed, the node's state, and that no process of the build is left on the agent.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from builds import services
from builds.models import Build, Executor, QueueItem
from builds.tests.farmkit import (
    agent_key_credential,
    alive,
    console_text,
    group_members,
    launch,
    make_job,
    online_builtin,
    remote_roots,
    reported_pid,
    ssh_node,
    wait_build,
    wait_online,
    wait_until,
)
from console.testing import ConsoleProcess, _die_with_parent
from console.testing import test_environment as child_environment
from nodes import services as node_services
from nodes import tasks as node_tasks
from nodes.connections import pool
from nodes.models import Node
from nodes.tests.conftest import (
    agent_user,
    client_key,
    encrypted_client_key,
    sshd_factory,
)
from nodes.tests.sshd import descendants

pytestmark = pytest.mark.django_db(transaction=True)
# pytest finds fixtures among a module's names: the real sshd and keys of the nodes tests.
FIXTURES = (agent_user, client_key, encrypted_client_key, sshd_factory, remote_roots)

Connection = Node.Connection
# The script prints its shell's pid (= the process group the agent made for it) and the
# agent's pid, so the test can look for leftovers in /proc.
LONG_SCRIPT = 'echo "shell=$$ agent=$PPID"; sleep 60'


@pytest.fixture(autouse=True)
def _close_connections():
    yield
    pool.close_all()


def no_leftovers(build: Build, timeout: float = 5.0) -> None:
    """The build's process group and its agent process are gone (within ``timeout``)."""
    shell, agent = reported_pid(build, "shell"), reported_pid(build, "agent")
    wait_until(
        lambda: not group_members(shell) and not alive(agent), timeout,
        f"the processes of {build} to end (group {shell}: {group_members(shell)}, agent {agent})",
    )  # fmt: skip


def sshd_processes(server) -> list[int]:
    """The sshd listener and the per-connection sshd processes below it (not the commands)."""
    below = [
        pid for pid in descendants(server.proc.pid)
        if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd"
    ]  # fmt: skip
    return [server.proc.pid, *below]


def test_abort_over_ssh_kills_the_remote_process_group(celery_worker, sshd_factory, client_key,
                                                       remote_roots, admin):  # fmt: skip
    agent_key_credential(client_key)
    node = launch(ssh_node(sshd_factory(), remote_roots(), "n1", labels="linux"))
    job = make_job("long", LONG_SCRIPT, label_expression="linux")
    services.schedule_build(job, services.user_cause(admin))
    build = wait_build(job, status=Build.Status.RUNNING, text="shell=", timeout=20)
    shell = reported_pid(build, "shell")
    assert group_members(shell), "the remote script is not running"
    assert Path(f"/proc/{shell}").stat().st_uid == Path(node.remote_fs).stat().st_uid

    asked = time.monotonic()
    assert services.abort_build(build, admin)
    build = wait_build(job, timeout=5)
    took = time.monotonic() - asked
    text = console_text(build)
    assert build.result == "ABORTED", text
    assert took < 2.0, f"the abort took {took:.2f} s"
    assert "Aborted by admin" in text and text.rstrip().endswith("Finished: ABORTED")
    # The agent reports the exit only after the whole group is gone.
    assert not group_members(shell)
    no_leftovers(build)
    assert not Executor.objects.filter(build__isnull=False).exists()
    node.refresh_from_db()
    assert node.connection == Connection.CONNECTED  # an abort is no connection problem


def test_connection_drop_fails_the_build_and_a_keep_online_node_comes_back(
    celery_worker, sshd_factory, client_key, remote_roots
):
    agent_key_credential(client_key)
    server = sshd_factory()
    node = launch(ssh_node(server, remote_roots(), "n1", labels="linux"))
    assert node.retention == Node.Retention.ALWAYS
    job = make_job("long", LONG_SCRIPT, label_expression="linux")
    services.schedule_build(job, "Started by user admin")
    build = wait_build(job, status=Build.Status.RUNNING, text="shell=", timeout=20)

    # sshd dies: the listener and the sshd process serving the connection. The agent's
    # stdin closes with them, and it kills its script.
    for pid in sshd_processes(server):
        os.kill(pid, signal.SIGKILL)
    server.proc.wait(5)

    build = wait_build(job, timeout=10)
    text = console_text(build)
    assert build.result == "FAILURE", text
    assert "ERROR: the connection to n1 was lost during the build\n" in text
    assert text.rstrip().endswith("Finished: FAILURE")
    assert not Executor.objects.filter(build__isnull=False).exists()
    no_leftovers(build)
    node.refresh_from_db()
    assert node.connection == Connection.DISCONNECTED
    assert node.connection_cause == (
        "Connection was broken: the agent connection dropped during a build"
    )
    assert pool.peek(node.pk) is None

    # sshd is back (same port and host keys); the retention sweep (beat) relaunches the
    # "Keep online" node, and the next build runs.
    sshd_factory(port=server.port, host_keys=server.host_keys)
    node_tasks.retention_sweep()
    node = wait_online(node)
    assert node.connection_cause == "Agent successfully connected and online"
    quick = make_job("quick", "echo back again", label_expression="linux")
    services.schedule_build(quick, "Started by user admin")
    again = wait_build(quick)
    assert again.result == "SUCCESS" and "back again" in console_text(again)


def test_connection_drop_leaves_a_demand_node_disconnected(celery_worker, sshd_factory,
                                                          client_key, remote_roots):  # fmt: skip
    agent_key_credential(client_key)
    server = sshd_factory()
    node = launch(
        ssh_node(server, remote_roots(), "n1", labels="linux", retention=Node.Retention.DEMAND)
    )
    job = make_job("long", LONG_SCRIPT, label_expression="linux")
    services.schedule_build(job, "Started by user admin")
    wait_build(job, status=Build.Status.RUNNING, text="shell=", timeout=20)
    # Only the sshd process serving the connection dies; the listener stays up.
    for pid in sshd_processes(server)[1:]:
        os.kill(pid, signal.SIGKILL)
    build = wait_build(job, timeout=10)
    assert build.result == "FAILURE"
    assert "ERROR: the connection to n1 was lost during the build" in console_text(build)
    no_leftovers(build)
    node.refresh_from_db()
    assert node.connection == Connection.DISCONNECTED and node.next_launch_at is None
    node_tasks.retention_sweep()  # launched only when work waits for it
    time.sleep(0.5)
    node.refresh_from_db()
    assert node.connection == Connection.DISCONNECTED and node.launch_number == 1


# --- a worker process killed mid-build --------------------------------------------------------

REDIS_DB_URL = "redis://127.0.0.1:6379/10"


class WorkerProcess:
    """``celery -A console worker -P threads -c 2`` on Redis, against the SQLite test database."""

    def __init__(self, log_path: Path) -> None:
        self.prefix = f"steward-faults-{uuid.uuid4().hex[:12]}"
        self.name = f"faults-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        self.env = child_environment(
            REDIS_URL=REDIS_DB_URL,
            STEWARD_REDIS_PREFIX=self.prefix,
            STEWARD_SECRET_KEY=f"faults-test-secret-key-{uuid.uuid4().hex}",
        )
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "console", "worker", "-P", "threads", "-c", "2",
             "-n", self.name, "-l", "INFO", "--without-gossip", "--without-mingle"],
            cwd=settings.BASE_DIR, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        from celery import Celery

        # Not the current app: this process's tasks must still go to its own worker.
        self.app = Celery(
            "steward-faults", broker=REDIS_DB_URL, set_as_current=False,
            broker_transport_options={"global_keyprefix": f"{self.prefix}:"},
        )  # fmt: skip

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.output()}")
            if self.app.control.ping(destination=[self.name], timeout=0.5):
                return
        raise AssertionError(f"worker not ready in {timeout} s:\n{self.output()}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()
        import redis

        client = redis.Redis.from_url(REDIS_DB_URL)
        keys = list(client.scan_iter(f"{self.prefix}:*")) + list(
            client.scan_iter(f"*{self.prefix}*")
        )
        if keys:
            client.delete(*set(keys))
        self.app.close()


@pytest.fixture
def worker_process(tmp_path):
    worker = WorkerProcess(tmp_path / "worker.log")
    yield worker
    worker.close()


def test_worker_killed_mid_build_is_swept_and_leaves_no_orphans(
    celery_worker, worker_process, sshd_factory, client_key, remote_roots, monkeypatch
):
    agent_key_credential(client_key)
    # The node is launched by this process's worker; the build runs in the separate worker
    # process, which opens its own connection to the node (one per node per worker process).
    node = launch(ssh_node(sshd_factory(), remote_roots(), "n1", labels="linux"))
    worker_process.wait_ready()
    # This test process runs the embedded (in-memory) broker; the scheduler's kicks must reach
    # the separate worker, so they go to its Redis queue.
    monkeypatch.setattr(
        services, "_kick_scheduler", lambda *a: worker_process.app.send_task("builds.schedule")
    )
    job = make_job("long", LONG_SCRIPT, label_expression="linux")
    services.schedule_build(job, "Started by user admin")
    build = wait_build(job, status=Build.Status.RUNNING, text="shell=", timeout=20)
    assert f"(pid {worker_process.proc.pid}," in build.worker, build.worker
    # While the worker lives, the build heartbeats.
    first_beat = build.heartbeat_at
    wait_until(lambda: Build.objects.get(pk=build.pk).heartbeat_at > first_beat, 10, "a heartbeat")

    worker_process.proc.send_signal(signal.SIGKILL)
    worker_process.proc.wait(5)
    # The worker's SSH connection died with it: the agent's stdin closed and it killed the
    # script's group.
    no_leftovers(build)

    monkeypatch.setattr(settings, "STEWARD_LOST_BUILD_SECONDS", 6, raising=False)
    assert services.lost_builds_sweep() == 0  # its last heartbeat is recent: not lost yet
    build.refresh_from_db()
    assert build.status == Build.Status.RUNNING
    assert Executor.objects.filter(build=build).exists()
    wait_until(lambda: services.lost_builds_sweep() == 1, 15, "the sweep to fail the build", 0.5)

    build.refresh_from_db()
    text = console_text(build)
    assert build.result == "FAILURE"
    assert "ERROR: Steward lost contact with the build (its worker stopped)" in text
    assert text.rstrip().endswith("Finished: FAILURE")
    assert not Executor.objects.filter(build__isnull=False).exists()
    node.refresh_from_db()
    assert node.connection == Connection.CONNECTED  # the node itself was never lost


def test_a_build_the_sweep_gave_up_on_is_stopped_by_its_worker(celery_worker, monkeypatch):
    """If the sweep fails a build whose worker is alive after all (its heartbeats could not be
    written for too long), the freed executor may go to another build at once: the worker
    stops the script instead of running on beside it."""
    online_builtin(executors=1)
    job = make_job("long", LONG_SCRIPT)
    services.schedule_build(job, "Started by user admin")
    build = wait_build(job, status=Build.Status.RUNNING, text="shell=", timeout=20)
    monkeypatch.setattr(settings, "STEWARD_LOST_BUILD_SECONDS", 0, raising=False)
    assert services.lost_builds_sweep() == 1
    no_leftovers(build)
    build.refresh_from_db()
    text = console_text(build)
    assert build.result == "FAILURE"
    assert "ERROR: Steward lost contact with the build (its worker stopped)" in text
    assert text.rstrip().endswith("Finished: FAILURE")
    assert not Executor.objects.filter(build__isnull=False).exists()


# --- a controller restart ---------------------------------------------------------------------


def test_a_controller_restart_keeps_the_queue(monkeypatch):
    """The real embedded console (web + worker + beat in one process) crashes with a build
    running and another waiting; after a restart the waiting item is the same row and runs."""
    # This test process takes no part: its scheduler kicks would only reach its own broker.
    monkeypatch.setattr(services, "_kick_scheduler", lambda *a: None)
    builtin = node_services.ensure_builtin_node()
    Node.objects.filter(pk=builtin.pk).update(num_executors=1)
    blocker = make_job("blocker", LONG_SCRIPT)
    waiting = make_job("waiting", "echo waited for the restart")
    first, _ = services.schedule_build(blocker, "Started by user admin")
    second, _ = services.schedule_build(waiting, "Started by user admin")

    # The embedded controller (its own in-memory broker and worker), on the test database,
    # also when this run is on the scaled configuration.
    env = child_environment()
    env.pop("REDIS_URL", None)
    console = ConsoleProcess(env=env).start()
    started = time.monotonic()
    try:
        # Start-up recovery launches the built-in node; its coming online runs the scheduler
        # at once (not only at the next periodic sweep, 10 s later), which starts the blocker.
        running = wait_build(blocker, status=Build.Status.RUNNING, text="shell=", timeout=30)
        took = time.monotonic() - started
        assert took < 8, f"the queue waited {took:.1f} s for the built-in node to come online"
        wait_until(
            lambda: QueueItem.objects.get(pk=second.pk).why == "Waiting for next available executor",
            15, "the second item to wait for an executor",
        )  # fmt: skip
    finally:
        console.stop(signal.SIGKILL)  # a crash: no graceful shutdown

    # The crashed controller's local agent lost its stdin and killed the build's processes.
    no_leftovers(running)
    assert QueueItem.objects.get(pk=second.pk).state in QueueItem.LIVE_STATES
    assert Executor.objects.get(build=running).node_id == builtin.pk

    with ConsoleProcess(env=env) as console:
        done = wait_build(waiting, timeout=30)
        text = console_text(done)
        assert done.result == "SUCCESS", text + console.output()
        assert "waited for the restart" in text and done.node_id == builtin.pk
    item = QueueItem.objects.get(pk=second.pk)
    assert item.state == QueueItem.State.LEFT and item.build_id == done.pk
    running.refresh_from_db()
    assert running.result == "ABORTED"
    assert "Steward was restarted while this build was running" in console_text(running)
    assert QueueItem.objects.get(pk=first.pk).build_id == running.pk
    assert not Executor.objects.filter(build__isnull=False).exists()
