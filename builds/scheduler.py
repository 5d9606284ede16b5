"""The scheduling decision: which queued item starts on which free executor, and why the rest wait.

A pure function over plain frozen dataclasses (no Django); the builds app maps its rows to them.

Rules, in the order they are applied to each item (items are taken first-in first-out by due
time, then id; JENKINS.md d1, d2, d4, d7):

1. An expression that does not parse can never run: "Invalid label expression: …" (blocked).
2. An item whose quiet period has not ended waits: "In the quiet period. Expires in 4.9 sec".
3. A job that does not allow concurrent builds waits while a build of it runs: "Build #7 is
   already in progress" (+ " (ETA: 1 min 3 sec)" when the running build's estimate says how
   long is left), or, when an earlier item of the same job was just assigned in this very
   decision and has no build number yet, Jenkins' generic "A build is already in progress".
   Both are blocked.
4. Otherwise the item may start on a node that is online, accepting tasks, has an executor
   that is free and not yet given away in this decision, and whose labels satisfy the item's
   label expression. An item without an expression may use only NORMAL nodes: EXCLUSIVE nodes
   take only jobs whose expression matches them. Among those nodes the one that built the job
   last wins (warm workspace); otherwise the first met on a consistent-hash ring keyed by the
   job name (Jenkins' LoadBalancer.CONSISTENT_HASH), so a job sticks to the same node. The
   executor is the lowest free slot number.
5. An item that cannot start gets the first of these that applies, as Jenkins'
   BuildableItem.getCauseOfBlockage does:
   - with an expression that no node satisfies: "There are no nodes with the label ‘x’";
   - when every node that satisfies it is offline: "‘n1’ is offline" for a single node, else
     "All nodes of label ‘x’ are offline";
   - when idle executors exist (on nodes that satisfy the expression, or anywhere for an item
     without one) but none may take the item: each such node's reason, unique, sorted and
     joined by "; " (at most five, then "; ... and N more"): "‘n1’ is not accepting tasks",
     "‘n2’ doesn’t have label ‘x’", "‘n3’ is reserved for jobs with matching label expression";
   - otherwise the nodes are busy: "Waiting for next available executor on ‘x’", on ‘n1’ when
     exactly one node satisfies the expression, or "Waiting for next available executor"
     without an expression.
   Such an item puts every node that could run it if it were online into `demand`; the caller
   passes those to nodes.services.request_demand, which decides by the node's retention
   strategy whether to launch it.

"Offline" is Jenkins' Computer.isOffline: disconnected, launching, or temporarily offline; a node
that is connected but not accepting tasks is not offline (its idle executors explain the wait
instead). A node with no executors counts as offline too, as in Jenkins where it has no computer.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from builds.labels import LabelAtom, LabelExpression, LabelExpressionError, parse_label_expression

__all__ = [
    "EXCLUSIVE",
    "LAUNCHING",
    "NORMAL",
    "NOT_ACCEPTING",
    "OFFLINE",
    "TEMPORARILY_OFFLINE",
    "Assignment",
    "Decision",
    "NodeState",
    "QueueItemState",
    "consistent_hash_order",
    "decide",
    "format_duration",
]

# Node usage modes (the values of nodes.models.Node.Mode).
NORMAL = "NORMAL"
EXCLUSIVE = "EXCLUSIVE"
Mode = Literal["NORMAL", "EXCLUSIVE"]

# Why a node is not online.
OFFLINE = "offline"
TEMPORARILY_OFFLINE = "temporarily offline"
NOT_ACCEPTING = "not accepting"
LAUNCHING = "launching"
OfflineReason = Literal["offline", "temporarily offline", "not accepting", "launching"]

# Jenkins' messages (JENKINS.md d2).
IN_QUIET_PERIOD = "In the quiet period. Expires in {0}"
BUILD_IN_PROGRESS = "Build #{0} is already in progress{1}"
BUILD_IN_PROGRESS_ETA = " (ETA: {0})"
A_BUILD_IN_PROGRESS = "A build is already in progress"
WAITING_ON = "Waiting for next available executor on ‘{0}’"
WAITING = "Waiting for next available executor"
LABEL_HAS_NO_NODES = "There are no nodes with the label ‘{0}’"
ALL_NODES_OFFLINE = "All nodes of label ‘{0}’ are offline"
NODE_OFFLINE = "‘{0}’ is offline"
NODE_NOT_ACCEPTING = "‘{0}’ is not accepting tasks"
NODE_RESERVED = "‘{0}’ is reserved for jobs with matching label expression"
NODE_LACKS_LABEL = "‘{0}’ doesn’t have label ‘{1}’"
INVALID_EXPRESSION = "Invalid label expression: {0}"

# Jenkins' CompositeCauseOfBlockage shows at most this many reasons (JENKINS-45927).
MAX_REASONS_SHOWN = 5

# Ring points per executor, as Jenkins' CONSISTENT_HASH (weight = executors × 100).
REPLICAS_PER_EXECUTOR = 100
_RING_SIZE = 1 << 64


@dataclass(frozen=True)
class NodeState:
    """One node as the scheduler sees it."""

    name: str
    display_name: str
    labels: frozenset[str]  # including the self label (the name, or `built-in`)
    num_executors: int
    free_executors: tuple[int, ...] = ()  # numbers of the executor slots that are free
    mode: Mode = NORMAL
    online: bool = True  # connected and accepting tasks
    offline_reason: OfflineReason | None = None
    is_builtin: bool = False

    @property
    def available(self) -> bool:
        """Online, accepting tasks and with executors: it may be given work."""
        return self.online and self.offline_reason is None and self.num_executors > 0

    @property
    def is_offline(self) -> bool:
        """Jenkins' Computer.isOffline (see the module docstring)."""
        if self.num_executors <= 0:
            return True
        return not self.available and self.offline_reason != NOT_ACCEPTING


@dataclass(frozen=True)
class QueueItemState:
    """One queued build request and the facts about its job the decision needs."""

    id: int
    job_name: str
    label_expression: str | None = None
    concurrent_build: bool = False
    due: float = 0.0  # end of the quiet period, epoch seconds
    in_queue_since: float = 0.0  # for the caller's display; FIFO order uses `due`, then `id`
    running_builds: tuple[int, ...] = ()  # numbers of the job's builds that are running
    running_since: float | None = None  # start (epoch seconds) of the newest running build
    last_built_on: str | None = None  # name of the node that built the job last
    estimated_duration: float | None = None  # seconds, from the job's recent builds


@dataclass(frozen=True)
class Assignment:
    item_id: int
    node_name: str
    executor_number: int


@dataclass
class Decision:
    """What to start now, and for every item left in the queue, why it waits."""

    assignments: list[Assignment] = field(default_factory=list)
    why: dict[int, str] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)
    # Offline nodes that could run waiting items, with those items' ids in queue order.
    demand: dict[str, list[int]] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Durations


_SECOND_MS = 1000
_MINUTE_MS = 60 * _SECOND_MS
_HOUR_MS = 60 * _MINUTE_MS
_DAY_MS = 24 * _HOUR_MS
_MONTH_MS = 30 * _DAY_MS
_YEAR_MS = 365 * _DAY_MS


def _day_label(days: int) -> str:
    return f"{days:,} {'day' if days == 1 else 'days'}"


def format_duration(seconds: float) -> str:
    """A duration in Jenkins' words (Util.getTimeSpanString): "4.9 sec", "2 min 3 sec", "3 hr".

    The biggest unit is followed by the next smaller one only while it is below 10.
    """
    ms = max(0, round(seconds * 1000))
    years, ms = divmod(ms, _YEAR_MS)
    months, ms = divmod(ms, _MONTH_MS)
    days, ms = divmod(ms, _DAY_MS)
    hours, ms = divmod(ms, _HOUR_MS)
    minutes, ms = divmod(ms, _MINUTE_MS)
    secs, ms = divmod(ms, _SECOND_MS)

    def pair(big: int, big_label: str, small_label: str) -> str:
        return f"{big_label} {small_label}" if big < 10 else big_label

    if years:
        return pair(years, f"{years:,} yr", f"{months} mo")
    if months:
        return pair(months, f"{months} mo", _day_label(days))
    if days:
        return pair(days, _day_label(days), f"{hours} hr")
    if hours:
        return pair(hours, f"{hours} hr", f"{minutes} min")
    if minutes:
        return pair(minutes, f"{minutes} min", f"{secs} sec")
    if secs >= 10:
        return f"{secs} sec"
    if secs >= 1:
        tenths = ms // 100  # Jenkins truncates to one decimal ("1.2 sec") and drops ".0"
        return f"{secs}.{tenths} sec" if tenths else f"{secs} sec"
    if ms >= 100:
        return f"0.{ms // 10:02d}".rstrip("0") + " sec"  # "0.23 sec", "0.1 sec"
    return f"{ms} ms"


# ---------------------------------------------------------------------------------------------
# Consistent hashing


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@lru_cache(maxsize=4096)
def _ring_points(name: str, weight: int) -> tuple[int, ...]:
    # Point i of a node does not depend on its weight, so adding an executor only adds points.
    count = max(weight, 1) * REPLICAS_PER_EXECUTOR
    return tuple(sorted(_hash(f"{name}\n{i}") for i in range(count)))


def consistent_hash_order(key: str, weights: Mapping[str, int]) -> list[str]:
    """Node names in the order met walking the hash ring clockwise from the key's point.

    Each node has `weight × 100` points on the ring. Adding a node moves only the keys whose
    walk now meets it first; everything else keeps its node.
    """
    start = _hash(key)

    def distance(name: str) -> tuple[int, str]:
        points = _ring_points(name, weights[name])
        i = bisect_left(points, start)
        nearest = points[i] if i < len(points) else points[0] + _RING_SIZE
        return nearest - start, name

    return sorted(weights, key=distance)


# ---------------------------------------------------------------------------------------------
# The decision


def _label_name(expression: LabelExpression) -> str:
    # Jenkins shows an atom by its name and an expression in its canonical form.
    return expression.name if isinstance(expression, LabelAtom) else str(expression)


def _may_run(expression: LabelExpression | None, node: NodeState) -> bool:
    """Labels and usage mode allow the item on this node (ignoring whether it is online)."""
    if expression is None:
        return node.mode != EXCLUSIVE
    return expression.matches(node.labels)


def _refusal(expression: LabelExpression | None, node: NodeState) -> str | None:
    """Why an idle executor of this node turns the item down (Jenkins' JobOffer order)."""
    if expression is not None and not expression.matches(node.labels):
        return NODE_LACKS_LABEL.format(node.display_name, _label_name(expression))
    if expression is None and node.mode == EXCLUSIVE:
        return NODE_RESERVED.format(node.display_name)
    if node.is_offline:
        return NODE_OFFLINE.format(node.display_name)
    if not node.available:
        return NODE_NOT_ACCEPTING.format(node.display_name)
    return None


def _composite(reasons: Iterable[str]) -> str:
    unique = sorted(set(reasons))
    shown = "; ".join(unique[:MAX_REASONS_SHOWN])
    if len(unique) > MAX_REASONS_SHOWN:
        shown += f"; ... and {len(unique) - MAX_REASONS_SHOWN} more"
    return shown


def _eta(item: QueueItemState, now: float) -> str:
    if item.estimated_duration is None or item.running_since is None:
        return ""
    remaining = item.estimated_duration - (now - item.running_since)
    if remaining <= 0:  # overdue: Jenkins would say "N/A", which tells nobody anything
        return ""
    return BUILD_IN_PROGRESS_ETA.format(format_duration(remaining))


def decide(items: Iterable[QueueItemState], nodes: Iterable[NodeState], now: float) -> Decision:
    """Assign queued items to free executors and explain every item left waiting.

    Pure and deterministic: the result depends only on the arguments, not on their order.
    See the module docstring for the rules.
    """
    queue = sorted(items, key=lambda item: (item.due, item.id))
    all_nodes = sorted(nodes, key=lambda node: node.name)
    if len({item.id for item in queue}) != len(queue):
        raise ValueError("queue item ids must be unique")
    if len({node.name for node in all_nodes}) != len(all_nodes):
        raise ValueError("node names must be unique")

    # Free slots still to give away in this decision, lowest number first.
    free: dict[str, list[int]] = {
        node.name: sorted(set(node.free_executors)) if node.num_executors > 0 else []
        for node in all_nodes
    }
    by_name = {node.name: node for node in all_nodes}
    parsed: dict[str, LabelExpression | None | LabelExpressionError] = {}
    started_jobs: set[str] = set()
    decision = Decision()

    for item in queue:
        text = item.label_expression
        key = text or ""
        if key not in parsed:
            try:
                parsed[key] = parse_label_expression(text)
            except LabelExpressionError as error:
                parsed[key] = error
        expression = parsed[key]
        if isinstance(expression, LabelExpressionError):
            decision.why[item.id] = INVALID_EXPRESSION.format(expression.detail)
            decision.blocked.add(item.id)
            continue

        if item.due > now:
            decision.why[item.id] = IN_QUIET_PERIOD.format(format_duration(item.due - now))
            continue

        if not item.concurrent_build:
            if item.running_builds:
                decision.why[item.id] = BUILD_IN_PROGRESS.format(
                    max(item.running_builds), _eta(item, now)
                )
                decision.blocked.add(item.id)
                continue
            if item.job_name in started_jobs:
                decision.why[item.id] = A_BUILD_IN_PROGRESS
                decision.blocked.add(item.id)
                continue

        candidates = [
            node
            for node in all_nodes
            if node.available and free[node.name] and _may_run(expression, node)
        ]
        if candidates:
            chosen = by_name.get(item.last_built_on or "")
            if chosen not in candidates:
                weights = {node.name: node.num_executors for node in candidates}
                chosen = by_name[consistent_hash_order(item.job_name, weights)[0]]
            decision.assignments.append(Assignment(item.id, chosen.name, free[chosen.name].pop(0)))
            started_jobs.add(item.job_name)
            continue

        decision.why[item.id] = _why_waiting(expression, all_nodes, free)
        for node in all_nodes:
            if not node.available and node.num_executors > 0 and _may_run(expression, node):
                decision.demand.setdefault(node.name, []).append(item.id)

    return decision


def _why_waiting(
    expression: LabelExpression | None,
    nodes: list[NodeState],
    free: Mapping[str, list[int]],
) -> str:
    """Why a buildable item found no executor (Jenkins' BuildableItem.getCauseOfBlockage)."""
    # Nodes that are up (not offline) with executors nobody took in this decision.
    idle = [node for node in nodes if not node.is_offline and free[node.name]]
    if expression is None:
        reasons = [reason for node in idle if (reason := _refusal(None, node))]
        return _composite(reasons) if reasons else WAITING

    label = _label_name(expression)
    matching = [node for node in nodes if expression.matches(node.labels)]
    if not matching:
        return LABEL_HAS_NO_NODES.format(label)
    if all(node.is_offline for node in matching):
        if len(matching) == 1:
            return NODE_OFFLINE.format(matching[0].display_name)
        return ALL_NODES_OFFLINE.format(label)
    if any(expression.matches(node.labels) for node in idle):
        # The label has idle executors that refuse the item: say why, node by node.
        reasons = [reason for node in idle if (reason := _refusal(expression, node))]
        if reasons:
            return _composite(reasons)
    if len(matching) == 1:
        return WAITING_ON.format(matching[0].display_name)
    return WAITING_ON.format(label)
