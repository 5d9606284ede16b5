"""The embedded default: one process serving the console (uvicorn, ASGI) with a Celery worker
(threads pool, ``memory://`` broker) and Celery beat in threads of the same process.

Measured recipe and traps (RUNTIME-NOTES 2(i)): the worker is a ``WorkController`` (``app.Worker``
installs signal handlers, main thread only); uvicorn must not capture signals (it would re-raise
them after shutdown); on SIGINT/SIGTERM the worker stops first, while the server loop still runs
so the last pushes from tasks get through, then the server; a worker thread that does not end
in time is abandoned with ``os._exit`` because ThreadPoolExecutor threads are non-daemon.

Stop budget (Ctrl-C must end the process within 5 s): worker warm stop up to
``WORKER_STOP_TIMEOUT``, cold stop up to ``WORKER_TERMINATE_TIMEOUT``, then the server's
graceful shutdown up to ``SERVER_SHUTDOWN_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time

import uvicorn
from celery import signals
from celery.beat import Service as BeatService
from celery.worker import WorkController
from celery.worker import state as worker_state
from django.conf import settings

from console import push
from console.celery import app as celery_app

logger = logging.getLogger(__name__)

WORKER_STOP_TIMEOUT = 2.5
WORKER_TERMINATE_TIMEOUT = 0.5
SERVER_SHUTDOWN_TIMEOUT = 1.5
BEAT_STOP_TIMEOUT = 1.5
# Beat sleeps up to this long between ticks and notices a stop only when it wakes.
BEAT_MAX_INTERVAL = 1


class EmbeddedServer(uvicorn.Server):
    def capture_signals(self):  # we own SIGINT/SIGTERM (see module docstring)
        return contextlib.nullcontext()


class EmbeddedWorker(WorkController):
    """A ``WorkController`` that announces itself ready like ``celery worker`` does.

    Only ``celery.apps.worker.Worker`` (the CLI worker, which we cannot use: it installs signal
    handlers) sends ``worker_ready``; start-up recovery (console/tasks.py) hangs on it.
    """

    def on_consumer_ready(self, consumer) -> None:
        signals.worker_ready.send(sender=consumer)
        logger.debug("%s ready", self.hostname)


class EmbeddedConsole:
    def __init__(self, host: str, port: int, worker_threads: int) -> None:
        self.host = host
        self.port = port
        self.worker = EmbeddedWorker(
            app=celery_app,
            pool="threads",
            concurrency=worker_threads,
            hostname=f"embedded-{os.getpid()}@{socket.gethostname()}",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel="WARNING",
        )
        self.worker_thread = threading.Thread(
            target=self.worker.start, name="celery-worker", daemon=True
        )
        self.beat = BeatService(
            celery_app,
            schedule_filename=settings.CELERY_BEAT_SCHEDULE_FILENAME,
            max_interval=BEAT_MAX_INTERVAL,
        )
        self.beat_thread = threading.Thread(target=self.beat.start, name="celery-beat", daemon=True)
        self.loop = asyncio.new_event_loop()
        self.server = EmbeddedServer(
            uvicorn.Config(
                "console.asgi:application",
                host=host,
                port=port,
                lifespan="off",
                ws="websockets-sansio",
                loop="none",
                timeout_graceful_shutdown=SERVER_SHUTDOWN_TIMEOUT,
                log_level="warning",
                access_log=False,
            )
        )
        self._stopping = threading.Event()

    # --- shutdown: worker first (pushes still work), then the server; a 2nd signal forces it.
    def _stop_worker(self) -> None:
        started = time.monotonic()
        self.beat.stop(wait=False)
        # Set before joining: a worker that starts after a very early signal stops at once.
        worker_state.should_stop = 0
        if self.worker_thread.ident is None:  # the signal came before the threads started
            return
        self.worker_thread.join(WORKER_STOP_TIMEOUT)
        if self.worker_thread.is_alive():
            worker_state.should_terminate = 0
            self.worker_thread.join(WORKER_TERMINATE_TIMEOUT)
        # Beat wakes within BEAT_MAX_INTERVAL and then saves its schedule file: give it that long
        # from the stop, not more (it is a daemon thread; the schedule is only a cache).
        if self.beat_thread.ident is not None:
            self.beat_thread.join(max(0.0, BEAT_MAX_INTERVAL + 0.5 - (time.monotonic() - started)))

    def _shutdown(self) -> None:
        self._stop_worker()
        self.server.should_exit = True

    def _on_signal(self, signum, frame) -> None:
        if self._stopping.is_set():
            self.server.force_exit = True
            self.server.should_exit = True
            return
        self._stopping.set()
        print("Steward is stopping…", file=sys.stderr, flush=True)
        threading.Thread(target=self._shutdown, name="steward-shutdown", daemon=True).start()

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        asyncio.set_event_loop(self.loop)
        push.set_server_loop(self.loop)
        self.worker_thread.start()
        self.beat_thread.start()
        try:
            self.loop.run_until_complete(self.server.serve())
        except SystemExit:
            # uvicorn exits this way when it cannot listen (e.g. the port is taken).
            logger.error("the console could not listen on %s:%s", self.host, self.port)
        finally:
            push.set_server_loop(None)
        if not self._stopping.is_set():
            # The server ended on its own: stop the worker too (its threads are non-daemon).
            self._stopping.set()
            self._stop_worker()
        if self.worker_thread.is_alive():
            logger.warning("the Celery worker did not stop in time; exiting anyway")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(3)
        return 0 if self.server.started else 1
