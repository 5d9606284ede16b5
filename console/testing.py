"""Test helpers shared by every app's tests: personas, and the real console as a subprocess.

``ConsoleProcess`` starts ``manage.py runconsole`` (the real embedded entry point, or with
``scaled=True`` the web process only) on a free loopback port against the test database, waits
for ``/health``, and stops it with SIGTERM, checking it exits cleanly. The child dies with the
test run (PR_SET_PDEATHSIG), so a killed pytest never leaves a server behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.db import connection

BASE_DIR = Path(settings.BASE_DIR)
PASSWORD = "correct-horse-battery-staple"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child before exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def make_persona(username: str, group: str | None, **extra):
    """A user in one of the seeded groups (``None`` = superuser)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from console.permissions import sync_groups

    User = get_user_model()
    if group is None:
        return User.objects.create_superuser(username, password=PASSWORD, **extra)
    sync_groups()
    user = User.objects.create_user(username, password=PASSWORD, **extra)
    user.groups.add(Group.objects.get(name=group))
    return user


def test_environment(**overrides: str) -> dict[str, str]:
    """The environment a child process needs to share this test run's data and database."""
    env = dict(os.environ)
    # The child runs as in production: Django's async-safety checks on (the test process turns
    # them off for Playwright), so a consumer touching the ORM on the event loop fails here too.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env["DJANGO_SETTINGS_MODULE"] = "console.settings"
    env["STEWARD_HOME"] = str(settings.STEWARD_HOME)
    env["PYTHONUNBUFFERED"] = "1"
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        env["STEWARD_DB_PATH"] = str(db["NAME"])
    else:
        # The test database (test_<name>) under the same server.
        url = settings.DATABASE_URL.rsplit("/", 1)[0]
        env["DATABASE_URL"] = f"{url}/{db['NAME']}"
    env.update(overrides)
    return env


class ConsoleProcess:
    """A real console process. ``argv`` defaults to the embedded ``runconsole``."""

    def __init__(
        self,
        argv: list[str] | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = argv or [
            sys.executable,
            "manage.py",
            "runconsole",
            "--no-migrate",
            "--port",
            str(self.port),
        ]
        self.env = env or test_environment()
        self.log_path = log_path or Path(settings.STEWARD_HOME) / f"console-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> ConsoleProcess:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=BASE_DIR,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"console exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"console did not answer /health in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> tuple[int, float]:
        """Send ``sig``; return (exit code, seconds it took)."""
        assert self.proc is not None
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return self.proc.returncode, time.monotonic() - started

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> ConsoleProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.stop()


class InProcessWorker:
    """A real Celery worker (threads pool) in a thread of the test process, on the in-memory
    broker: what the embedded console runs, without the web server. Tasks really go through
    the broker and run on worker threads; nothing is eager."""

    def __init__(self, concurrency: int = 4) -> None:
        from celery.worker import WorkController

        from console.celery import app

        self.worker = WorkController(
            app=app,
            pool="threads",
            concurrency=concurrency,
            hostname=f"test-{os.getpid()}@localhost",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel="WARNING",
        )
        import threading

        self.thread = threading.Thread(
            target=self.worker.start, name="test-celery-worker", daemon=True
        )

    def start(self, timeout: float = 15.0) -> InProcessWorker:
        from celery import bootsteps

        from console import recovery

        recovery.enabled = False
        self.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            consumer = getattr(self.worker, "consumer", None)
            if consumer is not None and consumer.blueprint.state == bootsteps.RUN:
                return self
            time.sleep(0.05)
        raise RuntimeError("the in-process Celery worker did not start")

    def stop(self) -> None:
        from celery.worker import state as worker_state

        worker_state.should_stop = 0
        self.thread.join(10)
        worker_state.should_stop = None
        worker_state.should_terminate = None
