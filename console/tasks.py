"""Console Celery tasks: the runtime check, and start-up recovery of queued work."""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import timedelta

from celery import shared_task
from celery.signals import worker_init, worker_ready
from django import db
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from console import recovery
from console.models import RuntimeCheck
from console.push import group_name, push

# Long enough for a browser that just opened the check page to see the steps arrive live.
STEP_DELAY = 0.3


def runtime_check_group(check_id: int) -> str:
    return group_name("runtime-check", check_id)


def _publish(check: RuntimeCheck, text: str) -> None:
    push(
        runtime_check_group(check.pk),
        {
            "type": "check.event",
            "status": check.status,
            "step": check.steps_done,
            "total": check.steps_total,
            "text": text,
            "worker": check.worker,
        },
    )


# The Celery node this process runs (``celery@host``, ``embedded-<pid>@host``), from
# ``worker_init``: the threads pool reports only the machine's name in ``task.request.hostname``.
_worker_nodename: str | None = None


@worker_init.connect
def _remember_worker_nodename(sender=None, **kwargs) -> None:
    global _worker_nodename
    _worker_nodename = getattr(sender, "hostname", None)


def _worker_name() -> str:
    """Which worker ran a task: its Celery node name, process and thread, so the System
    Information page shows where work really ran."""
    name = _worker_nodename or socket.gethostname()
    return f"{name} (pid {os.getpid()}, {threading.current_thread().name})"


@shared_task(name="console.run_runtime_check")
def run_runtime_check(check_id: int) -> str:
    # Claim: only one task may move the row from queued to running (duplicates do nothing).
    worker = _worker_name()
    claimed = RuntimeCheck.objects.filter(pk=check_id, status=RuntimeCheck.Status.QUEUED).update(
        status=RuntimeCheck.Status.RUNNING, started_at=timezone.now(), worker=worker
    )
    if not claimed:
        return "not claimed"
    check = RuntimeCheck.objects.get(pk=check_id)
    _publish(check, f"Picked up by worker {worker}")
    for step in range(1, check.steps_total + 1):
        time.sleep(STEP_DELAY)
        RuntimeCheck.objects.filter(pk=check_id).update(steps_done=step)
        check.steps_done = step
        _publish(check, f"Step {step} of {check.steps_total} done")
    RuntimeCheck.objects.filter(pk=check_id).update(
        status=RuntimeCheck.Status.DONE, finished_at=timezone.now()
    )
    check.status = RuntimeCheck.Status.DONE
    _publish(check, "Runtime check finished: the worker reached this browser.")
    return "done"


def request_runtime_check(user) -> RuntimeCheck:
    """Create the row, then enqueue once the transaction commits (the row is the truth)."""
    with transaction.atomic():
        check = RuntimeCheck.objects.create(requested_by=user if user.is_authenticated else None)
        transaction.on_commit(lambda: run_runtime_check.delay(check.pk))
    return check


@recovery.register("runtime checks")
def recover_runtime_checks() -> int:
    """Queued checks are enqueued again; running ones were cut off and are marked interrupted.

    In the embedded process nothing else can be running one. With several worker processes,
    only checks running far longer than a check ever takes are taken as cut off; duplicates
    of a re-enqueued check are harmless (the claim lets one through).
    """
    running = RuntimeCheck.objects.filter(status=RuntimeCheck.Status.RUNNING)
    if settings.STEWARD_SCALED:
        running = running.filter(started_at__lt=timezone.now() - timedelta(minutes=2))
    interrupted = running.update(status=RuntimeCheck.Status.INTERRUPTED, finished_at=timezone.now())
    queued = list(
        RuntimeCheck.objects.filter(status=RuntimeCheck.Status.QUEUED).values_list("pk", flat=True)
    )
    for pk in queued:
        run_runtime_check.delay(pk)
    return interrupted + len(queued)


@worker_ready.connect
def _recover_on_worker_ready(**kwargs) -> None:
    # Sent by `celery worker` and by the embedded worker (console/embedded.py), in the thread
    # that then consumes tasks: leave no database connection open behind.
    try:
        recovery.recover_all()
    finally:
        db.connections.close_all()
