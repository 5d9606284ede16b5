"""Node monitors (Jenkins' Architecture, Clock Difference, Free Disk/Swap/Temp Space, Response
Time) over the cached agent connections: thresholds, automatic offline/online, cell texts.

``Node.monitor_data`` (written in one row update per sample; any key may be missing = never
sampled, and an entry with ``"error"`` set has no value — both render as "N/A"). ``at`` is the
ISO 8601 time of the sample that produced the entry::

    {
      "disk": {"path": "/srv/agent", "free": 81234567890, "total": 270553174016,
               "error": null, "at": "2026-11-29T10:00:00.123456+00:00"},
      "temp": {"path": "/tmp", "free": ..., "total": ..., "error": null, "at": ...},
      "swap": {"available_physical": ..., "total_physical": ..., "available_swap": ...,
               "total_swap": ..., "error": null, "at": ...},
      "clock": {"diff_ms": 12, "error": null, "at": ...},   # agent minus controller; + = ahead
      "architecture": {"label": "Linux (amd64)", "machine": "x86_64", "error": null, "at": ...},
      "response": {"samples": [41, 38, null, 40, 39],         # last 5 round trips, null = timeout
                   "timeouts": 0, "at": ...},                 # consecutive timeouts
      "offline_monitor": "disk" | "temp" | null,  # which monitor set the "offline by monitor" mark
    }

The screens render ``monitor_columns(node, settings)`` and ``data_obtained(nodes)``; they never
interpret ``monitor_data`` themselves.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta

import paramiko
from celery import shared_task
from django.db import connections, transaction
from django.utils import timezone

from console.push import push
from nodes import services
from nodes.connections import AgentConnection, AgentError, SSHAgentConnection, pool
from nodes.models import MonitorSettings, Node
from nodes.sizes import format_size, parse_size

logger = logging.getLogger(__name__)

Connection = Node.Connection
Offline = Node.Offline

# Jenkins' ResponseTimeMonitor: each sample times out after 5000 ms; 5 in a row disconnect.
RESPONSE_TIMEOUT_SECONDS = 5.0
MAX_TIMEOUTS = 5
KEEP_SAMPLES = 5
# A sweep waits at most this long for its nodes (Jenkins: each run times out after 30 s).
SWEEP_TIMEOUT_SECONDS = 30.0
# Concurrent agent calls in one sweep (threads doing I/O; the database writes stay in the
# sweep's own thread, so SQLite sees one writer per sweep).
SWEEP_THREADS = 32
# How often beat asks; the sweep itself runs only every MonitorSettings.interval_seconds.
BEAT_SECONDS = 5.0

CLOCK_IN_SYNC_MS = 1000
CLOCK_DANGEROUS_MS = 5000
SWAP_LOW_BYTES = 256 * 1024 * 1024

# (key, column caption, shown to administrators only) in Jenkins' column order.
COLUMNS: list[tuple[str, str, bool]] = [
    ("architecture", "Architecture", False),
    ("clock", "Clock Difference", False),
    ("disk", "Free Disk Space", False),
    ("swap", "Free Swap Space", True),
    ("temp", "Free Temp Space", False),
    ("response", "Response Time", False),
]

NOT_YET = "Not yet"
NOT_AVAILABLE = "N/A"
HEALTH_CHECK_TITLE = "Node Marked Offline Due to Health Check"
HEALTH_CHECK_MESSAGE = (
    "Steward took some agents offline because their key health metrics went below a "
    "threshold. If you don’t want Steward to do this, change the setting."
)

# Global setting fields and per-node override keys (Node.disk_thresholds) of each space monitor.
_GLOBAL_FIELDS = {
    "disk": ("free_disk_threshold", "free_disk_warning", "disk_ignored"),
    "temp": ("free_temp_threshold", "free_temp_warning", "temp_ignored"),
}
_NODE_KEYS = {
    "disk": ("freeDiskSpaceThreshold", "freeDiskSpaceWarningThreshold"),
    "temp": ("freeTempSpaceThreshold", "freeTempSpaceWarningThreshold"),
}
SPACE_MONITORS = ("disk", "temp")


# --- words (Jenkins' Util.getTimeSpanString and the monitors' messages) -----------------------


def time_span(ms: float) -> str:
    """A duration as Jenkins writes it: "12 ms", "0.23 sec", "4.5 sec", "12 sec", "3 min 5 sec",
    "12 min", "1 hr 2 min", "2 days 3 hr", "1 yr 20 days"."""
    ms = int(abs(ms))
    years, ms = divmod(ms, 365 * 86_400_000)
    days, ms = divmod(ms, 86_400_000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    seconds, millis = divmod(ms, 1000)

    def pair(big: int, big_label: str, small_label: str) -> str:
        # Jenkins drops the smaller unit once the bigger one reaches 10.
        return big_label if big >= 10 else f"{big_label} {small_label}"

    def day_label(n: int) -> str:
        return f"{n} day" if n == 1 else f"{n} days"

    if years:
        return pair(years, f"{years} yr", day_label(days))
    if days:
        return pair(days, day_label(days), f"{hours} hr")
    if hours:
        return pair(hours, f"{hours} hr", f"{minutes} min")
    if minutes:
        return pair(minutes, f"{minutes} min", f"{seconds} sec")
    if seconds >= 10:
        return f"{seconds} sec"
    if seconds >= 1:
        return f"{seconds + (millis // 100) / 10:g} sec"
    if millis >= 100:
        return f"{(millis // 10) / 100:g} sec"
    return f"{millis} ms"


def clock_text(diff_ms: int | None) -> str:
    """ "In sync" under 1 s, else "{0} ahead" / "{0} behind" (the agent against the controller)."""
    if diff_ms is None:
        return "Failed to check"
    if abs(diff_ms) < CLOCK_IN_SYNC_MS:
        return "In sync"
    return f"{time_span(diff_ms)} {'ahead' if diff_ms > 0 else 'behind'}"


def disk_space_text(free: int, path: str, total: int | None) -> str:
    """The normal tooltip: "{0} out of {2} left on {1}." """
    return f"{format_size(free)} out of {format_size(total)} left on {path}."


def disk_space_too_low(free: int, path: str, threshold: int, total: int | None) -> str:
    """The offline cause: "Disk space is below threshold of {2}. Only {0} out of {3} left on {1}." """
    return (
        f"Disk space is below threshold of {format_size(threshold)}. "
        f"Only {format_size(free)} out of {format_size(total)} left on {path}."
    )


def not_responding(node: Node) -> str:
    return f"Making {node.display_name} offline because it is not responding"


def timed_out_text(count: int) -> str:
    return f"Timed out for last {count} attempts"


# --- thresholds -------------------------------------------------------------------------------


def threshold_bytes(text: str | None, total: int | None) -> int | None:
    """Bytes for a threshold ("1GiB", "1.5GB", or a percentage of the disk such as "5%").

    ``None`` when unset or unreadable (the caller falls back to the global setting); 0 means
    the threshold is off."""
    text = (text or "").strip() if isinstance(text, str) else str(text or "")
    if not text:
        return None
    if text.endswith("%"):
        try:
            percent = float(text[:-1])
        except ValueError:
            return None
        if total is None or not 0 <= percent <= 100:
            return None
        return int(total * percent / 100)
    try:
        return parse_size(text)
    except ValueError:
        return None


def thresholds_for(
    node: Node, settings: MonitorSettings, kind: str, total: int | None = None
) -> tuple[int, int]:
    """(offline threshold, warning threshold) in bytes for ``kind`` ("disk" or "temp"): the
    node's own Disk Space Monitoring Thresholds where set, else the global ones. 0 = off."""
    error_field, warning_field, _ = _GLOBAL_FIELDS[kind]
    error_key, warning_key = _NODE_KEYS[kind]
    overrides = node.disk_thresholds if isinstance(node.disk_thresholds, dict) else {}
    values = []
    for key, field_name in ((error_key, error_field), (warning_key, warning_field)):
        value = threshold_bytes(overrides.get(key), total)
        if value is None:
            value = threshold_bytes(getattr(settings, field_name), total)
        values.append(value or 0)
    return values[0], values[1]


def space_level(entry: dict | None, node: Node, settings: MonitorSettings, kind: str) -> str:
    """ "error" at or below the threshold, "warning" at or below the warning level, else "ok"."""
    if not entry or entry.get("error") or entry.get("free") is None:
        return "ok"
    free, total = entry["free"], entry.get("total")
    threshold, warning = thresholds_for(node, settings, kind, total)
    if threshold and free <= threshold:
        return "error"
    if warning and free <= warning:
        return "warning"
    return "ok"


def _ignored(settings: MonitorSettings, kind: str) -> bool:
    if kind == "response":
        return bool(settings.response_ignored)
    return bool(getattr(settings, _GLOBAL_FIELDS[kind][2]))


def space_offline_message(entry: dict, node: Node, settings: MonitorSettings, kind: str) -> str:
    threshold, _ = thresholds_for(node, settings, kind, entry.get("total"))
    return disk_space_too_low(entry["free"], entry.get("path") or "", threshold, entry.get("total"))


# --- cells for the screens (pure: no queries) -------------------------------------------------


def _cell(text: str, tooltip: str = "", level: str = "ok", sort=None, **extra) -> dict:
    return {"text": text, "tooltip": tooltip, "level": level, "sort": sort, **extra}


def _na(entry: dict | None) -> dict:
    return _cell(NOT_AVAILABLE, (entry or {}).get("error") or "", "ok", None)


def _space_cell(entry: dict | None, node: Node, settings: MonitorSettings, kind: str) -> dict:
    if not entry or entry.get("error") or entry.get("free") is None:
        return _na(entry)
    level = space_level(entry, node, settings, kind)
    free, total, path = entry["free"], entry.get("total"), entry.get("path") or ""
    tooltip = (
        space_offline_message(entry, node, settings, kind)
        if level == "error"
        else disk_space_text(free, path, total)
    )
    return _cell(format_size(free), tooltip, level, free, free=free, total=total)


def _swap_cell(entry: dict | None) -> dict:
    if not entry or entry.get("error") or entry.get("available_swap") is None:
        return _na(entry)
    free, total = entry["available_swap"], entry.get("total_swap") or 0
    # Jenkins: red when 256 MB or less is free and more than 80% is used (no swap: not red).
    low = total > 0 and free <= SWAP_LOW_BYTES and free * 5 < total
    tooltip = (
        f"Free swap space: {format_size(free)} out of {format_size(total)}. "
        f"Free physical memory: {format_size(entry.get('available_physical'))} out of "
        f"{format_size(entry.get('total_physical'))}."
    )
    return _cell(format_size(free), tooltip, "error" if low else "ok", free)


def _clock_cell(entry: dict | None) -> dict:
    if not entry:
        return _na(entry)
    diff = entry.get("diff_ms")
    if entry.get("error") or diff is None:
        return _cell("Failed to check", entry.get("error") or "", "error", None)
    level = "error" if abs(diff) > CLOCK_DANGEROUS_MS else "ok"
    tooltip = f"The agent's clock differs from the controller's by {diff:+d} ms"
    return _cell(clock_text(diff), tooltip, level, diff)


def _response_cell(entry: dict | None) -> dict:
    if not entry or not entry.get("samples"):
        return _na(entry)
    samples = entry["samples"]
    timeouts = int(entry.get("timeouts") or 0)
    shown = ", ".join("timed out" if s is None else f"{s}ms" for s in samples)
    tooltip = f"Last {len(samples)} sample{'s' if len(samples) != 1 else ''}: {shown}"
    if timeouts:
        level = "error" if timeouts >= MAX_TIMEOUTS else "warning"
        # Sorts after every measured time, more timeouts last.
        return _cell(timed_out_text(timeouts), tooltip, level, 1_000_000_000 + timeouts)
    measured = [s for s in samples if s is not None]
    average = round(sum(measured) / len(measured)) if measured else 0
    return _cell(f"{average}ms", tooltip, "ok", average)


def _architecture_cell(entry: dict | None) -> dict:
    if not entry or entry.get("error") or not entry.get("label"):
        return _na(entry)
    return _cell(entry["label"], entry.get("machine") or "", "ok", entry["label"])


def monitor_columns(node: Node, settings: MonitorSettings) -> dict[str, dict]:
    """Each monitor column of ``node``: ``{"text", "tooltip", "level", "sort"}`` (level is
    "ok", "warning" or "error"; disk and temp cells add ``free`` and ``total`` in bytes)."""
    data = node.monitor_data if isinstance(node.monitor_data, dict) else {}
    return {
        "architecture": _architecture_cell(data.get("architecture")),
        "clock": _clock_cell(data.get("clock")),
        "disk": _space_cell(data.get("disk"), node, settings, "disk"),
        "swap": _swap_cell(data.get("swap")),
        "temp": _space_cell(data.get("temp"), node, settings, "temp"),
        "response": _response_cell(data.get("response")),
    }


def _parse_at(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def data_obtained(nodes, now: datetime | None = None) -> dict[str, str]:
    """The footer row "Data obtained": each monitor's age, e.g. "12 min"; "Not yet" before
    its first run."""
    now = now or timezone.now()
    latest: dict[str, datetime] = {}
    for node in nodes:
        data = node.monitor_data if isinstance(node.monitor_data, dict) else {}
        for key, _, _ in COLUMNS:
            at = _parse_at((data.get(key) or {}).get("at"))
            if at is not None and (key not in latest or at > latest[key]):
                latest[key] = at
    return {
        key: time_span((now - latest[key]).total_seconds() * 1000) if key in latest else NOT_YET
        for key, _, _ in COLUMNS
    }


def nodes_offline_by_monitors():
    """Nodes a health check took offline (for the "Node Marked Offline Due to Health Check"
    administrative monitor)."""
    return Node.objects.filter(offline=Offline.MONITOR)


# --- sampling: one agent call, timed ----------------------------------------------------------


@dataclass
class Sample:
    """What one ``agent monitor`` call gave (no database access here)."""

    report: dict | None = None  # the agent's JSON answer
    response_ms: int | None = None
    clock_diff_ms: int | None = None
    timed_out: bool = False
    connection_dead: bool = False
    error: str = ""


def _remote_root(node: Node) -> str:
    info = node.agent_info if isinstance(node.agent_info, dict) else {}
    return info.get("remote_root") or node.remote_fs or ""


def _kill(process) -> None:
    """Stop a call that did not answer in time (a local process at once, not after 3 s)."""
    proc = getattr(process, "proc", None)
    if proc is not None and proc.poll() is None:
        proc.kill()


def _call(connection: AgentConnection, args: list[str], timeout: float):
    """(exit code or None on timeout, stdout, stderr, wall clock at start, wall clock at end)."""
    started = time.monotonic()
    wall_start = time.time()
    process = connection.open_agent(args)
    try:
        process.close_stdin()
        out = bytearray()
        deadline = started + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _kill(process)
                return None, bytes(out), b"", wall_start, time.time()
            chunk = process.read(65536, timeout=min(remaining, 0.5))
            if chunk is None:
                continue
            if chunk == b"":
                break
            out += chunk
        wall_end = time.time()
        code = process.wait(max(0.05, deadline - time.monotonic()))
        if code is None:
            _kill(process)
            return None, bytes(out), b"", wall_start, time.time()
        return code, bytes(out), process.read_stderr(), wall_start, wall_end
    finally:
        process.close()


def _last_json_line(stdout: bytes) -> dict | None:
    lines = [line for line in stdout.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return None
    try:
        value = json.loads(lines[-1])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def take_sample(node: Node, timeout: float | None = None) -> Sample:
    """Run ``agent monitor --root <root>`` on the node's cached connection and time it."""
    timeout = RESPONSE_TIMEOUT_SECONDS if timeout is None else timeout
    try:
        connection = pool.get(node)
    except (AgentError, paramiko.SSHException, OSError, EOFError) as exc:
        return Sample(connection_dead=True, error=str(exc) or type(exc).__name__)
    root = _remote_root(node)
    args = ["monitor", "--root", root] if root else ["monitor"]
    started = time.monotonic()
    try:
        code, out, err, wall_start, wall_end = _call(connection, args, timeout)
    except (AgentError, paramiko.SSHException, OSError, EOFError) as exc:
        message = str(exc) or type(exc).__name__
        # An SSH connection whose transport still lives only failed this once (e.g. every
        # session busy); a local agent that cannot start, or a dead transport, is gone.
        if isinstance(connection, SSHAgentConnection) and connection.is_alive():
            elapsed = time.monotonic() - started
            return Sample(timed_out=elapsed >= timeout, error=message)
        return Sample(connection_dead=True, error=message)
    if code is None:
        return Sample(timed_out=True, error=f"No answer within {timeout * 1000:.0f} ms")
    if not connection.is_alive():
        return Sample(connection_dead=True, error="The agent connection was closed")
    response_ms = max(0, round((wall_end - wall_start) * 1000))
    report = _last_json_line(out) if code == 0 else None
    if report is None:
        detail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        error = f"The agent exited with code {code}" + (f": {detail[0]}" if detail[0] else "")
        if code == 0:
            error = "The agent's monitor answer is not JSON"
        return Sample(response_ms=response_ms, error=error)
    clock_diff = None
    agent_clock = report.get("clock_ms")
    if isinstance(agent_clock, int | float):
        # Jenkins' ClockDifference: against the midpoint of the call.
        clock_diff = round(agent_clock - (wall_start + wall_end) * 500)
    return Sample(report=report, response_ms=response_ms, clock_diff_ms=clock_diff)


# --- recording: one row write, thresholds, offline/online -------------------------------------


def _entries_from(sample: Sample, stamp: str) -> dict:
    """The monitor entries of a sample (errors when the agent gave no answer)."""
    report = sample.report
    if report is None:
        error = sample.error or "No answer"
        entries = {key: {"error": error, "at": stamp} for key in ("disk", "temp", "swap")}
        entries["architecture"] = {"error": error, "at": stamp}
        entries["clock"] = {"diff_ms": None, "error": error, "at": stamp}
        return entries

    def space(raw) -> dict:
        raw = raw if isinstance(raw, dict) else {}
        return {
            "path": raw.get("path"),
            "free": raw.get("free"),
            "total": raw.get("total"),
            "error": raw.get("error") or (None if raw.get("free") is not None else "No data"),
            "at": stamp,
        }

    memory = report.get("memory")
    if isinstance(memory, dict):
        swap = {
            key: memory.get(key)
            for key in ("available_physical", "total_physical", "available_swap", "total_swap")
        }
        swap.update(error=None, at=stamp)
    else:
        swap = {"error": "Memory data is not available on this agent", "at": stamp}
    arch = report.get("architecture") if isinstance(report.get("architecture"), dict) else {}
    return {
        "disk": space(report.get("disk")),
        "temp": space(report.get("temp")),
        "swap": swap,
        "clock": {
            "diff_ms": sample.clock_diff_ms,
            "error": None if sample.clock_diff_ms is not None else "Failed to check",
            "at": stamp,
        },
        "architecture": {
            "label": arch.get("label"),
            "machine": arch.get("machine"),
            "error": None if arch.get("label") else "No data",
            "at": stamp,
        },
    }


def _set_monitor_cause(node_id: int, message: str) -> bool:
    """Another monitor's reason replaces ours while the node stays offline by monitor."""
    changed = (
        Node.objects.filter(pk=node_id, offline=Offline.MONITOR).update(offline_message=message)
        == 1
    )
    if changed:
        services.announce(node_id)
    return changed


def _apply_space_monitors(node: Node, data: dict, settings: MonitorSettings) -> str | None:
    """Take the node offline or bring it back by the disk and temp monitors. Returns the
    monitor whose mark the node now carries (None if the mark is not ours)."""
    tripped: dict[str, str] = {}
    known: set[str] = set()
    for kind in SPACE_MONITORS:
        entry = data.get(kind)
        if not entry or entry.get("error") or entry.get("free") is None:
            continue
        known.add(kind)
        if not _ignored(settings, kind) and space_level(entry, node, settings, kind) == "error":
            tripped[kind] = space_offline_message(entry, node, settings, kind)
    ours = data.get("offline_monitor") if node.offline == Offline.MONITOR else None

    if node.offline == Offline.NONE:
        for kind, message in tripped.items():
            if services.monitor_offline(node.pk, message):
                logger.warning(
                    "Making %s offline temporarily due to the lack of disk space", node.display_name
                )
                return kind
        return None
    if ours not in SPACE_MONITORS:
        return None  # a user's, an idle, or another mechanism's mark: never ours to undo
    if ours in tripped or ours not in known:
        return ours  # still low, or no data to say otherwise
    for kind, message in tripped.items():
        if _set_monitor_cause(node.pk, message):
            return kind
    if services.monitor_recovered(node.pk):
        logger.warning(
            "Putting %s back online as there is enough disk space again", node.display_name
        )
    return None


def record(node: Node, sample: Sample, settings: MonitorSettings) -> str:
    """Store a sample (one row write) and act on it. Returns what happened: "ok", "offline",
    "online", "timeout", "disconnected" or "lost"."""
    if sample.connection_dead:
        services.connection_lost(node.pk, sample.error)
        return "lost"
    now = timezone.now()
    stamp = now.isoformat()
    disconnect = False
    with transaction.atomic():
        # The latest availability and data: a user may have acted while we waited on the agent.
        try:
            node.refresh_from_db(
                fields=["offline", "monitor_data", "response_timeouts", "connection"]
            )
        except Node.DoesNotExist:
            return "gone"  # deleted while we waited on its agent
        data = dict(node.monitor_data) if isinstance(node.monitor_data, dict) else {}
        before = node.offline
        previous = data.get("response") if isinstance(data.get("response"), dict) else {}
        samples = list(previous.get("samples") or [])
        if sample.timed_out:
            timeouts = node.response_timeouts + 1
            samples.append(None)
        else:
            timeouts = 0
            if sample.response_ms is not None:
                samples.append(sample.response_ms)
        data["response"] = {"samples": samples[-KEEP_SAMPLES:], "timeouts": timeouts, "at": stamp}
        data.update(_entries_from(sample, stamp))
        data["offline_monitor"] = _apply_space_monitors(node, data, settings)
        Node.objects.filter(pk=node.pk).update(
            monitor_data=data, monitor_at=now, response_timeouts=timeouts
        )
        disconnect = (
            timeouts >= MAX_TIMEOUTS
            and not settings.response_ignored
            and node.connection == Connection.CONNECTED
        )
    node.monitor_data, node.monitor_at, node.response_timeouts = data, now, timeouts
    if disconnect:
        message = not_responding(node)
        logger.warning(message)
        services.disconnect(node, None, message)
        return "disconnected"
    if sample.timed_out:
        return "timeout"
    if before != Offline.MONITOR and data["offline_monitor"]:
        return "offline"
    if before == Offline.MONITOR and not data["offline_monitor"]:
        node.refresh_from_db(fields=["offline"])
        return "online" if node.offline == Offline.NONE else "ok"
    return "ok"


# --- one node, and the sweep ------------------------------------------------------------------

_in_flight: set[int] = set()
_in_flight_lock = threading.Lock()


def _claim_node(node_id: int) -> bool:
    with _in_flight_lock:
        if node_id in _in_flight:
            return False
        _in_flight.add(node_id)
        return True


def _release_node(node_id: int) -> None:
    with _in_flight_lock:
        _in_flight.discard(node_id)


def check_node(node: Node, settings: MonitorSettings | None = None) -> str:
    """Monitor one connected node now (sample, store, act). "busy" if this process is already
    monitoring it."""
    if node.connection != Connection.CONNECTED:
        return "skipped"
    if not _claim_node(node.pk):
        return "busy"
    try:
        settings = settings or MonitorSettings.load()
        return record(node, take_sample(node), settings)
    finally:
        _release_node(node.pk)


@shared_task(name="nodes.monitor_node")
def monitor_node(node_id: int) -> str:
    """Monitor one node (right after it connects, like Jenkins' NodeMonitorUpdater)."""
    node = Node.objects.filter(pk=node_id).first()
    if node is None:
        return "gone"
    result = check_node(node)
    if result not in ("skipped", "busy"):
        services.announce(node_id, "monitor")
    return result


def claim_sweep(force: bool = False, now: datetime | None = None) -> bool:
    """True if this caller may run the sweep now: the interval has passed since the last run
    (or ``force``), and a conditional UPDATE on ``last_run_at`` moved it first — so two beat or
    worker processes asking at once never both run it."""
    now = now or timezone.now()
    row = MonitorSettings.load()
    interval = timedelta(seconds=max(1, row.interval_seconds))
    if not force and row.last_run_at is not None and now - row.last_run_at < interval:
        return False
    return (
        MonitorSettings.objects.filter(pk=row.pk, last_run_at=row.last_run_at).update(
            last_run_at=now
        )
        == 1
    )


def _sample_in_thread(node: Node) -> Sample:
    try:
        return take_sample(node)
    except Exception as exc:  # a bug in one node's sample must not stop the sweep
        logger.exception("monitoring node %s failed", node.pk)
        return Sample(error=f"Monitoring failed: {exc}")
    finally:
        # Connecting (SSH host keys, credentials) may have used this thread's connection.
        connections.close_all()


def run_sweep(nodes: list[Node] | None = None) -> dict[str, int]:
    """Monitor every connected node concurrently; returns a count per outcome."""
    if nodes is None:
        nodes = list(Node.objects.filter(connection=Connection.CONNECTED))
    settings = MonitorSettings.load()
    outcomes: dict[str, int] = {}
    claimed = [node for node in nodes if _claim_node(node.pk)]
    outcomes["busy"] = len(nodes) - len(claimed)
    if not claimed:
        return outcomes
    executor = ThreadPoolExecutor(
        max_workers=min(SWEEP_THREADS, len(claimed)), thread_name_prefix="monitor"
    )
    try:
        pending = {executor.submit(_sample_in_thread, node): node for node in claimed}
        deadline = time.monotonic() + SWEEP_TIMEOUT_SECONDS
        while pending:
            remaining = deadline - time.monotonic()
            done, _ = wait(pending, timeout=max(0.0, remaining), return_when=FIRST_COMPLETED)
            if not done:  # the sweep's own deadline: the rest count as timed out
                late = Sample(timed_out=True, error="No answer within the monitoring run")
                done_nodes = [(pending.pop(f), late) for f in list(pending)]
            else:
                done_nodes = [(pending.pop(f), f.result()) for f in done]
            for node, sample in done_nodes:
                try:
                    outcome = record(node, sample, settings)
                except Exception:  # one node's failure (e.g. a locked database) ends only its run
                    logger.exception("recording the monitor data of node %s failed", node.pk)
                    outcome = "error"
                finally:
                    _release_node(node.pk)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                _push_monitor(node.pk)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        for node in claimed:
            _release_node(node.pk)
    transaction.on_commit(
        lambda: push(
            services.NODES_GROUP, {"type": "node.changed", "node": None, "event": "monitor"}
        )
    )
    return outcomes


def _push_monitor(node_id: int) -> None:
    # Node pages follow their node; the Nodes list gets one message per sweep, not one per node.
    message = {"type": "node.changed", "node": node_id, "event": "monitor"}
    transaction.on_commit(lambda: push(services.node_group(node_id), message))


@shared_task(name="nodes.monitor_sweep")
def monitor_sweep(force: bool = False) -> dict[str, int] | None:
    """Beat calls this every few seconds; it works only once per Configure Monitors interval
    (or at once when ``force``, the "Refresh status" button). None when not due."""
    if not claim_sweep(force):
        return None
    return run_sweep()


def refresh_now() -> None:
    """The "Refresh status" button: a monitoring run of every connected node, soon, in a
    worker (never in the request)."""
    transaction.on_commit(lambda: monitor_sweep.delay(force=True))
