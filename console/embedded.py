"""The embedded default: one process serving the console (uvicorn, ASGI) with a Celery worker
(threads pool, ``memory://`` broker) and Celery beat in threads of the same process.

Measured recipe and traps (RUNTIME-NOTES 2(i)): the worker is a ``WorkController`` (``app.Worker``
installs signal handlers, main thread only); uvicorn must not capture signals (it would re-raise
them after shutdown); on SIGINT/SIGTERM the worker stops first, while the server loop still runs
so the last pushes from tasks get through, then the server; a worker thread that does not end
in time is abandoned with ``os._exit`` because ThreadPoolExecutor threads are non-daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading

import uvicorn
from celery.beat import Service as BeatService
from celery.worker import WorkController
from celery.worker import state as worker_state
from django.conf import settings

from console import push
from console.celery import app as celery_app

logger = logging.getLogger(__name__)

WORKER_STOP_TIMEOUT = 3.0


class EmbeddedServer(uvicorn.Server):
    def capture_signals(self):  # we own SIGINT/SIGTERM (see module docstring)
        return contextlib.nullcontext()


class EmbeddedConsole:
    def __init__(self, host: str, port: int, worker_threads: int) -> None:
        self.host = host
        self.port = port
        self.worker = WorkController(
            app=celery_app,
            pool="threads",
            concurrency=worker_threads,
            hostname=f"embedded-{os.getpid()}@{host}",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel="WARNING",
        )
        self.worker_thread = threading.Thread(
            target=self.worker.start, name="celery-worker", daemon=True
        )
        self.beat = BeatService(
            celery_app, schedule_filename=settings.CELERY_BEAT_SCHEDULE_FILENAME, max_interval=5
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
                timeout_graceful_shutdown=2,
                log_level="warning",
                access_log=False,
            )
        )
        self._stopping = threading.Event()

    # --- shutdown: worker first (pushes still work), then the server; a 2nd signal forces it.
    def _stop_worker(self) -> None:
        self.beat.stop(wait=False)
        worker_state.should_stop = 0
        self.worker_thread.join(WORKER_STOP_TIMEOUT)
        if self.worker_thread.is_alive():
            worker_state.should_terminate = 0
            self.worker_thread.join(1.0)

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
        finally:
            push.set_server_loop(None)
        if not self._stopping.is_set():
            # The server ended on its own (e.g. the port was taken): stop the worker too.
            self._stop_worker()
        if self.worker_thread.is_alive():
            logger.warning("the Celery worker did not stop in time; exiting anyway")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(3)
        return 0 if self.server.started else 1
