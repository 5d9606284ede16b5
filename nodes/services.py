"""State changes of nodes: one function per decision, called by views, tasks, the admin and
commands alike. Every change of connection or availability is a conditional UPDATE on the row
(the row is the truth), followed — after commit — by a push to browsers."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from console.push import group_name, push
from nodes.models import BUILT_IN_NAME, Node

logger = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS = 15
BACKOFF_CAP_SECONDS = 10 * 60

Connection = Node.Connection
Offline = Node.Offline


class NodeError(Exception):
    """An action that cannot be done now; the message is shown to the user as is."""


# --- lookups ---------------------------------------------------------------------------------


def get_node(url_name: str) -> Node:
    if url_name in (BUILT_IN_NAME, "(master)"):
        return ensure_builtin_node()
    return Node.objects.get(name=url_name)


def ensure_builtin_node() -> Node:
    """The Built-In Node always exists (2 executors by default), like Jenkins' controller."""
    node = Node.objects.filter(is_builtin=True).first()
    if node is None:
        node, _ = Node.objects.get_or_create(
            is_builtin=True,
            defaults={
                "name": BUILT_IN_NAME,
                "num_executors": 2,
                "remote_fs": str(settings.STEWARD_HOME),
                "launcher": "builtin",
                "description": "the Steward controller's built-in node",
            },
        )
    return node


# --- pushing state to browsers ----------------------------------------------------------------


def node_group(node_id: int) -> str:
    return group_name("node", node_id)


NODES_GROUP = "nodes"


def announce(node_id: int, event: str = "state") -> None:
    """After commit: tell node pages and the Nodes list that this node changed."""

    def send() -> None:
        message = {"type": "node.changed", "node": node_id, "event": event}
        push(node_group(node_id), message)
        push(NODES_GROUP, message)

    transaction.on_commit(send)


def _set(node_id: int, condition: Q | None = None, **fields) -> bool:
    qs = Node.objects.filter(pk=node_id)
    if condition is not None:
        qs = qs.filter(condition)
    changed = qs.update(**fields) == 1
    if changed:
        announce(node_id)
    return changed


# --- launching --------------------------------------------------------------------------------


def request_launch(node: Node, *, reason: str = "") -> int:
    """Claim the node for a launch; returns the launch number. Raises NodeError when the node
    is already connecting or connected (launching twice at once is impossible)."""
    from nodes.tasks import launch_agent

    now = timezone.now()
    with transaction.atomic():
        claimed = Node.objects.filter(
            pk=node.pk, connection__in=[Connection.DISCONNECTED, Connection.FAILED]
        ).update(
            connection=Connection.CONNECTING,
            connection_cause=reason or "Launching agent",
            connection_changed_at=now,
            launch_number=F("launch_number") + 1,
            launch_attempt=1,
            launch_cancel_requested=False,
            next_launch_at=None,
            hold_off_launch=False,
        )
        if not claimed:
            current = Node.objects.filter(pk=node.pk).values_list("connection", flat=True).first()
            if current == Connection.CONNECTING:
                raise NodeError("This node is being launched. See log for more details")
            if current == Connection.CONNECTED:
                raise NodeError(
                    "The Agent is connected, disconnect it before to try to connect it again."
                )
            raise NodeError("This node no longer exists.")
        number = Node.objects.values_list("launch_number", flat=True).get(pk=node.pk)
        announce(node.pk, "launch")
        transaction.on_commit(lambda: launch_agent.delay(node.pk, number, 1))
    node.refresh_from_db()
    return number


def cancel_launch(node: Node) -> bool:
    """Stop a launch: one waiting to retry stops at once; a running one at its next step."""
    node.refresh_from_db()
    if node.connection != Connection.CONNECTING:
        return False
    if node.next_launch_at is not None:
        return launch_failed(
            node.pk, node.launch_number, "Launching agent process aborted.", cancelled=True
        )
    return _set(node.pk, Q(connection=Connection.CONNECTING), launch_cancel_requested=True)


def backoff_seconds(consecutive_failures: int) -> int:
    """Growing back-off between relaunch cycles: 15 s, 30 s, 1 min … capped at 10 min."""
    exponent = max(0, consecutive_failures - 1)
    return min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * (2 ** min(exponent, 16)))


# Functions other apps register to hear that a node may take work now (the builds app runs its
# scheduler: "node online" is one of the events that can start a queued build).
online_listeners: list = []


def _announce_online(node_id: int) -> None:
    for listener in online_listeners:
        transaction.on_commit(lambda listener=listener: listener(node_id))


def launch_succeeded(node_id: int, launch_number: int, agent_info: dict) -> bool:
    now = timezone.now()
    changed = _set(
        node_id,
        Q(launch_number=launch_number, connection=Connection.CONNECTING),
        connection=Connection.CONNECTED,
        connection_cause="Agent successfully connected and online",
        connection_changed_at=now,
        connected_at=now,
        agent_info=agent_info,
        was_online=True,
        launch_attempt=0,
        consecutive_failures=0,
        next_launch_at=None,
        response_timeouts=0,
        idle_since=now,
    )
    if changed:
        _announce_online(node_id)
    return changed


def launch_retry_scheduled(
    node_id: int, launch_number: int, attempt: int, wait: int, cause: str
) -> bool:
    return _set(
        node_id,
        Q(launch_number=launch_number, connection=Connection.CONNECTING),
        launch_attempt=attempt,
        connection_cause=cause,
        next_launch_at=timezone.now() + timedelta(seconds=wait),
    )


def launch_failed(node_id: int, launch_number: int, cause: str, *, cancelled: bool = False) -> bool:
    """The launch gave up. "Keep online" nodes get a next attempt after a growing back-off."""
    node = Node.objects.filter(pk=node_id).first()
    if node is None:
        return False
    failures = node.consecutive_failures + (0 if cancelled else 1)
    next_at = None
    if not cancelled and node.retention == Node.Retention.ALWAYS:
        next_at = timezone.now() + timedelta(seconds=backoff_seconds(failures))
    return _set(
        node_id,
        Q(launch_number=launch_number, connection=Connection.CONNECTING),
        connection=Connection.DISCONNECTED if cancelled else Connection.FAILED,
        connection_cause=cause,
        connection_changed_at=timezone.now(),
        consecutive_failures=failures,
        next_launch_at=next_at,
        launch_cancel_requested=False,
    )


def connection_lost(node_id: int, cause: str) -> bool:
    """The agent connection broke ("Connection was broken: …"); retention decides what next."""
    node = Node.objects.filter(pk=node_id).first()
    if node is None:
        return False
    next_at = timezone.now() if node.retention == Node.Retention.ALWAYS else None
    changed = _set(
        node_id,
        Q(connection=Connection.CONNECTED),
        connection=Connection.DISCONNECTED,
        connection_cause=f"Connection was broken: {cause}",
        connection_changed_at=timezone.now(),
        next_launch_at=next_at,
    )
    if changed:
        from nodes.connections import pool

        pool.discard(node_id)
    return changed


def disconnect(node: Node, user=None, message: str = "") -> bool:
    """Close the agent connection (Jenkins' Disconnect). Retention may relaunch it later."""
    from nodes.connections import pool

    who = user.get_username() if user is not None and user.is_authenticated else "SYSTEM"
    cause = f"Disconnected by {who}" + (f" : {message}" if message else "")
    now = timezone.now()
    changed = _set(
        node.pk,
        Q(connection__in=[Connection.CONNECTED, Connection.CONNECTING, Connection.FAILED]),
        connection=Connection.DISCONNECTED,
        connection_cause=cause,
        connection_changed_at=now,
        launch_cancel_requested=True,
        # A user's disconnect is not a failure: "keep online" relaunches after the first back-off.
        next_launch_at=now + timedelta(seconds=backoff_seconds(1))
        if node.retention == Node.Retention.ALWAYS
        else None,
    )
    pool.discard(node.pk)
    return changed


# --- availability -----------------------------------------------------------------------------


def mark_offline(node: Node, user, message: str = "") -> bool:
    """Mark this node temporarily offline (a user's decision; running builds finish)."""
    return _set(
        node.pk,
        None,
        offline=Offline.USER,
        offline_message=message.strip(),
        offline_by=user if user is not None and user.is_authenticated else None,
        offline_at=timezone.now(),
    )


def update_offline_reason(node: Node, user, message: str) -> bool:
    return _set(node.pk, Q(offline=Offline.USER), offline_message=message.strip(), offline_by=user)


def bring_online(node: Node) -> bool:
    """Bring this node back online: clears a temporary offline mark, whoever set it."""
    changed = _set(
        node.pk,
        ~Q(offline=Offline.NONE),
        offline=Offline.NONE,
        offline_message="",
        offline_by=None,
        offline_at=None,
    )
    if changed:
        _announce_online(node.pk)
    return changed


def monitor_offline(node_id: int, message: str) -> bool:
    """A monitor takes the node offline — only if nobody else did (so recovery is ours)."""
    return _set(
        node_id,
        Q(offline=Offline.NONE),
        offline=Offline.MONITOR,
        offline_message=message,
        offline_by=None,
        offline_at=timezone.now(),
    )


def monitor_recovered(node_id: int) -> bool:
    """Back online automatically, only if this monitor's mark is still the cause."""
    changed = _set(
        node_id,
        Q(offline=Offline.MONITOR),
        offline=Offline.NONE,
        offline_message="",
        offline_at=None,
    )
    if changed:
        _announce_online(node_id)
    return changed


def offline_cause_text(node: Node) -> str:
    """The availability fact in words, Jenkins style."""
    if node.offline == Offline.USER:
        who = node.offline_by.get_username() if node.offline_by_id else "SYSTEM"
        return f"Disconnected by {who}" + (
            f" : {node.offline_message}" if node.offline_message else ""
        )
    if node.offline in (Offline.MONITOR, Offline.IDLE):
        return node.offline_message
    return ""


def delete_node(node: Node) -> None:
    from nodes.connections import pool

    if node.is_builtin:
        raise NodeError("The built-in node cannot be deleted.")
    pool.discard(node.pk)
    node_id = node.pk
    node.delete()
    transaction.on_commit(
        lambda: push(NODES_GROUP, {"type": "node.changed", "node": node_id, "event": "deleted"})
    )


# --- demand retention -------------------------------------------------------------------------

IDLE_CAUSE = "Offline because computer was idle; it will be relaunched when needed."

# Functions other apps register to say how many executors of a node are busy (builds will).
busy_counters: list = []


def busy_executors(node: Node) -> int:
    return sum(counter(node) for counter in busy_counters)


def request_demand(node: Node) -> bool:
    """Work waits for this node (the builds app calls this). A "demand" node that is offline
    is launched once the demand has lasted its In demand delay. Returns True if launched."""
    if node.retention != Node.Retention.DEMAND:
        return False
    now = timezone.now()
    Node.objects.filter(pk=node.pk, demand_since__isnull=True).update(demand_since=now)
    node.refresh_from_db()
    if node.connection not in (Connection.DISCONNECTED, Connection.FAILED):
        return False
    if node.demand_since and now - node.demand_since < timedelta(minutes=node.in_demand_delay):
        return False
    if node.offline == Offline.IDLE:
        _set(node.pk, Q(offline=Offline.IDLE), offline=Offline.NONE, offline_message="")
    try:
        request_launch(node, reason="Launching because work is waiting for this node")
    except NodeError:
        return False
    Node.objects.filter(pk=node.pk).update(demand_since=None)
    return True


def take_idle_demand_nodes_offline(now=None) -> int:
    """Demand nodes idle for their Idle delay are disconnected (and relaunched when needed)."""
    now = now or timezone.now()
    count = 0
    for node in Node.objects.filter(
        retention=Node.Retention.DEMAND, connection=Connection.CONNECTED
    ):
        if busy_executors(node):
            Node.objects.filter(pk=node.pk).update(idle_since=now)
            continue
        idle_since = node.idle_since or node.connected_at or now
        if now - idle_since >= timedelta(minutes=max(1, node.idle_delay)):
            from nodes.connections import pool

            if _set(
                node.pk,
                Q(connection=Connection.CONNECTED),
                connection=Connection.DISCONNECTED,
                connection_cause=IDLE_CAUSE,
                connection_changed_at=now,
                offline=Offline.IDLE,
                offline_message=IDLE_CAUSE,
                offline_at=now,
            ):
                pool.discard(node.pk)
                count += 1
    return count


def busy_executors_by_node(nodes: list[Node]) -> dict[int, int]:
    """Busy executors of each of ``nodes`` (the Nodes list). A counter with a ``bulk``
    attribute (``bulk(nodes) -> {node_id: busy}``) answers for all of them in one query, so
    the list's number of queries does not grow with the nodes shown."""
    counts = {node.pk: 0 for node in nodes}
    for counter in busy_counters:
        bulk = getattr(counter, "bulk", None)
        if bulk is not None:
            for node_id, busy in bulk(nodes).items():
                if node_id in counts:
                    counts[node_id] += busy
        else:
            for node in nodes:
                counts[node.pk] += counter(node)
    return counts
