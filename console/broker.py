"""The embedded broker: kombu's ``memory://`` transport, waking the worker's loop more often.

Celery's blocking consumer loop (used for transports without an event loop, such as memory)
drains the broker with a 2 s timeout and only checks for shutdown between drains, so a warm
stop waited up to 2 s doing nothing. Capping each drain keeps Ctrl-C well under 5 s; polling
for messages is unchanged (``polling_interval``).
"""

from __future__ import annotations

from kombu.transport import memory

MAX_DRAIN_SECONDS = 0.25


class MemoryTransport(memory.Transport):
    """``memory://`` with drains of at most ``MAX_DRAIN_SECONDS`` (messages stay process-wide)."""

    def drain_events(self, connection, timeout: float | None = None):
        if timeout is not None:
            timeout = min(timeout, MAX_DRAIN_SECONDS)
        return super().drain_events(connection, timeout=timeout)
