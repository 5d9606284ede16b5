"""What the jobs and builds screens share: permission checks, look-ups, result balls
(Jenkins' BallColor), permalinks and times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import (
    Http404,
    HttpRequest,
)
from django.utils import timezone

from builds.models import Build, Job
from builds.scheduler import format_duration
from console.permissions import can

CONSOLE_TAIL_BYTES = 150 * 1024  # Jenkins' hudson.consoleTailKB
CONSOLE_MAX_LINES = 10_000  # the browser keeps at most this many lines in the page
CONSOLE_MAX_CHARS = 4_000_000
PROGRESSIVE_MAX_LINES = 10_000
PROGRESSIVE_MAX_BYTES = 8 * 1024 * 1024
GZIP_MIN_BYTES = 4096
HISTORY_PAGE_SIZE = 25
API_BUILDS = 100

BUILD_CLASS = "hudson.model.FreeStyleBuild"
JOB_CLASS = "hudson.model.FreeStyleProject"

Result = Build.Result
Status = Build.Status


# --- permissions and look-ups -------------------------------------------------------------------


def _require(user, perm: str) -> None:
    if not can(user, perm):
        raise PermissionDenied(perm)


def _job_or_404(name: str) -> Job:
    job = Job.objects.filter(name=name).first()
    if job is None:
        raise Http404("No such job")
    return job


def _build_or_404(name: str, number: int) -> Build:
    build = (
        Build.objects.select_related("job", "node").filter(job__name=name, number=number).first()
    )
    if build is None:
        raise Http404("No such build")
    return build


def job_perms(user) -> dict[str, bool]:
    return {
        "add": can(user, "builds.add_job"),
        "change": can(user, "builds.change_job"),
        "delete": can(user, "builds.delete_job"),
        "build": can(user, "builds.build_job"),
        "cancel": can(user, "builds.cancel_build"),
    }


def _wants_html(request: HttpRequest) -> bool:
    """A browser (form post or htmx) rather than an API client such as curl or a script."""
    return bool(getattr(request, "htmx", False)) or "text/html" in request.headers.get("Accept", "")


# --- result balls (BallColor) -----------------------------------------------------------------

RESULT_COLOR = {
    Result.SUCCESS: "blue",
    Result.UNSTABLE: "yellow",
    Result.FAILURE: "red",
    Result.NOT_BUILT: "notbuilt",
    Result.ABORTED: "aborted",
}
COLOR_TOOLTIP = {
    "blue": "Success",
    "yellow": "Unstable",
    "red": "Failed",
    "notbuilt": "Not built",
    "aborted": "Aborted",
    "disabled": "Disabled",
}


@dataclass(frozen=True)
class Ball:
    color: str  # Jenkins' BallColor name, e.g. "blue", "red_anime"
    tooltip: str

    @property
    def base(self) -> str:
        return self.color.removesuffix("_anime")

    @property
    def animated(self) -> bool:
        return self.color.endswith("_anime")

    @property
    def css(self) -> str:
        # Jenkins' API says "notbuilt"; its icon (and the widgets' class) is "nobuilt".
        return "nobuilt" if self.base == "notbuilt" else self.base


def build_ball(build: Build, previous_color: str = "notbuilt") -> Ball:
    """A finished build shows its result; a running one the previous result, animated."""
    if build.status == Status.FINISHED:
        color = RESULT_COLOR.get(build.result, "notbuilt")
        return Ball(color, COLOR_TOOLTIP[color])
    if build.status == Status.PENDING:
        return Ball(previous_color + "_anime", "Pending")
    return Ball(previous_color + "_anime", "In progress")


def _previous_color(build: Build) -> str:
    previous = (
        Build.objects.filter(job_id=build.job_id, number__lt=build.number, status=Status.FINISHED)
        .values_list("result", flat=True)
        .first()
    )
    return RESULT_COLOR.get(previous, "notbuilt") if previous else "notbuilt"


def job_ball(job: Job) -> Ball:
    """Jenkins' Job.getIconColor: disabled, else the colour of the last started build."""
    if job.disabled:
        return Ball("disabled", "Disabled")
    last = job.builds.exclude(status=Status.PENDING).only("status", "result", "number").first()
    if last is None:
        return Ball("notbuilt", "Not built")
    if last.status == Status.FINISHED:
        return build_ball(last)
    return build_ball(last, _previous_color(last))


# --- permalinks -----------------------------------------------------------------------------

FINISHED = Q(status=Status.FINISHED)
PERMALINKS: dict[str, tuple[str, Q]] = {
    "lastBuild": ("Last build", Q()),
    "lastStableBuild": ("Last stable build", FINISHED & Q(result=Result.SUCCESS)),
    "lastSuccessfulBuild": (
        "Last successful build",
        FINISHED & Q(result__in=[Result.SUCCESS, Result.UNSTABLE]),
    ),
    "lastFailedBuild": ("Last failed build", FINISHED & Q(result=Result.FAILURE)),
    "lastUnstableBuild": ("Last unstable build", FINISHED & Q(result=Result.UNSTABLE)),
    "lastUnsuccessfulBuild": ("Last unsuccessful build", FINISHED & ~Q(result=Result.SUCCESS)),
    "lastCompletedBuild": ("Last completed build", FINISHED),
}


def permalink_build(job: Job, link: str) -> Build | None:
    return job.builds.filter(PERMALINKS[link][1]).first()


# --- times ------------------------------------------------------------------------------------


def build_time(build: Build) -> datetime:
    return build.started_at or build.created_at


def build_duration_ms(build: Build, now: datetime | None = None) -> int:
    if build.duration_ms is not None:
        return build.duration_ms
    if build.started_at is None:
        return 0
    return int(((now or timezone.now()) - build.started_at).total_seconds() * 1000)


def time_since(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return ""
    return format_duration(((now or timezone.now()) - moment).total_seconds())


@dataclass
class BuildRow:
    build: Build
    ball: Ball
    time: datetime
    duration: str


def history_rows(builds: list[Build], older_color: str, now: datetime) -> list[BuildRow]:
    """Rows of the build history (newest first); a running build borrows the colour of the
    finished build before it."""
    rows: list[BuildRow] = []
    color = older_color
    for build in reversed(builds):
        ball = build_ball(build, color)
        if build.status == Status.FINISHED:
            color = ball.color
            duration = format_duration((build.duration_ms or 0) / 1000)
        elif build.status == Status.RUNNING:
            duration = "Running for " + format_duration(build_duration_ms(build, now) / 1000)
        else:
            duration = "Pending"
        rows.append(BuildRow(build, ball, build_time(build), duration))
    rows.reverse()
    return rows
