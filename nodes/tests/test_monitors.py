"""Node monitors against real agents: the built-in node (the agent as a local process), a
command-launcher node whose agent stops answering, the real console's worker and beat, and an
SSH node on the real sshd. Plus the words the Nodes list shows."""

from __future__ import annotations

import re
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connections
from django.utils import timezone

from nodes import monitors, services
from nodes.connections import pool
from nodes.launchers.local import local_agent_path
from nodes.models import MonitorSettings, Node
from nodes.sizes import format_size

HUGE = "100000GiB"  # more than any disk here
TINY = "1KiB"
LOW_DISK = re.compile(
    r"^Disk space is below threshold of 97\.66 TiB\. "
    r"Only \d+\.\d\d [KMGT]iB out of \d+\.\d\d [KMGT]iB left on (?P<path>.+)\.$"
)


@pytest.fixture(autouse=True)
def _fresh_connections():
    # Node ids are reused between tests; a cached connection must not outlive its test.
    pool.close_all()
    yield
    pool.close_all()


def launch(node: Node, timeout: float = 30.0) -> Node:
    """The real path: request_launch → the launch task on the real Celery worker (a thread of
    this process, so it shares the connection pool) → online → the monitor task it queues."""
    services.request_launch(node)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        node.refresh_from_db()
        assert node.connection != Node.Connection.FAILED, node.connection_cause
        if node.connection == Node.Connection.CONNECTED and node.monitor_data.get("response"):
            return node
        time.sleep(0.05)
    raise AssertionError(f"{node.name} did not come online and get monitored: {node.connection}")


def configure(**fields) -> MonitorSettings:
    settings = MonitorSettings.load()
    for name, value in fields.items():
        setattr(settings, name, value)
    settings.save()
    return settings


# Launches write their agent log from a flush thread: the rows must be committed, so tests that
# launch run outside a wrapping transaction (transactional_db).
@pytest.fixture
def builtin(celery_worker, transactional_db) -> Node:
    return launch(services.ensure_builtin_node())


def monitor(node: Node) -> str:
    """Monitor now, in this thread (waiting out a run the worker may still be finishing)."""
    deadline = time.monotonic() + 5
    while (result := monitors.check_node(node)) == "busy" and time.monotonic() < deadline:
        time.sleep(0.02)
    node.refresh_from_db()
    return result


# --- disk and temp space: offline and back -----------------------------------------------------


def test_low_disk_space_takes_the_node_offline_and_recovery_brings_it_back(builtin):
    configure(free_disk_threshold=HUGE)
    assert monitor(builtin) == "offline"
    assert builtin.offline == Node.Offline.MONITOR
    match = LOW_DISK.match(builtin.offline_message)
    assert match, builtin.offline_message
    assert match["path"] == str(Path(builtin.remote_fs).resolve())
    assert services.offline_cause_text(builtin) == builtin.offline_message
    assert not builtin.is_online
    assert list(monitors.nodes_offline_by_monitors()) == [builtin]
    cells = monitors.monitor_columns(builtin, MonitorSettings.load())
    assert cells["disk"]["level"] == "error"
    assert cells["disk"]["tooltip"] == builtin.offline_message

    configure(free_disk_threshold=TINY)
    assert monitor(builtin) == "online"
    assert builtin.offline == Node.Offline.NONE
    assert builtin.offline_message == ""
    assert builtin.is_online
    cells = monitors.monitor_columns(builtin, MonitorSettings.load())
    assert cells["disk"]["level"] == "ok"
    free = builtin.monitor_data["disk"]["free"]
    assert cells["disk"]["text"] == format_size(free)
    assert re.fullmatch(
        r"\d+\.\d\d [KMGT]iB out of \d+\.\d\d [KMGT]iB left on .+\.", cells["disk"]["tooltip"]
    )


def test_warning_level_highlights_without_taking_the_node_offline(builtin):
    settings = configure(free_disk_threshold=TINY, free_disk_warning=HUGE)
    assert monitor(builtin) == "ok"
    assert builtin.offline == Node.Offline.NONE
    assert monitors.monitor_columns(builtin, settings)["disk"]["level"] == "warning"


def test_a_node_a_user_took_offline_is_not_brought_back_by_the_monitor(builtin, admin):
    services.mark_offline(builtin, admin, "maintenance")
    configure(free_disk_threshold=HUGE)
    monitor(builtin)
    assert builtin.offline == Node.Offline.USER
    assert services.offline_cause_text(builtin) == "Disconnected by admin : maintenance"

    configure(free_disk_threshold=TINY)
    monitor(builtin)
    assert builtin.offline == Node.Offline.USER
    assert builtin.offline_message == "maintenance"


def test_a_user_bringing_the_node_back_wins_until_the_next_check(builtin):
    configure(free_disk_threshold=HUGE)
    monitor(builtin)
    assert services.bring_online(builtin)
    builtin.refresh_from_db()
    assert builtin.is_online
    # Still too little space: the next check takes it offline again, as Jenkins does.
    assert monitor(builtin) == "offline"


def test_dont_mark_agents_temporarily_offline_still_collects_and_highlights(builtin):
    settings = configure(
        free_disk_threshold=HUGE, free_temp_threshold=HUGE, disk_ignored=True, temp_ignored=True
    )
    assert monitor(builtin) == "ok"
    assert builtin.offline == Node.Offline.NONE
    cells = monitors.monitor_columns(builtin, settings)
    assert cells["disk"]["level"] == cells["temp"]["level"] == "error"
    assert LOW_DISK.match(cells["disk"]["tooltip"])


def test_ignoring_a_monitor_later_clears_its_own_mark(builtin):
    configure(free_disk_threshold=HUGE)
    monitor(builtin)
    assert builtin.offline == Node.Offline.MONITOR
    configure(disk_ignored=True)
    assert monitor(builtin) == "online"
    assert builtin.is_online


def test_per_node_thresholds_override_the_global_ones(builtin):
    configure(free_disk_threshold=HUGE)
    builtin.disk_thresholds = {
        "freeDiskSpaceThreshold": TINY,
        "freeDiskSpaceWarningThreshold": TINY,
        "freeTempSpaceThreshold": "",
        "freeTempSpaceWarningThreshold": "",
    }
    builtin.save(update_fields=["disk_thresholds"])
    assert monitor(builtin) == "ok"
    assert builtin.is_online

    # A global 0 disables the check, except where a node sets its own threshold.
    configure(free_disk_threshold="0", free_disk_warning="0")
    builtin.disk_thresholds = {"freeDiskSpaceThreshold": HUGE}
    builtin.save(update_fields=["disk_thresholds"])
    assert monitor(builtin) == "offline"
    assert LOW_DISK.match(builtin.offline_message)


def test_percentage_thresholds_of_the_disk(builtin):
    builtin.disk_thresholds = {"freeDiskSpaceThreshold": "100%"}
    builtin.save(update_fields=["disk_thresholds"])
    assert monitor(builtin) == "offline"
    total = builtin.monitor_data["disk"]["total"]
    assert f"below threshold of {format_size(total)}." in builtin.offline_message


def test_disk_recovery_does_not_clear_a_temp_space_mark(builtin):
    configure(free_temp_threshold=HUGE)
    assert monitor(builtin) == "offline"
    temp_path = builtin.monitor_data["temp"]["path"]
    assert LOW_DISK.match(builtin.offline_message)["path"] == temp_path
    assert builtin.monitor_data["offline_monitor"] == "temp"

    # Disk space is fine all along: the temp monitor's mark stays.
    assert monitor(builtin) == "ok"
    assert builtin.offline == Node.Offline.MONITOR

    # Both low, then temp recovers: the node stays offline, now because of the disk.
    configure(free_disk_threshold=HUGE)
    monitor(builtin)
    configure(free_temp_threshold=TINY)
    monitor(builtin)
    assert builtin.offline == Node.Offline.MONITOR
    assert builtin.monitor_data["offline_monitor"] == "disk"
    assert LOW_DISK.match(builtin.offline_message)["path"] == builtin.monitor_data["disk"]["path"]

    configure(free_disk_threshold=TINY)
    assert monitor(builtin) == "online"
    assert monitors.monitor_columns(builtin, MonitorSettings.load())["temp"]["level"] == "ok"


# --- the other columns -------------------------------------------------------------------------


def test_clock_response_architecture_and_swap_are_measured(builtin):
    before = timezone.now()
    assert monitor(builtin) == "ok"
    data = builtin.monitor_data
    assert builtin.monitor_at >= before
    assert abs(data["clock"]["diff_ms"]) < 1000  # the same machine's clock
    cells = monitors.monitor_columns(builtin, MonitorSettings.load())
    assert cells["clock"] == {
        "text": "In sync",
        "tooltip": f"The agent's clock differs from the controller's by {data['clock']['diff_ms']:+d} ms",
        "level": "ok",
        "sort": data["clock"]["diff_ms"],
    }
    # The worker's run right after the node connected, then ours.
    samples = data["response"]["samples"]
    assert len(samples) == 2 and all(0 < ms < 5000 for ms in samples), samples
    assert cells["response"]["text"] == f"{round(sum(samples) / 2)}ms"
    assert re.fullmatch(r"(Linux|Mac OS X|FreeBSD) \(\w+\)", cells["architecture"]["text"])
    assert cells["swap"]["text"] == format_size(data["swap"]["available_swap"])
    assert data["swap"]["total_physical"] > 0

    for _ in range(4):
        monitor(builtin)
    assert len(builtin.monitor_data["response"]["samples"]) == monitors.KEEP_SAMPLES
    ages = monitors.data_obtained([builtin])
    assert set(ages) == {key for key, _, _ in monitors.COLUMNS}
    assert all(re.fullmatch(r"\d+(\.\d+)? (ms|sec)", age) for age in ages.values()), ages


def test_before_the_first_run_cells_read_na_and_data_obtained_not_yet(db):
    node = Node.objects.create(name="fresh", remote_fs="/srv/fresh")
    cells = monitors.monitor_columns(node, MonitorSettings.load())
    assert {cell["text"] for cell in cells.values()} == {"N/A"}
    assert monitors.data_obtained([node]) == {key: "Not yet" for key, _, _ in monitors.COLUMNS}
    assert monitors.data_obtained([]) == {key: "Not yet" for key, _, _ in monitors.COLUMNS}


# --- response time: a node that stops answering ------------------------------------------------


def write_wrapper(tmp_path: Path) -> tuple[Path, Path]:
    """An executable that runs the real agent, but hangs on ``monitor`` while a flag exists."""
    flag = tmp_path / "hang"
    wrapper = tmp_path / "slow-agent"
    wrapper.write_text(
        f"#!{sys.executable}\n"
        "import os, sys, time\n"
        f"if sys.argv[1:2] == ['monitor'] and os.path.exists({str(flag)!r}):\n"
        "    time.sleep(120)\n"
        f"os.execv(sys.executable, [sys.executable, {str(local_agent_path())!r}] + sys.argv[1:])\n"
    )
    wrapper.chmod(0o755)
    return wrapper, flag


@pytest.fixture
def command_node(celery_worker, transactional_db, tmp_path) -> tuple[Node, Path, Path]:
    wrapper, flag = write_wrapper(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    node = Node.objects.create(
        name="slowpoke",
        launcher="command",
        launcher_config={"command": str(wrapper)},
        remote_fs=str(root),
    )
    return launch(node), wrapper, flag


def test_five_consecutive_timeouts_disconnect_the_node(command_node, monkeypatch):
    node, _, flag = command_node
    assert monitor(node) == "ok"
    flag.touch()

    # The first timeout at Jenkins' own limit: 5000 ms.
    started = time.monotonic()
    assert monitor(node) == "timeout"
    assert 5.0 <= time.monotonic() - started < 7.0
    cells = monitors.monitor_columns(node, MonitorSettings.load())
    assert cells["response"]["text"] == "Timed out for last 1 attempts"
    assert cells["response"]["level"] == "warning"
    assert cells["clock"]["text"] == "Failed to check"
    assert cells["disk"]["text"] == "N/A"

    # The rest quicker (the agent really does not answer; only the wait is shorter).
    monkeypatch.setattr(monitors, "RESPONSE_TIMEOUT_SECONDS", 0.5)
    for attempt in (2, 3, 4):
        assert monitor(node) == "timeout"
        assert node.connection == Node.Connection.CONNECTED
        assert node.response_timeouts == attempt
    assert monitor(node) == "disconnected"
    assert node.connection == Node.Connection.DISCONNECTED
    assert node.connection_cause.endswith("Making slowpoke offline because it is not responding")
    cells = monitors.monitor_columns(node, MonitorSettings.load())
    assert cells["response"] == {
        "text": "Timed out for last 5 attempts",
        "tooltip": "Last 5 samples: timed out, timed out, timed out, timed out, timed out",
        "level": "error",
        "sort": 1_000_000_005,
    }
    assert pool.peek(node.pk) is None


def test_dont_mark_offline_for_response_time_keeps_a_silent_node_connected(
    command_node, monkeypatch
):
    node, _, flag = command_node
    configure(response_ignored=True)
    flag.touch()
    monkeypatch.setattr(monitors, "RESPONSE_TIMEOUT_SECONDS", 0.3)
    for _ in range(6):
        assert monitor(node) == "timeout"
    assert node.connection == Node.Connection.CONNECTED
    assert node.response_timeouts == 6
    # It answers again (within the real 5000 ms): the count starts over.
    flag.unlink()
    monkeypatch.undo()
    assert monitor(node) == "ok"
    assert node.response_timeouts == 0
    assert re.fullmatch(
        r"\d+ms", monitors.monitor_columns(node, MonitorSettings.load())["response"]["text"]
    )


def test_a_dead_connection_is_reported_as_broken(command_node):
    node, wrapper, _ = command_node
    wrapper.unlink()  # the launch command no longer exists: the agent cannot be reached
    assert monitor(node) == "lost"
    assert node.connection == Node.Connection.DISCONNECTED
    assert node.connection_cause.startswith("Connection was broken: Cannot run ")


# --- the sweep ------------------------------------------------------------------------------


def _in_thread(results: list, barrier: threading.Barrier) -> None:
    try:
        barrier.wait()
        results.append(monitors.monitor_sweep())
    finally:
        connections.close_all()


def test_the_sweep_runs_once_per_interval_even_when_asked_twice_at_once(
    celery_worker, transactional_db, tmp_path
):
    builtin = launch(services.ensure_builtin_node())
    wrapper, _ = write_wrapper(tmp_path)
    other = launch(
        Node.objects.create(
            name="other", launcher="command", launcher_config={"command": str(wrapper)}
        )
    )
    Node.objects.create(name="never-connected", remote_fs="/srv/x")
    configure(interval_seconds=60)

    results: list = []
    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=_in_thread, args=(results, barrier)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    ran = [r for r in results if r is not None]
    assert len(results) == 2 and len(ran) == 1, results
    assert ran[0] == {"busy": 0, "ok": 2}
    for node in (builtin, other):
        node.refresh_from_db()
        assert len(node.monitor_data["response"]["samples"]) == 2  # after connecting, the sweep
    assert Node.objects.get(name="never-connected").monitor_data == {}

    # Asked again before the interval passed: nothing; once it passed: one more run.
    assert monitors.monitor_sweep() is None
    MonitorSettings.objects.filter(pk=1).update(last_run_at=timezone.now() - timedelta(seconds=61))
    assert monitors.monitor_sweep() == {"busy": 0, "ok": 2}
    # "Refresh status" does not wait for the interval.
    assert monitors.monitor_sweep(force=True) == {"busy": 0, "ok": 2}
    builtin.refresh_from_db()
    assert len(builtin.monitor_data["response"]["samples"]) == 4


def test_the_sweep_acts_on_every_node_it_checks(builtin, tmp_path):
    wrapper, _ = write_wrapper(tmp_path)
    other = launch(
        Node.objects.create(
            name="other", launcher="command", launcher_config={"command": str(wrapper)}
        )
    )
    configure(free_disk_threshold=HUGE)
    outcome = monitors.monitor_sweep(force=True)
    assert outcome == {"busy": 0, "offline": 2}
    for node in (builtin, other):
        node.refresh_from_db()
        assert LOW_DISK.match(node.offline_message)


def test_the_console_monitors_a_node_when_it_connects_and_then_on_schedule(transactional_db):
    """The real embedded console: its worker launches the built-in node at start-up, monitors
    it right after it connects, and its beat runs the sweep."""
    from console.testing import ConsoleProcess
    from console.tests.consoleclient import child_environment

    configure(interval_seconds=60)
    services.ensure_builtin_node()
    with ConsoleProcess(env=child_environment()) as console:
        deadline = time.monotonic() + 20
        node = Node.objects.get(is_builtin=True)
        while time.monotonic() < deadline and not (
            node.monitor_data.get("disk") and MonitorSettings.load().last_run_at
        ):
            time.sleep(0.2)
            node.refresh_from_db()
        output = console.output()
    assert node.connection == Node.Connection.CONNECTED, output
    assert node.monitor_data["disk"]["free"] > 0, output
    assert MonitorSettings.load().last_run_at is not None, output
    cells = monitors.monitor_columns(node, MonitorSettings.load())
    assert cells["clock"]["text"] == "In sync"
    assert re.fullmatch(r"\d+ms", cells["response"]["text"])


def test_an_ssh_node_on_a_real_sshd(celery_worker, transactional_db, sshd, client_key, remote_root):
    """Monitored over the node's cached SSH connection: the remote root's disk, offline and
    back by threshold, and a broken connection once sshd is gone."""
    from credentials import services as credentials
    from credentials.forms import CredentialInput

    credentials.create_credential(
        CredentialInput(
            kind="sshUserPrivateKey",
            scope="SYSTEM",
            credential_id="agent-key",
            description="agent login",
            username=sshd.username,
            secrets={"private_key": client_key.private_text, "passphrase": ""},
        )
    )
    node = Node.objects.create(
        name="remote",
        remote_fs=str(remote_root),
        launcher="ssh",
        retention=Node.Retention.DEMAND,
        launcher_config={
            "host": "127.0.0.1",
            "port": sshd.port,
            "credentials_id": "agent-key",
            "host_key_strategy": "non_verifying",
            "max_retries": 0,
            "launch_timeout": 10,
        },
    )
    node = launch(node)
    assert node.monitor_data["disk"]["path"] == str(remote_root)
    cells = monitors.monitor_columns(node, MonitorSettings.load())
    assert cells["clock"]["text"] == "In sync"
    assert re.fullmatch(r"\d+ms", cells["response"]["text"])
    assert cells["architecture"]["text"].startswith("Linux (")

    configure(free_disk_threshold=HUGE)
    assert monitor(node) == "offline"
    assert LOW_DISK.match(node.offline_message)["path"] == str(remote_root)
    configure(free_disk_threshold=TINY)
    assert monitor(node) == "online"

    sshd.stop()
    transport = pool.peek(node.pk).transport
    deadline = time.monotonic() + 10
    while transport.is_active() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert monitor(node) == "lost"
    assert node.connection == Node.Connection.DISCONNECTED
    assert node.connection_cause.startswith("Connection was broken: Cannot connect to 127.0.0.1:")


# --- words ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (12, "12 ms"),
        (230, "0.23 sec"),
        (4500, "4.5 sec"),
        (12_000, "12 sec"),
        (185_000, "3 min 5 sec"),
        (12 * 60_000 + 5000, "12 min"),
        (3_720_000, "1 hr 2 min"),
        (2 * 86_400_000 + 3 * 3_600_000, "2 days 3 hr"),
        (86_400_000, "1 day 0 hr"),
        (400 * 86_400_000, "1 yr 35 days"),
    ],
)
def test_time_spans_read_like_jenkins(ms, text):
    assert monitors.time_span(ms) == text


def test_clock_difference_words():
    assert monitors.clock_text(0) == "In sync"
    assert monitors.clock_text(-999) == "In sync"
    assert monitors.clock_text(1500) == "1.5 sec ahead"
    assert monitors.clock_text(-125_000) == "2 min 5 sec behind"
    assert monitors.clock_text(None) == "Failed to check"


def _node_with(**data) -> Node:
    return Node(name="n", monitor_data=data)


def test_clock_more_than_five_seconds_off_is_red():
    settings = MonitorSettings()
    assert (
        monitors.monitor_columns(_node_with(clock={"diff_ms": 4000}), settings)["clock"]["level"]
        == "ok"
    )
    cell = monitors.monitor_columns(_node_with(clock={"diff_ms": -6000}), settings)["clock"]
    assert (cell["text"], cell["level"]) == ("6 sec behind", "error")


def test_swap_is_red_only_when_little_is_free_and_most_is_used():
    settings = MonitorSettings()
    mib = 1024 * 1024

    def level(free: int, total: int) -> str:
        swap = {
            "available_swap": free,
            "total_swap": total,
            "available_physical": 1,
            "total_physical": 2,
        }
        return monitors.monitor_columns(_node_with(swap=swap), settings)["swap"]["level"]

    assert level(200 * mib, 2048 * mib) == "error"  # ≤ 256 MB free, 90 % used
    assert level(300 * mib, 2048 * mib) == "ok"  # more than 256 MB free
    assert level(200 * mib, 400 * mib) == "ok"  # only 50 % used
    assert level(0, 0) == "ok"  # no swap at all


def test_response_time_average_and_timeouts():
    settings = MonitorSettings()
    cell = monitors.monitor_columns(
        _node_with(response={"samples": [40, 50, None, 60], "timeouts": 0}), settings
    )
    assert cell["response"]["text"] == "50ms"
    cell = monitors.monitor_columns(
        _node_with(response={"samples": [40, None, None], "timeouts": 2}), settings
    )
    assert (cell["response"]["text"], cell["response"]["level"]) == (
        "Timed out for last 2 attempts",
        "warning",
    )


def test_threshold_sizes():
    assert monitors.threshold_bytes("1GiB", None) == 1 << 30
    assert monitors.threshold_bytes("1.5GB", None) == 3 << 29
    assert monitors.threshold_bytes("10%", 1000) == 100
    assert monitors.threshold_bytes("", 1000) is None
    assert monitors.threshold_bytes("lots", 1000) is None
    node = Node(name="n", disk_thresholds={"freeTempSpaceThreshold": "5%"})
    settings = MonitorSettings()
    assert monitors.thresholds_for(node, settings, "disk") == (1 << 30, 2 << 30)
    assert monitors.thresholds_for(node, settings, "temp", 1000) == (50, 2 << 30)
