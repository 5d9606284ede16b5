"""The job screens: New Item, the live name and label checks, the job page, Configure, Build Now,
Rename, Delete, Enable/Disable and the permalinks (JENKINS.md d3)."""

from __future__ import annotations

import re
from datetime import datetime

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from builds import forms as job_forms
from builds import services
from builds.models import Job, QueueItem
from builds.views.common import (
    HISTORY_PAGE_SIZE,
    PERMALINKS,
    Status,
    _job_or_404,
    _previous_color,
    _require,
    _wants_html,
    build_time,
    history_rows,
    job_ball,
    job_perms,
    permalink_build,
    time_since,
)
from console.permissions import can

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
