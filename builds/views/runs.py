"""The build page, Stop, and the console with its plain-text and progressive endpoints
(JENKINS.md d7, d8)."""

from __future__ import annotations

import gzip
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.core.handlers.asgi import ASGIRequest
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from builds import services
from builds.ansi import AnsiConverter
from builds.models import Build
from builds.scheduler import format_duration
from builds.views.common import (
    COLOR_TOOLTIP,
    CONSOLE_MAX_CHARS,
    CONSOLE_MAX_LINES,
    CONSOLE_TAIL_BYTES,
    GZIP_MIN_BYTES,
    PROGRESSIVE_MAX_BYTES,
    PROGRESSIVE_MAX_LINES,
    RESULT_COLOR,
    Ball,
    _build_or_404,
    _previous_color,
    _require,
    _wants_html,
    build_ball,
    build_duration_ms,
    job_perms,
    time_since,
)
from console import logs
from console.models import LogStream

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
