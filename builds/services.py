"""Builds' state changes: scheduling requests into the queue (with folding), applying the
scheduler's decision by claiming executor slots atomically, aborting, cancelling, and the
sweeps that keep the queue moving and free slots of builds whose worker died."""

from __future__ import annotations

import logging
import posixpath
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Max, Q
from django.utils import timezone

from builds import scheduler
from builds.labels import node_labels
from builds.models import Build, Executor, Job, QueueItem
from builds.parameters import (
    BUILD_PURPOSE,
    QUEUE_PURPOSE,
    ParameterValues,
    reencrypt,
    values_for,
)
from console.push import group_name, push
from nodes import services as node_services
from nodes.models import Node

logger = logging.getLogger(__name__)

QUEUE_GROUP = "queue"
EXECUTORS_GROUP = "executors"
DEFAULT_QUIET_PERIOD = 5
# A running build heartbeats every 5 s; one silent this long lost its worker. With the sweep
# every 10 s (beat), such a build is failed and its executor freed within 60 s of the death.
LOST_BUILD_SECONDS = 45

LIVE = QueueItem.LIVE_STATES


class BuildError(Exception):
    """An action that cannot be done; the message is shown as is."""


def announce(*groups: str, **payload) -> None:
    """After commit, tell the queue/executor widgets and pages that something changed."""

    def send() -> None:
        for group in groups:
            push(group, {"type": "builds.changed", **payload})

    transaction.on_commit(send)


def build_group(build_id: int) -> str:
    return group_name("build", build_id)


# --- causes ---------------------------------------------------------------------------------


def user_cause(user) -> dict:
    if user is None:
        return {"kind": "scm", "text": "Started by an SCM change"}
    name = user.get_username()
    return {"kind": "user", "user": name, "text": f"Started by user {name}"}


def timer_cause() -> dict:
    return {"kind": "timer", "text": "Started by timer"}


def remote_cause(addr: str, note: str = "") -> dict:
    text = f"Started by remote host {addr}" + (f" with note: {note}" if note else "")
    return {"kind": "remote", "addr": addr, "note": note, "text": text}


def upstream_cause(project: str, number: int) -> dict:
    return {
        "kind": "upstream",
        "project": project,
        "build": number,
        "text": f"Started by upstream project ‘{project}’ build number {number}",
    }


def cause_lines(causes: list[dict]) -> list[str]:
    return [c["text"] + (f" ({c['count']} times)" if c.get("count", 1) > 1 else "") for c in causes]


def _fold(causes: list[dict], cause: dict) -> list[dict]:
    out = [dict(c) for c in causes]
    for existing in out:
        if existing["text"] == cause["text"]:
            existing["count"] = existing.get("count", 1) + 1
            return out
    out.append({**cause, "count": 1})
    return out


# --- the queue ------------------------------------------------------------------------------


def quiet_period_of(job: Job) -> int:
    if job.quiet_period is not None:
        return job.quiet_period
    return getattr(settings, "STEWARD_QUIET_PERIOD", DEFAULT_QUIET_PERIOD)


def schedule_build(
    job: Job,
    cause: dict | str,
    *,
    delay: int | None = None,
    parameters: ParameterValues | None = None,
) -> tuple[QueueItem, bool]:
    """Put a build of ``job`` in the queue. A request for a job already waiting in the queue
    with the same parameter values folds into that item (its cause counts up, the earlier due
    time wins); different values make a new item. ``parameters`` defaults to the job's
    defaults. Returns (item, created)."""
    if job.disabled:
        raise BuildError(f"{job.name} is not buildable")
    if isinstance(cause, str):
        cause = {"kind": "other", "text": cause}
    if parameters is None:
        parameters = values_for(job)
    seconds = quiet_period_of(job) if delay is None else delay
    due = timezone.now() + timedelta(seconds=seconds)
    with transaction.atomic():
        # Lock the job row so two requests cannot both create an item.
        Job.objects.select_for_update().filter(pk=job.pk).first()
        item = (
            QueueItem.objects.select_for_update()
            .filter(job=job, state__in=LIVE, parameters_key=parameters.key)
            .first()
        )
        if item is not None:
            item.causes = _fold(item.causes, cause)
            item.due_at = min(item.due_at, due)
            item.save(update_fields=["causes", "due_at"])
            created = False
        else:
            item = QueueItem.objects.create(
                job=job,
                due_at=due,
                causes=[{**cause, "count": 1}],
                parameters=parameters.public,
                encrypted_parameters=parameters.encrypted,
                parameters_key=parameters.key,
                why=f"In the quiet period. Expires in {scheduler.format_duration(seconds)}"
                if seconds
                else "",
            )
            created = True
        announce(QUEUE_GROUP, event="queued")
        transaction.on_commit(lambda: _kick_scheduler(seconds))
    return item, created


def _kick_scheduler(after_seconds: float = 0) -> None:
    from builds.tasks import schedule

    schedule.delay()
    if after_seconds:
        schedule.apply_async(countdown=after_seconds + 0.05)


def cancel_item(item_id: int) -> bool:
    """Cancel a queued item (Jenkins' cancelItem): True if it was still in the queue."""
    changed = QueueItem.objects.filter(pk=item_id, state__in=LIVE).update(
        state=QueueItem.State.LEFT, cancelled=True, left_at=timezone.now(), why="Cancelled"
    )
    if changed:
        announce(QUEUE_GROUP, event="cancelled")
    return bool(changed)


# --- executors ------------------------------------------------------------------------------


def sync_executors(nodes: list[Node]) -> None:
    """Executor slot rows 1..num_executors for each node (idle extra slots are removed)."""
    existing: dict[int, set[int]] = {}
    for node_id, number in Executor.objects.values_list("node_id", "number"):
        existing.setdefault(node_id, set()).add(number)
    missing = [
        Executor(node_id=node.pk, number=n)
        for node in nodes
        for n in range(1, node.num_executors + 1)
        if n not in existing.get(node.pk, set())
    ]
    if missing:
        Executor.objects.bulk_create(missing, ignore_conflicts=True)
    for node in nodes:
        if any(n > node.num_executors for n in existing.get(node.pk, ())):
            Executor.objects.filter(
                node_id=node.pk, number__gt=node.num_executors, build__isnull=True
            ).delete()


def busy_executor_count(node: Node) -> int:
    return Executor.objects.filter(node=node, build__isnull=False).count()


def busy_executor_counts(nodes: list[Node]) -> dict[int, int]:
    """Busy executors of many nodes in one query (the Nodes list pins its query count)."""
    rows = (
        Executor.objects.filter(node__in=[n.pk for n in nodes], build__isnull=False)
        .values_list("node_id")
        .annotate(busy=Count("pk"))
    )
    return dict(rows)


busy_executor_count.bulk = busy_executor_counts  # type: ignore[attr-defined]
node_services.busy_counters.append(busy_executor_count)
# A node coming online (or back from temporarily offline) may start what waits in the queue.
node_services.online_listeners.append(lambda node_id: _kick_scheduler())


def _node_state(node: Node, free: list[int]) -> scheduler.NodeState:
    if node.connection == Node.Connection.CONNECTED and not node.offline:
        online, reason = True, None
    elif node.connection == Node.Connection.CONNECTING:
        online, reason = False, scheduler.LAUNCHING
    elif node.connection == Node.Connection.CONNECTED:
        online, reason = False, scheduler.TEMPORARILY_OFFLINE
    else:
        online, reason = False, scheduler.OFFLINE
    return scheduler.NodeState(
        name=node.url_name,
        display_name=node.display_name,
        labels=node_labels(node.name, node.label_string, is_builtin=node.is_builtin),
        num_executors=node.num_executors,
        free_executors=tuple(sorted(free)),
        mode=node.mode,
        online=online,
        offline_reason=reason,
        is_builtin=node.is_builtin,
    )


# At most this many decisions per run; a lost claim (see run_scheduler) starts another one.
SCHEDULER_PASSES = 20


def run_scheduler() -> list[int]:
    """Decide and apply: start what can start, write why the rest waits. Returns build ids.

    Safe to run in several processes at once: each start claims its queue item and its
    executor slot with conditional UPDATEs inside one transaction, or does nothing. A claim
    lost to another scheduler means this decision was made on a queue or slots that have
    changed since, and the rest of it may leave a slot idle that another item could use, so
    the scheduler decides again. A lost claim always means someone else made progress.
    """
    started: list[int] = []
    for attempt in range(SCHEDULER_PASSES):
        more, lost = _schedule_pass(final=attempt == SCHEDULER_PASSES - 1)
        started += more
        if not lost:
            break
    if started:
        announce(QUEUE_GROUP, EXECUTORS_GROUP, event="started")
    return started


def _schedule_pass(final: bool) -> tuple[list[int], bool]:
    """One decision, applied. Returns (build ids started, whether a claim was lost)."""
    now = timezone.now()
    items = list(QueueItem.objects.filter(state__in=LIVE).select_related("job"))
    if not items:
        return [], False
    node_services.ensure_builtin_node()
    nodes = list(Node.objects.all())
    sync_executors(nodes)
    free: dict[int, list[int]] = {}
    for node_id, number in Executor.objects.filter(build__isnull=True).values_list(
        "node_id", "number"
    ):
        free.setdefault(node_id, []).append(number)
    by_name = {node.url_name: node for node in nodes}
    states = [
        _node_state(n, [k for k in free.get(n.pk, []) if k <= n.num_executors]) for n in nodes
    ]

    job_ids = {item.job_id for item in items}
    running: dict[int, list[tuple[int, object]]] = {}
    for job_id, number, started in Build.objects.filter(
        job_id__in=job_ids, status__in=[Build.Status.PENDING, Build.Status.RUNNING]
    ).values_list("job_id", "number", "started_at"):
        running.setdefault(job_id, []).append((number, started))
    estimates = dict(
        Build.objects.filter(job_id__in=job_ids, result=Build.Result.SUCCESS)
        .values("job_id")
        .annotate(last=Max("duration_ms"))
        .values_list("job_id", "last")
    )
    # Every node is loaded above; a deleted node's builds have last_built_on cleared.
    url_names = {node.pk: node.url_name for node in nodes}
    item_states = []
    for item in items:
        runs = running.get(item.job_id, [])
        started = [s for _, s in runs if s is not None]
        last_name = url_names.get(item.job.last_built_on_id)
        estimate = estimates.get(item.job_id)
        item_states.append(
            scheduler.QueueItemState(
                id=item.pk,
                job_name=item.job.name,
                label_expression=item.job.label_expression or None,
                concurrent_build=item.job.concurrent_build,
                due=item.due_at.timestamp(),
                in_queue_since=item.in_queue_since.timestamp(),
                running_builds=tuple(sorted(n for n, _ in runs)),
                running_since=max(started).timestamp() if started else None,
                last_built_on=last_name,
                estimated_duration=estimate / 1000 if estimate else None,
            )
        )
    decision = scheduler.decide(item_states, states, now.timestamp())
    items_by_id = {item.pk: item for item in items}
    started: list[int] = []
    lost = False
    for assignment in decision.assignments:
        build_id = _start(
            items_by_id[assignment.item_id],
            by_name[assignment.node_name],
            assignment.executor_number,
            now,
        )
        if build_id is None:
            lost = True
        else:
            started.append(build_id)
    if lost and not final:
        return started, True  # the next pass writes the whys, from a fresh look
    _record_why(items, decision, now)
    for node_name in decision.demand:
        node = by_name.get(node_name)
        if node is None:
            continue
        if node.retention == Node.Retention.DEMAND:
            node_services.request_demand(node)
        elif node.is_builtin and node.connection in (
            Node.Connection.DISCONNECTED,
            Node.Connection.FAILED,
        ):
            # The built-in node is part of the controller: work waiting for it starts it
            # (e.g. after its row was recreated) rather than waiting for the retention sweep.
            try:
                node_services.request_launch(node, reason="Launching because work is waiting")
            except node_services.NodeError:
                pass
    return started, lost


class _SlotTaken(Exception):
    pass


def _start(item: QueueItem, node: Node, executor_number: int, now) -> int | None:
    try:
        with transaction.atomic():
            if (
                QueueItem.objects.filter(pk=item.pk, state__in=LIVE).update(
                    state=QueueItem.State.LEFT, left_at=now, why=""
                )
                != 1
            ):
                raise _SlotTaken
            Job.objects.filter(pk=item.job_id).update(
                next_build_number=F("next_build_number") + 1, last_built_on=node
            )
            number = Job.objects.values_list("next_build_number", flat=True).get(pk=item.job_id) - 1
            build = Build.objects.create(
                job_id=item.job_id,
                number=number,
                causes=item.causes,
                parameters=item.parameters,
                encrypted_parameters=reencrypt(
                    item.encrypted_parameters, QUEUE_PURPOSE, BUILD_PURPOSE
                ),
                node=node,
                node_name=node.url_name,
                executor_number=executor_number,
                workspace=allocate_workspace(item.job, node),
            )
            if (
                Executor.objects.filter(
                    node=node, number=executor_number, build__isnull=True
                ).update(build=build)
                != 1
            ):
                raise _SlotTaken
            QueueItem.objects.filter(pk=item.pk).update(build=build)
            transaction.on_commit(lambda: _enqueue_build(build.pk))
            return build.pk
    except (_SlotTaken, IntegrityError):
        return None


def allocate_workspace(job: Job, node: Node) -> str:
    """Jenkins' WorkspaceList: ``<root>/workspace/<job>``, or ``<job>@2``, ``@3`` … while builds
    of the same job on the same node use the earlier ones. Called in the claiming transaction
    after the job row was updated, which serializes the claims of one job (the row lock on
    PostgreSQL, the IMMEDIATE transaction on SQLite), so two builds never share a workspace."""
    root = (node.agent_info or {}).get("remote_root") or node.remote_fs
    base = posixpath.join(root, "workspace", job.name)
    in_use = set(
        Build.objects.filter(
            job_id=job.pk, node=node, status__in=[Build.Status.PENDING, Build.Status.RUNNING]
        ).values_list("workspace", flat=True)
    )
    workspace, suffix = base, 1
    while workspace in in_use:
        suffix += 1
        workspace = f"{base}@{suffix}"
    return workspace


def _enqueue_build(build_id: int) -> None:
    from builds.tasks import run_build

    run_build.delay(build_id)


def _record_why(items: list[QueueItem], decision, now) -> None:
    changed = False
    for item in items:
        why = decision.why.get(item.pk)
        if why is None:
            continue
        if item.pk in decision.blocked:
            state = QueueItem.State.BLOCKED
        elif item.due_at > now:
            state = QueueItem.State.WAITING
        else:
            state = QueueItem.State.BUILDABLE
        if why != item.why or state != item.state:
            if QueueItem.objects.filter(pk=item.pk, state__in=LIVE).update(why=why, state=state):
                changed = True
    if changed:
        # The Build Queue widget shows the why: tell it (JENKINS.md d2).
        announce(QUEUE_GROUP, event="why")


# --- builds -----------------------------------------------------------------------------------


def abort_build(build: Build, user=None) -> bool:
    """Abort: a running build's process group is killed by its agent within 2 s."""
    who = user.get_username() if user is not None and user.is_authenticated else "SYSTEM"
    changed = Build.objects.filter(
        pk=build.pk, status__in=[Build.Status.PENDING, Build.Status.RUNNING]
    ).update(abort_requested=True, aborted_by=who)
    if changed:
        from builds.tasks import watch_abort

        transaction.on_commit(lambda: watch_abort.apply_async((build.pk,), countdown=5))
    return bool(changed)


def release_executor(build_id: int) -> None:
    Executor.objects.filter(build_id=build_id).update(build=None)


def finish_build(build_id: int, result: str) -> bool:
    """Record the result, free the executor, and let the scheduler start what waits."""
    now = timezone.now()
    with transaction.atomic():
        build = Build.objects.filter(pk=build_id).exclude(status=Build.Status.FINISHED).first()
        if build is None:
            return False
        started = build.started_at or now
        Build.objects.filter(pk=build_id).update(
            status=Build.Status.FINISHED,
            result=result,
            finished_at=now,
            duration_ms=int((now - started).total_seconds() * 1000),
        )
        release_executor(build_id)
        announce(
            QUEUE_GROUP, EXECUTORS_GROUP, build_group(build_id), event="finished", build=build_id
        )
        transaction.on_commit(_kick_scheduler)
    return True


def lost_builds_sweep() -> int:
    """Builds whose worker stopped heartbeating are failed and their executors freed."""
    seconds = getattr(settings, "STEWARD_LOST_BUILD_SECONDS", LOST_BUILD_SECONDS)
    limit = timezone.now() - timedelta(seconds=seconds)
    lost = Build.objects.filter(
        Q(status=Build.Status.RUNNING, heartbeat_at__lt=limit)
        | Q(status=Build.Status.PENDING, created_at__lt=limit - timedelta(minutes=4))
    )
    return sum(
        end_lost_build(build, "Steward lost contact with the build (its worker stopped)",
                       Build.Result.FAILURE)
        for build in lost
    )  # fmt: skip


def end_lost_build(build: Build, reason: str, result: str) -> bool:
    """Finish a build whose task is gone: say why at the end of its log, free its executor."""
    from console import logs

    stream = logs.open_stream(build.log_key)
    try:
        logs.append(stream, f"\nERROR: {reason}\nFinished: {result}\n".encode())
        logs.finish(stream)
    except RuntimeError:  # its worker is still writing: finish_build below stops it
        pass
    return finish_build(build.pk, result)


def delete_job(job: Job) -> None:
    if Build.objects.filter(
        job=job, status__in=[Build.Status.PENDING, Build.Status.RUNNING]
    ).exists():
        raise BuildError(f"{job.name} has a build in progress; abort it first.")
    job.delete()
    announce(QUEUE_GROUP, event="deleted")
