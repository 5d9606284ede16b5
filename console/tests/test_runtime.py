"""Smoke tests of the runtime, both configurations: a request enqueues a Celery task, a real
worker runs it, and its messages reach a client over a Channels WebSocket.

Embedded: the real ``manage.py runconsole`` (one process). Scaled: a uvicorn web process and a
separate ``celery worker`` process, talking through Redis, on PostgreSQL.
"""

from __future__ import annotations

import json
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from console.models import RuntimeCheck
from console.testing import PASSWORD, ConsoleProcess, _die_with_parent, free_port, make_persona
from console.tests.consoleclient import (
    ConsoleClient,
    child_environment,
    follow_check,
    start_runtime_check,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _check_events(client: ConsoleClient, check_id: int, sent: float) -> list[tuple[float, dict]]:
    """Follow a check over the WebSocket; assert what a user watching it would see."""
    with client.websocket(f"/ws/runtime-check/{check_id}/") as ws:
        events = follow_check(ws)
    # The page the redirect leads to renders too.
    assert client.get(f"/manage/runtimeCheck/{check_id}/").status == 200

    replay, live = events[0][1], [(t, e) for t, e in events[1:]]
    assert replay.get("replay") is True, replay
    assert replay["total"] == 5
    assert live, "no live event reached the WebSocket (only the replay)"
    assert all("replay" not in e for _, e in live)
    steps = [e["step"] for _, e in live]
    assert steps == sorted(steps), f"events out of order: {steps}"
    final = events[-1][1]
    assert final["status"] == "done", final
    assert final["step"] == final["total"] == 5
    print(
        f"\nrequest → first live event {1000 * (live[0][0] - sent):.1f} ms; "
        f"request → done {1000 * (live[-1][0] - sent):.1f} ms; {len(live)} live events"
    )
    return events


def test_embedded_request_worker_websocket_round_trip():
    make_persona("olivia", "Operators")
    with ConsoleProcess(env=child_environment()) as console:
        client = ConsoleClient(console.url)
        client.sign_in("olivia")
        check_id, sent = start_runtime_check(client)
        events = _check_events(client, check_id, sent)

        check = RuntimeCheck.objects.get(pk=check_id)
        assert check.status == RuntimeCheck.Status.DONE
        assert check.steps_done == 5
        assert check.requested_by.username == "olivia"
        # The embedded worker ran it, inside the console process itself.
        pid = console.proc.pid
        assert check.worker.startswith(f"embedded-{pid}@"), check.worker
        assert f"pid {pid}," in check.worker
        assert events[-1][1]["worker"] == check.worker


def test_embedded_websocket_push_latency():
    """Several checks in a row: how long from the POST to the first event (printed only)."""
    make_persona("olivia", "Operators")
    with ConsoleProcess(env=child_environment()) as console:
        client = ConsoleClient(console.url)
        client.sign_in("olivia")
        firsts, gaps = [], []
        for _ in range(5):
            check_id, sent = start_runtime_check(client)
            with client.websocket(f"/ws/runtime-check/{check_id}/") as ws:
                events = follow_check(ws)
            live = [t for t, e in events if "replay" not in e]
            firsts.append(live[0] - sent)
            gaps.extend(b - a for a, b in zip(live, live[1:], strict=False))
            assert events[-1][1]["status"] == "done"
        print(
            f"\nrequest → first live event: median {1000 * statistics.median(firsts):.1f} ms, "
            f"max {1000 * max(firsts):.1f} ms; between step events: median "
            f"{1000 * statistics.median(gaps):.1f} ms (the task sleeps 50 ms per step)"
        )
    assert RuntimeCheck.objects.filter(status=RuntimeCheck.Status.DONE).count() == 5


def test_websocket_refuses_anonymous_users_without_permission_and_other_sites():
    make_persona("olivia", "Operators")
    # Signed in, but in no group: may not follow runtime checks.
    get_user_model().objects.create_user("nobody", password=PASSWORD)
    check = RuntimeCheck.objects.create(status=RuntimeCheck.Status.DONE, steps_done=5)
    path = f"/ws/runtime-check/{check.pk}/"
    with ConsoleProcess(env=child_environment()) as console:
        anonymous = ConsoleClient(console.url)
        assert anonymous.websocket_refused(path) == 403

        no_permission = ConsoleClient(console.url)
        no_permission.sign_in("nobody")
        assert no_permission.get(f"/manage/runtimeCheck/{check.pk}/").status == 403
        assert no_permission.websocket_refused(path) == 403

        operator = ConsoleClient(console.url)
        operator.sign_in("olivia")
        # A page on another site cannot open the socket with the operator's cookies.
        assert operator.websocket_refused(path, origin="http://evil.example") == 403
        # The same operator from the console's own page can.
        with operator.websocket(path) as ws:
            replay = json.loads(ws.recv(timeout=5))
        assert replay["replay"] is True and replay["status"] == "done"


# --- the scaled configuration -----------------------------------------------------------------


def _scaled_environment() -> dict[str, str]:
    """The children's environment: the test database, and Redis keys of their own (see
    ``child_environment``)."""
    if not (settings.DATABASE_URL and settings.REDIS_URL):
        pytest.fail(
            "The scaled smoke test needs PostgreSQL and Redis: set DATABASE_URL and REDIS_URL "
            "(`make test-scaled` does), e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/"
            "steward REDIS_URL=redis://127.0.0.1:6379/13"
        )
    return child_environment()


class WorkerProcess:
    """``celery -A console worker -P threads``, as ``make worker`` starts it."""

    def __init__(self, env: dict[str, str], name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "console", "worker", "-P", "threads",
             "-c", "2", "-n", name, "-l", "INFO", "--without-gossip", "--without-mingle"],
            cwd=settings.BASE_DIR, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )  # fmt: skip

    def wait_ready(self, env: dict[str, str], timeout: float = 30.0) -> None:
        """Until the worker answers a ping over the broker (it then consumes tasks)."""
        from celery import Celery

        prefix = {"global_keyprefix": f"{env['STEWARD_REDIS_PREFIX']}:"}
        # Not the current app: shared tasks of later tests must keep using console.celery.app.
        control = Celery(
            broker=env["REDIS_URL"], broker_transport_options=prefix, set_as_current=False
        ).control
        nodename = self.name.replace("%h", socket.gethostname())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited {self.proc.returncode}:\n{self.output()}")
            if control.ping(destination=[nodename], timeout=0.5):
                return
        raise RuntimeError(f"worker not ready in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)  # Celery's warm shutdown
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()
        return self.proc.returncode, time.monotonic() - started


@pytest.mark.scaled
def test_scaled_request_worker_redis_websocket_round_trip():
    env = _scaled_environment()
    make_persona("olivia", "Operators")
    home = Path(settings.STEWARD_HOME)
    web = ConsoleProcess(
        argv=[sys.executable, "-m", "uvicorn", "console.asgi:application", "--host", "127.0.0.1",
              "--port", str(port := free_port()), "--ws", "websockets-sansio", "--lifespan", "off"],
        env=env, port=port,
    )  # fmt: skip
    worker_name = f"steward-test-{uuid.uuid4().hex[:8]}@%h"
    worker = WorkerProcess(env, worker_name, home / f"worker-{port}.log")
    try:
        web.start()
        worker.wait_ready(env)
        client = ConsoleClient(web.url)
        client.sign_in("olivia")
        check_id, sent = start_runtime_check(client)
        events = _check_events(client, check_id, sent)

        check = RuntimeCheck.objects.get(pk=check_id)
        assert check.status == RuntimeCheck.Status.DONE
        # Run by the separate worker process, not the web process.
        assert check.worker.startswith(worker_name.split("@")[0] + "@"), check.worker
        assert f"pid {worker.proc.pid}," in check.worker
        assert f"pid {web.proc.pid}," not in check.worker
        assert events[-1][1]["worker"] == check.worker
    finally:
        worker_rc, worker_seconds = worker.stop()
        web_rc, web_seconds = web.stop(signal.SIGTERM)
    print(f"\nworker stopped in {worker_seconds:.2f} s, web in {web_seconds:.2f} s")
    assert worker_rc == 0, worker.output()
    # uvicorn's CLI re-raises SIGTERM after its graceful shutdown (RUNTIME-NOTES 2(ii)).
    assert web_rc in (0, -signal.SIGTERM), web.output()
    assert worker_seconds < 10 and web_seconds < 10
    assert "Traceback" not in worker.output(), worker.output()
