"""The JSON endpoints Jenkins clients read: a job, a build, a queue item (JENKINS.md d1)."""

from __future__ import annotations

from datetime import datetime

from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
)
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET
from django_htmx.http import HttpResponseStopPolling

from builds import services
from builds.models import Build, QueueItem
from builds.views.common import (
    API_BUILDS,
    BUILD_CLASS,
    JOB_CLASS,
    PERMALINKS,
    _build_or_404,
    _job_or_404,
    _require,
    build_time,
    job_ball,
    permalink_build,
    time_since,
)
from builds.views.jobs import _live_item
from nodes.models import BUILT_IN_NAME

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
