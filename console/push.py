"""One helper to push messages from worker code to browsers through the channel layer.

Measured (RUNTIME-NOTES): ``async_to_sync(group_send)`` from a worker thread costs 50–500 ms
per message in the embedded process and opens a Redis connection per call in a worker process.
So:

* embedded process (``runconsole``): the coroutine is handed to the ASGI server's event loop
  (``set_server_loop`` is called at start-up);
* any other process (scaled worker, beat, management commands): one long-lived event loop per
  process, in a daemon thread, started on first use.

Pushes are best effort: whatever is pushed is also stored, and browsers catch up by offset.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
from typing import Any

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

PUSH_TIMEOUT = 5.0
_WAIT_SLICE = 0.1

_server_loop: asyncio.AbstractEventLoop | None = None
_bg_loop: asyncio.AbstractEventLoop | None = None
_bg_pid: int | None = None
_bg_lock = threading.Lock()


def set_server_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    """Called by the embedded server: pushes from worker threads go through this loop."""
    global _server_loop
    _server_loop = loop


def _background_loop() -> asyncio.AbstractEventLoop:
    """This process's push loop, started on first use. A forked child (e.g. a prefork pool)
    inherits the loop object but not its thread, so it gets its own."""
    global _bg_loop, _bg_pid
    with _bg_lock:
        if _bg_loop is None or _bg_loop.is_closed() or _bg_pid != os.getpid():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="steward-push-loop", daemon=True
            )
            thread.start()
            _bg_loop, _bg_pid = loop, os.getpid()
        return _bg_loop


def _target_loop() -> asyncio.AbstractEventLoop | None:
    loop = _server_loop
    if loop is not None:
        # Skipped when the server loop has stopped: a push must never block shutdown.
        return loop if loop.is_running() else None
    return _background_loop()


def push(group: str, message: dict[str, Any]) -> bool:
    """Send ``message`` to every consumer in ``group``. Returns False if it could not be sent.

    Call from synchronous code (Celery tasks, services). Never raises, never waits more than
    ``PUSH_TIMEOUT`` seconds, and gives up at once when the target loop stops meanwhile.
    """
    loop = _target_loop()
    if loop is None:
        return False
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    layer = get_channel_layer()
    coro = layer.group_send(group, message)
    try:
        future = asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError:  # the loop was closed between the check and now
        coro.close()
        return False
    if running is loop:
        # Called from the loop's own thread (e.g. an async view): do not wait on ourselves.
        return True
    deadline = time.monotonic() + PUSH_TIMEOUT
    while True:
        try:
            future.result(timeout=_WAIT_SLICE)
            return True
        except concurrent.futures.TimeoutError:
            # A stopped loop never runs the coroutine: do not sit out the whole timeout.
            if not loop.is_running() or time.monotonic() >= deadline:
                future.cancel()
                logger.warning("push to %s dropped: its event loop stopped or is stuck", group)
                return False
        except Exception:  # noqa: BLE001 - a lost push is recovered by offset replay
            logger.warning("push to %s failed", group, exc_info=True)
            return False


async def apush(group: str, message: dict[str, Any]) -> None:
    """The same from async code (consumers)."""
    await get_channel_layer().group_send(group, message)


def group_name(family: str, object_id: int | str | None = None, topic: str | None = None) -> str:
    """Channel-layer group names come from here only: ``build-42-log``, ``node-7-log``, ``executors``."""
    parts = [family]
    if object_id is not None:
        parts.append(str(object_id))
    if topic:
        parts.append(topic)
    return "-".join(parts)
