"""Celery tasks of nodes: launching agents (with retries), the retention sweep, start-up
recovery. Tasks take ids, reload the row, and act only if the row still says so."""

from __future__ import annotations

import logging
import traceback

from celery import shared_task
from celery.worker import state as worker_state
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from console import recovery
from nodes import services
from nodes.connections import pool
from nodes.launchers import LaunchCancelled, LaunchError, launcher_for
from nodes.launchlog import LaunchLog
from nodes.models import Node

logger = logging.getLogger(__name__)

Connection = Node.Connection


def _cancel_requested(node_id: int) -> bool:
    if worker_state.should_stop is not None or worker_state.should_terminate is not None:
        return True
    return Node.objects.filter(
        Q(launch_cancel_requested=True) | ~Q(connection=Connection.CONNECTING), pk=node_id
    ).exists()


@shared_task(name="nodes.launch_agent")
def launch_agent(node_id: int, launch_number: int, attempt: int = 1) -> str:
    node = Node.objects.filter(pk=node_id).first()
    if (
        node is None
        or node.launch_number != launch_number
        or node.connection != Connection.CONNECTING
    ):
        return "stale"
    if node.launch_cancel_requested:
        services.launch_failed(
            node_id, launch_number, "Launching agent process aborted.", cancelled=True
        )
        return "cancelled"
    launcher = launcher_for(node)
    log = LaunchLog(node, launch_number, append=attempt > 1)
    if attempt == 1:
        log.raw(launcher.describe(node))
    try:
        result = launcher.launch(node, log, lambda: _cancel_requested(node_id))
    except LaunchCancelled as exc:
        log.raw("The agent launch was canceled")
        log.close()
        services.launch_failed(node_id, launch_number, str(exc), cancelled=True)
        return "cancelled"
    except LaunchError as exc:
        return _after_failure(node, launch_number, attempt, launcher, log, str(exc), exc.retry)
    except Exception as exc:  # a bug must still leave a clear cause, never a stuck "connecting"
        logger.exception("launch of node %s failed unexpectedly", node_id)
        log.raw("Unexpected error in launching an agent. This is probably a bug in Steward")
        log.raw("".join(traceback.format_exception_only(type(exc), exc)).strip())
        log.close()
        services.launch_failed(node_id, launch_number, f"Unexpected error: {exc}")
        return "error"
    result.connection.launch_number = launch_number
    pool.put(node_id, result.connection)
    log.flush()  # whoever sees the node online can read how it got there
    if not services.launch_succeeded(node_id, launch_number, result.agent_info):
        # Cancelled or superseded while we were finishing: do not leave it half online.
        pool.discard(node_id)
        log.raw("The agent launch was canceled")
        log.close()
        return "superseded"
    log.close()
    from nodes.monitors import monitor_node

    monitor_node.delay(node_id)
    return "online"


def _after_failure(node, launch_number, attempt, launcher, log, cause, retryable) -> str:
    max_retries, wait = launcher.retries(node)
    if retryable and attempt <= max_retries and not _cancel_requested(node.pk):
        left = max_retries - attempt
        log.raw(
            f'Launch failed: "{cause}", retrying in {wait} seconds. '
            f"There are {left} more retries left."
        )
        log.close(complete=False)
        if services.launch_retry_scheduled(node.pk, launch_number, attempt + 1, wait, cause):
            launch_agent.apply_async((node.pk, launch_number, attempt + 1), countdown=wait)
        return "retry"
    log.raw(f"ERROR: {cause}")
    log.line("Launch failed")
    log.close()
    services.launch_failed(node.pk, launch_number, cause)
    return "failed"


@shared_task(name="nodes.retention_sweep")
def retention_sweep() -> int:
    """Keep-online nodes are relaunched when their back-off has passed; idle demand nodes go
    offline; launches whose task was lost (worker died, broker restarted) are failed."""
    now = timezone.now()
    launched = 0
    # A launch that should have retried long ago lost its task: fail it so it can start again.
    lost_after = now - timezone.timedelta(minutes=2)
    for node in Node.objects.filter(
        connection=Connection.CONNECTING, next_launch_at__lt=lost_after
    ):
        services.launch_failed(node.pk, node.launch_number, "The launch was interrupted")
    candidates = Node.objects.filter(
        retention=Node.Retention.ALWAYS,
        connection__in=[Connection.DISCONNECTED, Connection.FAILED],
        hold_off_launch=False,
    ).filter(Q(next_launch_at__isnull=True) | Q(next_launch_at__lte=now))
    for node in candidates:
        try:
            services.request_launch(node, reason="Attempting to reconnect")
            launched += 1
        except services.NodeError:
            pass
    services.take_idle_demand_nodes_offline(now)
    return launched


@recovery.register("nodes")
def recover_nodes() -> int:
    """After a controller restart: nodes that were online or launching are launched again.

    In the embedded process every connection died with the old process. With separate worker
    processes, connections of other workers are alive; only stale launches are failed (by the
    retention sweep) so they relaunch.
    """
    services.ensure_builtin_node()
    if settings.STEWARD_SCALED:
        return 0
    count = 0
    for node in Node.objects.filter(connection__in=[Connection.CONNECTED, Connection.CONNECTING]):
        Node.objects.filter(pk=node.pk).update(
            connection=Connection.DISCONNECTED,
            connection_cause="Steward was restarted",
            connection_changed_at=timezone.now(),
            next_launch_at=None,
        )
        if node.retention == Node.Retention.ALWAYS or node.is_builtin:
            try:
                services.request_launch(node, reason="Relaunching after a restart")
                count += 1
            except services.NodeError:
                pass
    # The built-in node is always brought up.
    builtin = Node.objects.get(is_builtin=True)
    if builtin.connection in (Connection.DISCONNECTED, Connection.FAILED):
        try:
            services.request_launch(builtin, reason="Starting the built-in node")
            count += 1
        except services.NodeError:
            pass
    # "Keep online" nodes that were already down (their connection broke before the stop) are
    # due now too, not at the first retention sweep a minute later.
    return count + retention_sweep()
