"""Start-up recovery: work that was queued or running when the controller stopped.

A broker restart (or the embedded process stopping) can lose queued Celery messages, so the
database row is the truth. Each app registers a function here; ``recover_all`` runs them once
when a worker starts: queued work is enqueued again, interrupted work is marked so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

_hooks: list[tuple[str, Callable[[], int]]] = []

# Tests that run a worker inside the test process turn this off: there is nothing to recover,
# and recovery would start launching the built-in node behind the test's back.
enabled = True


def register(name: str):
    """Decorator: ``@recovery.register("runtime checks")`` on a function returning a count."""

    def decorate(func: Callable[[], int]) -> Callable[[], int]:
        if all(existing != name for existing, _ in _hooks):
            _hooks.append((name, func))
        return func

    return decorate


def recover_all() -> dict[str, int]:
    results: dict[str, int] = {}
    if not enabled:
        return results
    for name, func in _hooks:
        try:
            results[name] = func()
        except Exception:  # one app's failure must not stop the others' recovery
            logger.exception("start-up recovery of %s failed", name)
            results[name] = -1
    if any(results.values()):
        logger.info("start-up recovery: %s", results)
    return results
