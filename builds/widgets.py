"""What the dashboard's job list and its two side-panel widgets (Build Queue, Build Executor
Status) show, read with a fixed number of queries whatever the number of jobs, items or nodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote

from django.db.models import Exists, OuterRef, QuerySet, Subquery
from django.utils import timezone

from builds import scheduler
from builds.models import Build, Executor, Job, QueueItem
from builds.services import cause_lines
from console.permissions import can
from nodes.models import Node

# --- paths of the job and build pages (served by the builds views) ---------------------------


def job_path(name: str) -> str:
    return f"/job/{quote(name, safe='')}/"


def build_path(name: str, number: int) -> str:
    return f"{job_path(name)}{number}/"


def _ms(moment: datetime | None) -> int | None:
    return int(moment.timestamp() * 1000) if moment is not None else None


# --- job status balls (Jenkins' BallColor, JENKINS.md d7) --------------------------------------

RESULT_COLORS = {
    Build.Result.SUCCESS: "blue",
    Build.Result.UNSTABLE: "yellow",
    Build.Result.FAILURE: "red",
    Build.Result.NOT_BUILT: "nobuilt",
    Build.Result.ABORTED: "aborted",
}
COLOR_TOOLTIPS = {
    "blue": "Success",
    "yellow": "Unstable",
    "red": "Failed",
    "nobuilt": "Not built",
    "aborted": "Aborted",
    "disabled": "Disabled",
}
# Sorting the status column groups jobs by how much they need attention.
COLOR_ORDER = {"red": 0, "yellow": 1, "aborted": 2, "blue": 3, "nobuilt": 4, "disabled": 5}
IN_PROGRESS = "In progress"


def ball_color(*, disabled: bool, last_result: str | None, building: bool) -> str:
    """Job.getIconColor: the last completed build's color, "_anime" while one is building."""
    if disabled:
        color = "disabled"
    else:
        color = RESULT_COLORS.get(last_result or "", "nobuilt")
    return f"{color}_anime" if building else color


def ball_tooltip(color: str) -> str:
    if color.endswith("_anime"):
        return IN_PROGRESS
    return COLOR_TOOLTIPS.get(color, "Not built")


def with_job_status(jobs: QuerySet[Job]) -> QuerySet[Job]:
    """Annotate each job with what its row needs: one query, whatever the number of jobs."""
    finished = Build.objects.filter(job=OuterRef("pk"), status=Build.Status.FINISHED).order_by(
        "-number"
    )
    success = finished.filter(result=Build.Result.SUCCESS)
    failure = finished.filter(result=Build.Result.FAILURE)
    return jobs.annotate(
        last_result=Subquery(finished.values("result")[:1]),
        last_number=Subquery(finished.values("number")[:1]),
        last_duration_ms=Subquery(finished.values("duration_ms")[:1]),
        last_success_number=Subquery(success.values("number")[:1]),
        last_success_at=Subquery(success.values("started_at")[:1]),
        last_failure_number=Subquery(failure.values("number")[:1]),
        last_failure_at=Subquery(failure.values("started_at")[:1]),
        building=Exists(
            Build.objects.filter(
                job=OuterRef("pk"), status__in=[Build.Status.PENDING, Build.Status.RUNNING]
            )
        ),
        queued=Exists(
            QueueItem.objects.filter(job=OuterRef("pk"), state__in=QueueItem.LIVE_STATES)
        ),
    )


def job_color(job: Job) -> str:
    """The color of a job annotated by ``with_job_status``."""
    return ball_color(disabled=job.disabled, last_result=job.last_result, building=job.building)


@dataclass(frozen=True)
class RunLink:
    """ "2 hr 3 min - #12": how long ago (or how long), and the build it links to."""

    text: str
    number: int
    url: str
    sort: int


@dataclass(frozen=True)
class JobRow:
    name: str
    url: str
    build_url: str
    color: str
    tooltip: str
    queued: bool
    disabled: bool
    last_success: RunLink | None
    last_failure: RunLink | None
    last_duration: RunLink | None

    @property
    def base_color(self) -> str:
        return self.color.removesuffix("_anime")

    @property
    def anime(self) -> bool:
        return self.color.endswith("_anime")

    @property
    def sort_color(self) -> int:
        return COLOR_ORDER.get(self.base_color, 9)


def _since(job: Job, number: int | None, started: datetime | None, now: datetime) -> RunLink | None:
    if number is None:
        return None
    started = started or now
    return RunLink(
        text=scheduler.format_duration((now - started).total_seconds()),
        number=number,
        url=build_path(job.name, number),
        sort=_ms(started) or 0,
    )


def job_rows(now: datetime | None = None) -> list[JobRow]:
    """Every job as the dashboard lists it (one query)."""
    now = now or timezone.now()
    rows = []
    for job in with_job_status(Job.objects.order_by("name")):
        color = job_color(job)
        duration = None
        if job.last_number is not None and job.last_duration_ms is not None:
            duration = RunLink(
                text=scheduler.format_duration(job.last_duration_ms / 1000),
                number=job.last_number,
                url=build_path(job.name, job.last_number),
                sort=job.last_duration_ms,
            )
        rows.append(
            JobRow(
                name=job.name,
                url=job_path(job.name),
                build_url=f"{job_path(job.name)}build",
                color=color,
                tooltip=ball_tooltip(color),
                queued=job.queued,
                disabled=job.disabled,
                last_success=_since(job, job.last_success_number, job.last_success_at, now),
                last_failure=_since(job, job.last_failure_number, job.last_failure_at, now),
                last_duration=duration,
            )
        )
    return rows


def dashboard_context(user) -> dict:
    """The dashboard's context: the job list, when the user may see jobs."""
    can_view = can(user, "builds.view_job")
    return {
        "can_view_jobs": can_view,
        "jobs": job_rows() if can_view else [],
    }


# --- the Build Queue widget -------------------------------------------------------------------

WAITING_FOR = "Waiting for {0}"
FINISHED_WAITING = "Finished waiting"
NOT_FOUND = "Provided id ({0}) not found"
NOT_CANCELLABLE = "Item for id ({0}) is not cancellable"
CANCEL_CONFIRM = "Are you sure you want to cancel the queued run of {0}?"
# A buildable item whose label has no online node is stuck at once (BuildableItem.isStuck).
_LABEL_OFFLINE = tuple(
    text.split("{0}")[0] for text in (scheduler.LABEL_HAS_NO_NODES, scheduler.ALL_NODES_OFFLINE)
)
_NODE_OFFLINE_SUFFIX = scheduler.NODE_OFFLINE.split("{0}")[1]
STUCK_FACTOR = 10
NO_ESTIMATE_STUCK_SECONDS = 24 * 3600


def _last_success_duration(job_ref: str) -> Subquery:
    return Subquery(
        Build.objects.filter(job=OuterRef(job_ref), result=Build.Result.SUCCESS)
        .order_by("-number")
        .values("duration_ms")[:1]
    )


@dataclass(frozen=True)
class QueueEntry:
    id: int
    job_name: str
    job_url: str
    state: str
    why: str
    causes: list[str]
    times: int  # how many requests were folded into this item
    waiting_for: str
    in_queue_since: datetime
    due_at: datetime
    stuck: bool
    blocked: bool
    buildable: bool

    @property
    def tooltip(self) -> str:
        """Jenkins' queue tooltip: causes, why, then how long it has waited."""
        lines = [*self.causes, self.why, WAITING_FOR.format(self.waiting_for)]
        return "\n".join(line for line in lines if line)

    @property
    def cancel_confirm(self) -> str:
        return CANCEL_CONFIRM.format(self.job_name)

    @property
    def in_queue_since_ms(self) -> int:
        return _ms(self.in_queue_since) or 0

    @property
    def due_ms(self) -> int:
        return _ms(self.due_at) or 0

    @property
    def quiet(self) -> bool:
        return self.state == QueueItem.State.WAITING and self.why.startswith(
            scheduler.IN_QUIET_PERIOD.split("{0}")[0]
        )


def current_why(item: QueueItem, now: datetime) -> str:
    """The stored why, except in the quiet period, where the time left is counted now."""
    if item.state == QueueItem.State.WAITING:
        left = (item.due_at - now).total_seconds()
        if left > 0:
            return scheduler.IN_QUIET_PERIOD.format(scheduler.format_duration(left))
        if not item.why or item.why.startswith(scheduler.IN_QUIET_PERIOD.split("{0}")[0]):
            return FINISHED_WAITING
    return item.why


def is_stuck(item: QueueItem, estimate_ms: int | None, now: datetime) -> bool:
    """BuildableItem.isStuck: its label is offline, or it waited 10× the estimate (≥ 1 min)."""
    if item.state != QueueItem.State.BUILDABLE:
        return False
    why = item.why or ""
    if why.startswith(_LABEL_OFFLINE) or why.endswith(_NODE_OFFLINE_SUFFIX):
        return True
    waited = (now - item.in_queue_since).total_seconds()
    if estimate_ms is None:
        return waited > NO_ESTIMATE_STUCK_SECONDS
    return waited > STUCK_FACTOR * max(estimate_ms / 1000, 60)


def _entry(item: QueueItem, now: datetime) -> QueueEntry:
    why = current_why(item, now)
    return QueueEntry(
        id=item.pk,
        job_name=item.job.name,
        job_url=job_path(item.job.name),
        state=item.state,
        why=why,
        causes=cause_lines(item.causes),
        times=sum(c.get("count", 1) for c in item.causes),
        waiting_for=scheduler.format_duration((now - item.in_queue_since).total_seconds()),
        in_queue_since=item.in_queue_since,
        due_at=item.due_at,
        stuck=is_stuck(item, item.estimate_ms, now),
        blocked=item.state == QueueItem.State.BLOCKED,
        buildable=item.state == QueueItem.State.BUILDABLE,
    )


def live_queue_items() -> QuerySet[QueueItem]:
    return (
        QueueItem.objects.filter(state__in=QueueItem.LIVE_STATES)
        .select_related("job")
        .annotate(estimate_ms=_last_success_duration("job"))
        .order_by("due_at", "id")
    )


@dataclass(frozen=True)
class BuildQueue:
    items: list[QueueEntry]
    now_ms: int = 0  # the server's clock, so the page's timers count from the same origin

    @property
    def count(self) -> int:
        return len(self.items)


def build_queue(now: datetime | None = None) -> BuildQueue:
    """The live queue items, oldest due first (one query)."""
    now = now or timezone.now()
    return BuildQueue(items=[_entry(item, now) for item in live_queue_items()], now_ms=_ms(now))


# --- the Build Executor Status widget ----------------------------------------------------------

ABORT_CONFIRM = "Are you sure you want to abort {0}?"
NO_EXECUTORS = "No executors, agents or clouds are configured."
SUMMARY = "{0} agents ({1} of {2} executors busy)"
STARTED_AGO = "Started {0} ago"
REMAINING = "Estimated remaining time: {0}"


@dataclass(frozen=True)
class ExecutorSlot:
    number: int
    build: Build | None = None
    started_ms: int | None = None
    estimate_ms: int | None = None
    progress: int | None = None  # percent, None when there is no estimate (or not started)
    likely_stuck: bool = False
    title: str = ""

    @property
    def idle(self) -> bool:
        return self.build is None

    @property
    def pending(self) -> bool:
        return self.build is not None and self.build.started_at is None

    @property
    def display_name(self) -> str:
        return f"{self.build.job.name} #{self.build.number}" if self.build else ""

    @property
    def console_url(self) -> str:
        return f"{build_path(self.build.job.name, self.build.number)}console" if self.build else ""

    @property
    def stop_url(self) -> str:
        return f"{build_path(self.build.job.name, self.build.number)}stop" if self.build else ""

    @property
    def abort_confirm(self) -> str:
        return ABORT_CONFIRM.format(self.display_name)


@dataclass(frozen=True)
class NodeExecutors:
    node: Node
    url: str
    state: str  # online, offline, launching, suspended
    caption: str  # "(offline)", "(launching...)", "(suspended)" or ""
    slots: list[ExecutorSlot] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.slots)

    @property
    def busy(self) -> int:
        return sum(1 for slot in self.slots if not slot.idle)

    @property
    def shown_slots(self) -> list[ExecutorSlot]:
        """A node that is not connected shows only the builds still on it, not idle slots."""
        if self.state in ("offline", "launching"):
            return [slot for slot in self.slots if not slot.idle]
        return self.slots


@dataclass(frozen=True)
class ExecutorStatus:
    nodes: list[NodeExecutors]
    single: Node | None = None
    now_ms: int = 0

    @property
    def busy(self) -> int:
        return sum(n.busy for n in self.nodes)

    @property
    def total(self) -> int:
        return sum(n.total for n in self.nodes)

    @property
    def summary(self) -> str:
        return SUMMARY.format(len(self.nodes), self.busy, self.total)

    @property
    def empty(self) -> bool:
        return not any(n.slots for n in self.nodes)

    @property
    def refresh_url(self) -> str:
        if self.single is not None:
            return f"/widgets/executors?node={quote(self.single.url_name, safe='')}"
        return "/widgets/executors"

    @property
    def dom_id(self) -> str:
        return f"executors-{self.single.pk}" if self.single is not None else "executors"


def node_state(node: Node) -> tuple[str, str]:
    """(state, caption) of a node in the widget, as Jenkins' executors.jelly captions it."""
    if node.connection == Node.Connection.CONNECTING:
        return "launching", "(launching...)"
    if node.connection != Node.Connection.CONNECTED:
        return "offline", "(offline)"
    if node.offline:
        return "suspended", "(suspended)"
    return "online", ""


def _slot(number: int, executor: Executor | None, now: datetime) -> ExecutorSlot:
    build = executor.build if executor is not None else None
    if build is None:
        return ExecutorSlot(number=number)
    estimate = executor.estimate_ms
    if build.started_at is None:
        return ExecutorSlot(number=number, build=build, estimate_ms=estimate, title="Pending")
    elapsed_ms = max(0, (now - build.started_at).total_seconds() * 1000)
    title = STARTED_AGO.format(scheduler.format_duration(elapsed_ms / 1000))
    progress = None
    stuck = False
    if estimate:
        # Executor.getProgress: capped at 99 % until the build really ends.
        progress = min(99, int(elapsed_ms * 100 / estimate))
        stuck = elapsed_ms > STUCK_FACTOR * estimate
        left = estimate - elapsed_ms
        title += "\n" + REMAINING.format(
            scheduler.format_duration(left / 1000) if left > 0 else "N/A"
        )
    else:
        stuck = elapsed_ms > NO_ESTIMATE_STUCK_SECONDS * 1000
    return ExecutorSlot(
        number=number,
        build=build,
        started_ms=_ms(build.started_at),
        estimate_ms=estimate,
        progress=progress,
        likely_stuck=stuck,
        title=title,
    )


def executor_status(node: Node | None = None, now: datetime | None = None) -> ExecutorStatus:
    """Executors of every node (or of one): two queries, nodes and their executor rows.

    Slots 1..num_executors are shown even before the scheduler has made their rows; a slot
    above the configured number appears only while a build still runs on it.
    """
    now = now or timezone.now()
    nodes = [node] if node is not None else list(Node.objects.all())
    executors = (
        Executor.objects.select_related("build__job")
        .annotate(estimate_ms=_last_success_duration("build__job"))
        .order_by("node_id", "number")
    )
    if node is not None:
        executors = executors.filter(node=node)
    rows: dict[int, dict[int, Executor]] = {}
    for executor in executors:
        rows.setdefault(executor.node_id, {})[executor.number] = executor
    blocks = []
    for each in nodes:
        by_number = rows.get(each.pk, {})
        numbers = set(range(1, each.num_executors + 1))
        numbers |= {n for n, e in by_number.items() if e.build_id is not None}
        state, caption = node_state(each)
        blocks.append(
            NodeExecutors(
                node=each,
                url=f"/computer/{quote(each.url_name, safe='()')}/",
                state=state,
                caption=caption,
                slots=[_slot(n, by_number.get(n), now) for n in sorted(numbers)],
            )
        )
    return ExecutorStatus(nodes=blocks, single=node, now_ms=_ms(now))


# --- /queue/api/json ---------------------------------------------------------------------------

ITEM_CLASSES = {
    QueueItem.State.WAITING: "hudson.model.Queue$WaitingItem",
    QueueItem.State.BLOCKED: "hudson.model.Queue$BlockedItem",
    QueueItem.State.BUILDABLE: "hudson.model.Queue$BuildableItem",
}


def queue_item_json(item: QueueItem, colors: dict[int, str], base_url: str, now: datetime) -> dict:
    """One live queue item in Jenkins' JSON shape (JENKINS.md d1)."""
    data = {
        "_class": ITEM_CLASSES[item.state],
        "actions": [
            {
                "_class": "hudson.model.CauseAction",
                # CauseAction lists a folded cause once per request.
                "causes": [
                    {"shortDescription": cause["text"]}
                    for cause in item.causes
                    for _ in range(cause.get("count", 1))
                ],
            }
        ],
        "blocked": item.state == QueueItem.State.BLOCKED,
        "buildable": item.state == QueueItem.State.BUILDABLE,
        "id": item.pk,
        "inQueueSince": _ms(item.in_queue_since),
        "params": "",
        "stuck": is_stuck(item, getattr(item, "estimate_ms", None), now),
        "task": {
            "_class": "hudson.model.FreeStyleProject",
            "name": item.job.name,
            "url": f"{base_url}{job_path(item.job.name)}",
            # Jenkins' API spells it "notbuilt" (its icon, and our CSS class, "nobuilt").
            "color": colors.get(item.job_id, "nobuilt").replace("nobuilt", "notbuilt"),
        },
        "url": f"queue/item/{item.pk}/",
        "why": current_why(item, now),
    }
    if item.state == QueueItem.State.WAITING:
        data["timestamp"] = _ms(item.due_at)
    else:
        data["buildableStartMilliseconds"] = _ms(item.due_at)
        if item.state == QueueItem.State.BUILDABLE:
            data["pending"] = False
    return data


def job_colors(job_ids: set[int]) -> dict[int, str]:
    """{job id: BallColor} for the given jobs (one query)."""
    if not job_ids:
        return {}
    return {job.pk: job_color(job) for job in with_job_status(Job.objects.filter(pk__in=job_ids))}


def queue_json(base_url: str, now: datetime | None = None) -> dict:
    """``/queue/api/json``: two queries, the live items and their jobs' colors."""
    now = now or timezone.now()
    items = list(live_queue_items())
    colors = job_colors({item.job_id for item in items})
    return {
        "_class": "hudson.model.Queue",
        "discoverableItems": [],
        "items": [queue_item_json(item, colors, base_url, now) for item in items],
    }
