"""The widgets' partials (re-fetched by htmx when the WebSocket says something changed), the
queue's cancelItem action and ``/queue/api/json``, with Jenkins' status codes and messages."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from builds import services, widgets
from builds.models import QueueItem
from console.permissions import can
from nodes.models import Node
from nodes.services import get_node


def _require(request: HttpRequest, perm: str) -> None:
    if not can(request.user, perm):
        raise PermissionDenied(perm)


@require_GET
def build_queue(request: HttpRequest) -> HttpResponse:
    _require(request, "builds.view_job")
    return render(request, "builds/widgets/_build_queue.html", {"queue": widgets.build_queue()})


@require_GET
def executors(request: HttpRequest) -> HttpResponse:
    _require(request, "nodes.view_node")
    node = None
    name = request.GET.get("node")
    if name:
        try:
            node = get_node(name)
        except Node.DoesNotExist:
            raise Http404(f"No node named {name}") from None
    return render(
        request, "builds/widgets/_executors.html", {"status": widgets.executor_status(node)}
    )


@require_GET
def job_list(request: HttpRequest) -> HttpResponse:
    _require(request, "builds.view_job")
    return render(request, "builds/widgets/_job_list.html", {"jobs": widgets.job_rows()})


def _text(status: int, message: str) -> HttpResponse:
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


@require_POST
def cancel_item(request: HttpRequest) -> HttpResponse:
    """Jenkins' ``POST /queue/cancelItem?id=N``: 204 when cancelled, 404 for an unknown id,
    422 for an item that already left the queue (started, or cancelled before)."""
    _require(request, "builds.view_job")
    raw = request.GET.get("id", request.POST.get("id", ""))
    item_id = int(raw) if raw.isdigit() else None
    item = QueueItem.objects.filter(pk=item_id).first() if item_id is not None else None
    if item is None:
        return _text(404, widgets.NOT_FOUND.format(raw))
    _require(request, "builds.cancel_build")
    if not services.cancel_item(item.pk):
        return _text(422, widgets.NOT_CANCELLABLE.format(item.pk))
    return HttpResponse(status=204)


def _base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/").rstrip("/")


@require_GET
def queue_api(request: HttpRequest) -> JsonResponse:
    _require(request, "builds.view_job")
    return JsonResponse(widgets.queue_json(_base_url(request)))
