"""The jobs and builds screens (New Item, Configure, the job and build pages, the console) and
the log and JSON endpoints with Jenkins' paths and semantics (JENKINS.md d3, d7, d8). Views parse,
call builds.services (or the job changes in builds.forms), render."""

from __future__ import annotations

import gzip
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from builds import forms as job_forms
from builds import services
from builds.ansi import AnsiConverter
from builds.models import Build, Job, QueueItem
from builds.scheduler import format_duration
from console import logs
from console.models import LogStream
from console.permissions import can
from nodes.models import BUILT_IN_NAME

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


# --- New Item ---------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def new_job(request: HttpRequest) -> HttpResponse:
    """``/newJob`` (the form) and ``/createItem`` (its POST), as in Jenkins."""
    _require(request.user, "builds.add_job")
    if request.method == "POST":
        form = job_forms.NewJobForm(request.POST)
        if form.is_valid():
            job = form.save()
            services.announce(services.QUEUE_GROUP, event="created")
            return redirect("builds:configure", job.name)
    else:
        form = job_forms.NewJobForm(initial={"copy_from": request.GET.get("from", "")})
    return render(
        request,
        "builds/new_job.html",
        {
            "form": form,
            "blurb": job_forms.FREESTYLE_BLURB,
            "job_names": list(Job.objects.values_list("name", flat=True)[:500]),
        },
    )


@require_GET
def check_job_name(request: HttpRequest) -> HttpResponse:
    """Jenkins' live ``checkJobName``: the first problem with the typed name, or nothing."""
    _require(request.user, "builds.add_job")
    value = request.GET.get("value", request.GET.get("name", ""))
    errors = job_forms.job_name_errors(value) if value.strip() else []
    return render(request, "builds/_name_check.html", {"errors": errors})


@require_GET
def check_label(request: HttpRequest) -> HttpResponse:
    """Live validation of the Label Expression field (Jenkins' ``checkLabel``)."""
    _require(request.user, "builds.view_job")
    value = request.GET.get("value", request.GET.get("label_expression", ""))
    results = job_forms.check_label_expression(value)
    return render(request, "builds/_label_check.html", {"results": results})


# --- the job page -------------------------------------------------------------------------------


def _live_item(job: Job) -> QueueItem | None:
    return QueueItem.objects.filter(job=job, state__in=QueueItem.LIVE_STATES).first()


def _history_context(request: HttpRequest, job: Job) -> dict:
    now = timezone.now()
    # The queue item first, then the builds: an item that leaves the queue between the two
    # queries shows up as its build, so the page never misses it and stops following.
    item = _live_item(job)
    paginator = Paginator(job.builds.select_related("node").order_by("-number"), HISTORY_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    builds = list(page.object_list)
    older_color = "notbuilt"
    if builds and builds[-1].status != Status.FINISHED:
        older_color = _previous_color(builds[-1])
    live = item is not None or any(b.status != Status.FINISHED for b in builds)
    return {
        "job": job,
        "rows": history_rows(builds, older_color, now),
        "page": page,
        "queue_item": item,
        "queue_causes": services.cause_lines(item.causes) if item else [],
        "live": live,
    }


def _permalinks(job: Job, now: datetime) -> list[dict]:
    found = []
    for link, (label, _q) in PERMALINKS.items():
        build = permalink_build(job, link)
        if build is not None:
            found.append(
                {
                    "link": link,
                    "label": label,
                    "build": build,
                    "ago": time_since(build_time(build), now),
                }
            )
    return found


@require_GET
def job_detail(request: HttpRequest, name: str) -> HttpResponse:
    _require(request.user, "builds.view_job")
    job = _job_or_404(name)
    context = {
        **_history_context(request, job),
        "ball": job_ball(job),
        "permalinks": _permalinks(job, timezone.now()),
    }
    if request.htmx:
        # The live part (permalinks, history) and, out of band, the heading's ball.
        response = render(request, "builds/_job_live.html", {**context, "oob": True})
        if not context["live"]:
            response.status_code = HttpResponseStopPolling.status_code
        return response
    context.update(
        default_quiet_period=services.quiet_period_of(Job(quiet_period=None)),
        perms_job=job_perms(request.user),
        label_results=job_forms.check_label_expression(job.label_expression)
        if job.label_expression
        else [],
    )
    return render(request, "builds/job.html", context)


@require_http_methods(["GET", "POST"])
def configure(request: HttpRequest, name: str) -> HttpResponse:
    """``/job/<name>/configure``; read-only for those who may only look."""
    _require(request.user, "builds.view_job")
    job = _job_or_404(name)
    may_change = can(request.user, "builds.change_job")
    if request.method == "POST":
        _require(request.user, "builds.change_job")
        form = job_forms.JobConfigForm(request.POST, instance=job)
        steps = job_forms.step_formset(job, request.POST)
        if form.is_valid() and steps.is_valid():
            job_forms.save_configuration(form, steps)
            messages.success(request, "Saved")
            if "apply" in request.POST:
                return redirect("builds:configure", job.name)
            return redirect("builds:job", job.name)
    else:
        form = job_forms.JobConfigForm(instance=job)
        steps = job_forms.step_formset(job)
    if not may_change:
        for field in form.fields.values():
            field.disabled = True
        for step in steps.forms:
            for field in step.fields.values():
                field.disabled = True
    return render(
        request,
        "builds/configure.html",
        {
            "job": job,
            "form": form,
            "steps": steps,
            "may_change": may_change,
            "perms_job": job_perms(request.user),
            "label_results": job_forms.check_label_expression(
                form["label_expression"].value() or ""
            )
            if form["label_expression"].value()
            else [],
            "max_steps": job_forms.MAX_STEPS,
        },
    )


def _parse_delay(value: str | None) -> int | None:
    """Jenkins' ``?delay=10sec`` (also a plain number of seconds)."""
    if not value:
        return None
    match = re.fullmatch(r"\s*(\d{1,7})\s*(sec|secs|s)?\s*", value)
    if not match:
        raise ValueError(value)
    return int(match.group(1))


@require_POST
def build_now(request: HttpRequest, name: str) -> HttpResponse:
    """``POST /job/<name>/build``: 201 + Location of a new queue item, 303 to the item a
    request folded into (API clients); a redirect back with a message for the browser."""
    _require(request.user, "builds.build_job")
    job = _job_or_404(name)
    try:
        delay = _parse_delay(request.GET.get("delay") or request.POST.get("delay"))
    except ValueError:
        return HttpResponseBadRequest(
            "Invalid delay; use e.g. delay=10sec", content_type="text/plain"
        )
    try:
        item, created = services.schedule_build(job, services.user_cause(request.user), delay=delay)
    except services.BuildError as error:
        if _wants_html(request):
            messages.error(request, str(error))
            return redirect("builds:job", job.name)
        return HttpResponse(str(error), status=409, content_type="text/plain")
    location = request.build_absolute_uri(reverse("builds:queue-item", args=[item.pk]))
    if _wants_html(request):
        if created:
            messages.success(request, "Build scheduled")
        else:
            messages.info(request, "Build scheduled (merged into the build already in the queue)")
        return redirect("builds:job", job.name)
    response = JsonResponse(
        {"queueItem": item.pk, "url": location, "created": created}, status=201 if created else 303
    )
    response["Location"] = location
    return response


@require_http_methods(["GET", "POST"])
def rename(request: HttpRequest, name: str) -> HttpResponse:
    """``/job/<name>/confirm-rename`` (the form) and ``confirmRename`` (its POST)."""
    _require(request.user, "builds.change_job")
    job = _job_or_404(name)
    if request.method == "POST":
        form = job_forms.RenameForm(request.POST, job=job)
        if form.is_valid():
            form.save()
            messages.success(request, f"Renamed to {job.name}")
            return redirect("builds:job", job.name)
    else:
        form = job_forms.RenameForm(job=job)
    return render(
        request,
        "builds/rename.html",
        {"job": job, "form": form, "perms_job": job_perms(request.user)},
    )


@require_http_methods(["GET", "POST"])
def delete_job(request: HttpRequest, name: str) -> HttpResponse:
    """``GET /job/<name>/delete`` asks "Delete the Project ‘x’?"; POST (or ``doDelete``) deletes."""
    _require(request.user, "builds.delete_job")
    job = _job_or_404(name)
    if request.method == "GET":
        return render(
            request, "builds/delete.html", {"job": job, "perms_job": job_perms(request.user)}
        )
    try:
        services.delete_job(job)
    except services.BuildError as error:
        messages.error(request, str(error))
        return redirect("builds:job", job.name)
    messages.success(request, f"Deleted the project ‘{name}’")
    return redirect("dashboard")


@require_POST
def set_enabled(request: HttpRequest, name: str, *, enable: bool) -> HttpResponse:
    """``POST /job/<name>/enable`` and ``/disable``."""
    _require(request.user, "builds.change_job")
    job = _job_or_404(name)
    job_forms.set_disabled(job, not enable)
    return redirect("builds:job", job.name)


@require_GET
def permalink(request: HttpRequest, name: str, link: str, rest: str = "") -> HttpResponse:
    """``/job/<name>/lastBuild/…`` redirects to the build it stands for (with the rest of the path)."""
    _require(request.user, "builds.view_job")
    job = _job_or_404(name)
    build = permalink_build(job, link)
    if build is None:
        raise Http404(f"{PERMALINKS[link][0]}: none")
    target = reverse("builds:build", args=[job.name, build.number]) + rest
    if request.META.get("QUERY_STRING"):
        target += "?" + request.META["QUERY_STRING"]
    return redirect(target)


# --- the build page ---------------------------------------------------------------------------


def _build_context(request: HttpRequest, build: Build) -> dict:
    now = timezone.now()
    previous = (
        build.job.builds.filter(number__lt=build.number).values_list("number", flat=True).first()
    )
    following = (
        build.job.builds.filter(number__gt=build.number)
        .order_by("number")
        .values_list("number", flat=True)
        .first()
    )
    ball = build_ball(build, _previous_color(build)) if build.building else build_ball(build)
    return {
        "job": build.job,
        "build": build,
        "ball": ball,
        "causes": services.cause_lines(build.causes),
        "started_ago": time_since(build.started_at, now),
        "duration": format_duration(build_duration_ms(build, now) / 1000),
        "previous_number": previous,
        "next_number": following,
        "perms_job": job_perms(request.user),
        "full_name": f"{build.job.name} #{build.number}",
    }


@require_GET
def build_detail(request: HttpRequest, name: str, number: int) -> HttpResponse:
    _require(request.user, "builds.view_build")
    build = _build_or_404(name, number)
    context = _build_context(request, build)
    if request.htmx:
        response = render(request, "builds/_build_status.html", context)
        if not build.building:
            response.status_code = HttpResponseStopPolling.status_code
        return response
    return render(request, "builds/build.html", context)


@require_POST
def stop_build(request: HttpRequest, name: str, number: int) -> HttpResponse:
    """``POST /job/<name>/<n>/stop``: abort the build (its agent kills the process group)."""
    _require(request.user, "builds.cancel_build")
    build = _build_or_404(name, number)
    aborting = services.abort_build(build, request.user)
    if request.htmx:  # e.g. the executor widget's button: it refreshes itself
        return HttpResponse(status=204)
    if aborting and _wants_html(request):
        messages.info(request, f"Aborting {build.job.name} #{build.number}…")
    return redirect("builds:build", build.job.name, build.number)


# --- the console ------------------------------------------------------------------------------


def _stream(build: Build) -> LogStream | None:
    return LogStream.objects.filter(key=build.log_key).first()


@dataclass
class ConsoleTail:
    lines: list[str]  # HTML of each line (spans never cross a line)
    open_line: bool  # the last line has no newline yet
    skipped_kb: int
    next_offset: int
    sgr: str
    complete: bool


def console_tail(
    build: Build, tail_bytes: int = CONSOLE_TAIL_BYTES, max_lines: int = CONSOLE_MAX_LINES
) -> ConsoleTail:
    """The last ``tail_bytes`` (and at most ``max_lines`` lines) of the log from a line start,
    as HTML, and where it ends."""
    stream = _stream(build)
    if stream is None:
        return ConsoleTail([], False, 0, 0, "", not build.building)
    size = stream.size
    start = max(0, size - tail_bytes)
    data = logs.read(stream.pk, start, size - start)[: size - start] if size > start else b""
    if start > 0:
        # Begin at a line start, like a reader would expect; a single huge line is cut as is.
        newline = data.find(b"\n")
        if 0 <= newline < len(data) - 1:
            data = data[newline + 1 :]
            start += newline + 1
    # No more lines than the page keeps: the browser never starts above its own bound.
    excess = data.count(b"\n") - max_lines
    if excess > 0:
        cut = -1
        for _ in range(excess):
            cut = data.index(b"\n", cut + 1)
        data = data[cut + 1 :]
        start += cut + 1
    cursor = logs.TextCursor(start)
    converter = AnsiConverter()
    html = converter.feed(cursor.feed(data))
    next_offset = cursor.resume_offset - len(converter.pending.encode())
    lines = html.split("\n")
    open_line = bool(lines) and lines[-1] != ""
    if not open_line:
        lines.pop()
    return ConsoleTail(
        lines=lines,
        open_line=open_line,
        skipped_kb=start // 1024,
        next_offset=next_offset,
        sgr=converter.state.codes(),
        complete=stream.complete and next_offset >= size,
    )


@require_GET
def console(request: HttpRequest, name: str, number: int) -> HttpResponse:
    """The console: the tail of the log, then live over ``ws/builds/<id>/console/``."""
    _require(request.user, "builds.view_build")
    build = _build_or_404(name, number)
    context = _build_context(request, build)
    context.update(
        tail=console_tail(build),
        max_lines=CONSOLE_MAX_LINES,
        max_chars=CONSOLE_MAX_CHARS,
        # The page swaps in the final ball when the socket says the build finished.
        result_balls=[
            (result, Ball(color, "").css, COLOR_TOOLTIP[color])
            for result, color in RESULT_COLOR.items()
        ],
    )
    return render(request, "builds/console.html", context)


@require_GET
def console_full(request: HttpRequest, name: str, number: int) -> HttpResponse:
    """Jenkins' ``consoleFull``: the whole log is served as plain text (a browser renders
    that without building a DOM node per line)."""
    return redirect("builds:console-text", name, number)


def _iter_log(stream_id: int) -> Iterator[bytes]:
    yield from logs.iter_bytes(stream_id)


async def _aiter_log(stream_id: int) -> AsyncIterator[bytes]:
    # Under ASGI a sync iterator would be read whole into memory first: read chunk by chunk.
    position = 0
    while True:
        data = await sync_to_async(logs.read)(stream_id, position)
        if not data:
            return
        yield data
        position += len(data)


@require_GET
def console_text(request: HttpRequest, name: str, number: int) -> HttpResponse:
    """``/job/<name>/<n>/consoleText``: the whole log as text/plain, streamed."""
    _require(request.user, "builds.view_build")
    build = _build_or_404(name, number)
    stream = _stream(build)
    if stream is None:
        chunks: Iterator[bytes] | AsyncIterator[bytes] = iter(())
    elif isinstance(request, ASGIRequest):
        chunks = _aiter_log(stream.pk)
    else:
        chunks = _iter_log(stream.pk)
    response = StreamingHttpResponse(chunks, content_type="text/plain; charset=utf-8")
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _accepts_gzip(request: HttpRequest) -> bool:
    for part in request.headers.get("Accept-Encoding", "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            match = re.search(r"q\s*=\s*([0-9.]+)", params)
            try:
                return not match or float(match.group(1)) > 0
            except ValueError:
                return False
    return False


def progressive_slice(stream_id: int, start: int, size: int, complete: bool) -> tuple[bytes, bool]:
    """Jenkins' LargeText.doProgressText body from ``start``: at most 10,000 lines, and an
    incomplete log only up to its last newline. Returns (body, whether more data follows)."""
    out = bytearray()
    lines = 0
    capped = False
    position = start
    while position < size:
        piece = logs.read(stream_id, position, min(logs.READ_LIMIT, size - position))
        piece = piece[: size - position]
        if not piece:
            break
        count = piece.count(b"\n")
        if lines + count >= PROGRESSIVE_MAX_LINES:
            cut = -1
            for _ in range(PROGRESSIVE_MAX_LINES - lines):
                cut = piece.index(b"\n", cut + 1)
            out += piece[: cut + 1]
            capped = position + cut + 1 < size
            break
        out += piece
        lines += count
        position += len(piece)
        if len(out) >= PROGRESSIVE_MAX_BYTES:
            # Memory stays bounded even for lines of megabytes: the client asks again.
            newline = out.rfind(b"\n", 0, PROGRESSIVE_MAX_BYTES)
            del out[newline + 1 if newline >= 0 else PROGRESSIVE_MAX_BYTES :]
            capped = start + len(out) < size
            break
    if not complete:
        del out[out.rfind(b"\n") + 1 :]
    return bytes(out), capped or not complete


@csrf_exempt  # read-only; Jenkins accepts GET and POST here
@require_http_methods(["GET", "POST"])
def progressive_text(request: HttpRequest, name: str, number: int) -> HttpResponse:
    """``/job/<name>/<n>/logText/progressiveText?start=<byte>`` exactly as Jenkins serves it:
    ``X-Text-Size`` is the next offset, ``X-More-Data: true`` while there is more to come."""
    _require(request.user, "builds.view_build")
    build = _build_or_404(name, number)
    raw_start = request.GET.get("start", request.POST.get("start", "0")) or "0"
    try:
        start = int(raw_start)
    except ValueError:
        return HttpResponseBadRequest(f"Invalid start: {raw_start}", content_type="text/plain")
    response = HttpResponse(content_type="text/plain;charset=UTF-8")
    stream = _stream(build)
    if stream is None:
        response["X-Text-Size"] = "0"
        if build.building:
            response["X-More-Data"] = "true"
        return response
    size = stream.size
    complete = stream.complete or not build.building
    if start < 0:  # newer Jenkins: the last N bytes
        start = max(0, size + start)
    if start > size:  # the log was restarted ("rolled over")
        start = 0
    body, more = progressive_slice(stream.pk, start, size, complete)
    response["X-Text-Size"] = str(start + len(body))
    if more:
        response["X-More-Data"] = "true"
    response["Vary"] = "Accept-Encoding"
    if len(body) > GZIP_MIN_BYTES and _accepts_gzip(request):
        body = gzip.compress(body, compresslevel=6)
        response["Content-Encoding"] = "gzip"
    response.content = body
    return response


# --- JSON API ---------------------------------------------------------------------------------


def _ms(moment: datetime | None) -> int | None:
    return int(moment.timestamp() * 1000) if moment is not None else None


def _cause_objects(causes: list[dict]) -> list[dict]:
    """Jenkins' CauseAction lists a folded cause once per request."""
    return [{"shortDescription": c["text"]} for c in causes for _ in range(c.get("count", 1))]


def _build_ref(request: HttpRequest, build: Build | None, job_name: str) -> dict | None:
    if build is None:
        return None
    return {
        "_class": BUILD_CLASS,
        "number": build.number,
        "url": request.build_absolute_uri(reverse("builds:build", args=[job_name, build.number])),
    }


@require_GET
def build_api(request: HttpRequest, name: str, number: int) -> JsonResponse:
    _require(request.user, "builds.view_build")
    build = _build_or_404(name, number)
    node_name = ""
    if build.node is not None and not build.node.is_builtin:
        node_name = build.node.name  # Jenkins reports "" for the built-in node
    elif build.node is None and build.node_name and build.node_name != BUILT_IN_NAME:
        node_name = build.node_name
    data = {
        "_class": BUILD_CLASS,
        "actions": [
            {
                "_class": "hudson.model.CauseAction",
                "causes": _cause_objects(build.causes),
            }
        ],
        "building": build.building,
        "description": None,
        "displayName": f"#{build.number}",
        "duration": build.duration_ms
        if not build.building and build.duration_ms is not None
        else 0,
        "estimatedDuration": -1,
        "fullDisplayName": f"{build.job.name} #{build.number}",
        "id": str(build.number),
        "number": build.number,
        "queueId": QueueItem.objects.filter(build=build).values_list("pk", flat=True).first() or -1,
        "result": None if build.building else (build.result or None),
        "timestamp": _ms(build_time(build)),
        "url": request.build_absolute_uri(
            reverse("builds:build", args=[build.job.name, build.number])
        ),
        "builtOn": node_name,
        "executor": None,
    }
    return JsonResponse(data)


@require_GET
def job_api(request: HttpRequest, name: str) -> JsonResponse:
    _require(request.user, "builds.view_job")
    job = _job_or_404(name)
    builds = list(job.builds.order_by("-number")[:API_BUILDS])
    item = _live_item(job)
    data = {
        "_class": JOB_CLASS,
        "name": job.name,
        "displayName": job.name,
        "fullName": job.name,
        "fullDisplayName": job.name,
        "description": job.description or None,
        "url": request.build_absolute_uri(reverse("builds:job", args=[job.name])),
        "buildable": not job.disabled,
        "disabled": job.disabled,
        "color": job_ball(job).color,
        "concurrentBuild": job.concurrent_build,
        "builds": [_build_ref(request, b, job.name) for b in builds],
        "firstBuild": _build_ref(request, job.builds.order_by("number").first(), job.name),
        "inQueue": item is not None,
        "queueItem": _queue_item_data(request, item) if item else None,
        "keepDependencies": False,
        "nextBuildNumber": job.next_build_number,
        "labelExpression": job.label_expression or None,
    }
    for link in PERMALINKS:
        data[link] = _build_ref(request, permalink_build(job, link), job.name)
    return JsonResponse(data)


# --- queue items ------------------------------------------------------------------------------

QUEUE_ITEM_CLASS = {
    QueueItem.State.WAITING: "hudson.model.Queue$WaitingItem",
    QueueItem.State.BLOCKED: "hudson.model.Queue$BlockedItem",
    QueueItem.State.BUILDABLE: "hudson.model.Queue$BuildableItem",
    QueueItem.State.LEFT: "hudson.model.Queue$LeftItem",
}


def _queue_item_data(request: HttpRequest, item: QueueItem) -> dict:
    job = item.job
    left = item.state == QueueItem.State.LEFT
    data = {
        "_class": QUEUE_ITEM_CLASS[item.state],
        "actions": [
            {
                "_class": "hudson.model.CauseAction",
                "causes": _cause_objects(item.causes),
            }
        ],
        "blocked": item.state == QueueItem.State.BLOCKED,
        "buildable": item.state == QueueItem.State.BUILDABLE,
        "id": item.pk,
        "inQueueSince": _ms(item.in_queue_since),
        "params": "",
        "stuck": False,
        "task": {
            "_class": JOB_CLASS,
            "name": job.name,
            "url": request.build_absolute_uri(reverse("builds:job", args=[job.name])),
            "color": job_ball(job).color,
        },
        "url": f"queue/item/{item.pk}/",
        "why": None if left else (item.why or None),
    }
    if item.state == QueueItem.State.WAITING:
        data["timestamp"] = _ms(item.due_at)
    elif item.state in (QueueItem.State.BLOCKED, QueueItem.State.BUILDABLE):
        data["buildableStartMilliseconds"] = _ms(item.due_at)
        if item.state == QueueItem.State.BUILDABLE:
            data["pending"] = False
    else:
        data["cancelled"] = item.cancelled
        data["executable"] = _build_ref(request, item.build, job.name) if item.build else None
    return data


def _queue_item_or_404(item_id: int) -> QueueItem:
    item = QueueItem.objects.select_related("job", "build").filter(pk=item_id).first()
    if item is None:
        raise Http404("No such queue item")
    return item


@require_GET
def queue_item(request: HttpRequest, item_id: int) -> HttpResponse:
    """``/queue/item/<id>/``: what became of a build request. Persistent: it never expires."""
    _require(request.user, "builds.view_job")
    item = _queue_item_or_404(item_id)
    context = {
        "item": item,
        "job": item.job,
        "causes": services.cause_lines(item.causes),
        "waiting_for": time_since(item.in_queue_since),
        "live": item.state != QueueItem.State.LEFT,
    }
    if request.htmx:
        response = render(request, "builds/_queue_item_status.html", context)
        if not context["live"]:
            response.status_code = HttpResponseStopPolling.status_code
        return response
    return render(request, "builds/queue_item.html", context)


@require_GET
def queue_item_api(request: HttpRequest, item_id: int) -> JsonResponse:
    _require(request.user, "builds.view_job")
    return JsonResponse(_queue_item_data(request, _queue_item_or_404(item_id)))
