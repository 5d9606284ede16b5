"""Stopping and starting the embedded console: Ctrl-C (SIGINT) and SIGTERM stop it cleanly
within 5 s, a second start keeps everything, and work cut off by a stop is not lost."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from console.models import RuntimeCheck
from console.testing import ConsoleProcess, make_persona
from console.tests.consoleclient import (
    ConsoleClient,
    child_environment,
    follow_check,
    start_runtime_check,
)

STOP_LIMIT = 5.0

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not true within {timeout}s: {predicate.__doc__ or predicate}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_the_console_cleanly_within_5_seconds(sig):
    make_persona("olivia", "Operators")
    console = ConsoleProcess(env=child_environment()).start()
    client = ConsoleClient(console.url)
    client.sign_in("olivia")
    check_id, _ = start_runtime_check(client)
    # A browser is watching when the signal comes: its socket must not hold the stop up.
    path = f"/ws/runtime-check/{check_id}/"
    with client.websocket(path) as ws, client.websocket(path) as other:
        assert follow_check(ws)[-1][1]["status"] == "done"
        assert json.loads(other.recv(timeout=5))["replay"] is True
        rc, seconds = console.stop(sig)
    print(f"\n{sig.name}: exit code {rc} after {seconds:.2f} s")
    assert rc == 0, console.output()
    assert seconds < STOP_LIMIT
    assert "Steward is stopping" in console.output()
    assert "Traceback" not in console.output(), console.output()


def test_signal_while_a_check_runs_loses_nothing():
    """Stop right after the request: the check finishes during the warm stop, or stays queued
    and is run by the next start. Either way it ends done, never stuck or gone."""
    make_persona("olivia", "Operators")
    console = ConsoleProcess(env=child_environment()).start()
    client = ConsoleClient(console.url)
    client.sign_in("olivia")
    check_id, _ = start_runtime_check(client)
    rc, seconds = console.stop(signal.SIGINT)
    print(
        f"\nstopped in {seconds:.2f} s with the check {RuntimeCheck.objects.get(pk=check_id).status}"
    )
    assert rc == 0 and seconds < STOP_LIMIT, console.output()
    assert RuntimeCheck.objects.get(pk=check_id).status in {"queued", "running", "done"}

    with ConsoleProcess(env=child_environment()):

        def finished():
            return RuntimeCheck.objects.get(pk=check_id).status in {"done", "interrupted"}

        wait_for(finished)
    # Cut off while running is reported as such; otherwise it ran to the end.
    check = RuntimeCheck.objects.get(pk=check_id)
    assert check.status in {"done", "interrupted"}
    if check.status == "interrupted":
        assert check.steps_done < check.steps_total


def test_a_second_signal_forces_the_stop():
    console = ConsoleProcess(env=child_environment()).start()
    started = time.monotonic()
    console.proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    console.proc.send_signal(signal.SIGINT)
    rc = console.proc.wait(STOP_LIMIT + 5)
    seconds = time.monotonic() - started
    console.stop()  # closes the log
    print(f"\ntwo Ctrl-C: exit code {rc} after {seconds:.2f} s")
    assert rc in (0, 3), console.output()
    assert seconds < STOP_LIMIT


def test_start_recovers_work_left_queued_or_running():
    """Rows left by a console that stopped (or crashed): the running check was cut off and is
    marked interrupted; the queued one (its Celery message lost with the in-memory broker) is
    run by the new console's worker."""
    cut_off = RuntimeCheck.objects.create(
        status=RuntimeCheck.Status.RUNNING,
        started_at=timezone.now() - timedelta(minutes=10),
        steps_done=2,
        worker="embedded-1@gone (pid 1, ThreadPoolExecutor-0_0)",
    )
    waiting = RuntimeCheck.objects.create(status=RuntimeCheck.Status.QUEUED)
    done = RuntimeCheck.objects.create(status=RuntimeCheck.Status.DONE, steps_done=5)

    with ConsoleProcess(env=child_environment()) as console:

        def recovered():
            statuses = dict(RuntimeCheck.objects.values_list("pk", "status"))
            return statuses[cut_off.pk] == "interrupted" and statuses[waiting.pk] == "done"

        wait_for(recovered)
        pid = console.proc.pid

    cut_off.refresh_from_db()
    assert cut_off.finished_at is not None and cut_off.steps_done == 2
    waiting.refresh_from_db()
    assert waiting.steps_done == 5
    assert waiting.worker.startswith(f"embedded-{pid}@")
    done.refresh_from_db()
    assert done.status == "done" and done.worker == ""  # finished work is left alone


# --- the `make run` path: a fresh data directory, migrations, the first admin, a restart ----


def _fresh_home_environment(home: Path) -> dict[str, str]:
    """What `make run` has on a fresh machine: no Steward variables but the data directory
    (and the port, which runconsole gets from ``--port``)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("STEWARD_")
        and k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    }
    env.update(DJANGO_SETTINGS_MODULE="console.settings", STEWARD_HOME=str(home))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _runconsole(home: Path, port: int | None = None) -> ConsoleProcess:
    console = ConsoleProcess(env=_fresh_home_environment(home), port=port, log_path=home.parent / f"{home.name}.log")  # fmt: skip
    console.argv = [sys.executable, "manage.py", "runconsole", "--port", str(console.port)]
    return console


def test_fresh_home_first_admin_then_restart_keeps_everything(tmp_path):
    home = tmp_path / "steward-home"
    first = _runconsole(home).start(timeout=60)
    try:
        password_file = home / "secrets" / "initialAdminPassword"
        # Printed like Jenkins does: the path, never the password.
        assert str(password_file) in first.output()
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        password = password_file.read_text().strip()
        assert password not in first.output()
        for name in ("steward.sqlite3", "secrets/secret.key", "secrets/master.key"):
            assert (home / name).exists(), name

        client = ConsoleClient(first.url)
        client.sign_in("admin", password)
        check_id, _ = start_runtime_check(client)
        with client.websocket(f"/ws/runtime-check/{check_id}/") as ws:
            assert follow_check(ws)[-1][1]["status"] == "done"
    finally:
        rc, seconds = first.stop(signal.SIGINT)
    assert rc == 0 and seconds < STOP_LIMIT, first.output()

    second = _runconsole(home, port=first.port).start(timeout=60)
    try:
        assert "initialAdminPassword" not in second.output().split("Steward is stopping")[-1]
        assert password_file.read_text().strip() == password, "the admin password was reset"
        # Same database and same secret key: the session from the first run still works.
        page = client.get(f"/manage/runtimeCheck/{check_id}/")
        assert page.status == 200
        with client.websocket(f"/ws/runtime-check/{check_id}/") as ws:
            replay = json.loads(ws.recv(timeout=5))
        assert replay["replay"] is True and replay["status"] == "done" and replay["step"] == 5
    finally:
        rc, seconds = second.stop(signal.SIGTERM)
    assert rc == 0 and seconds < STOP_LIMIT, second.output()
