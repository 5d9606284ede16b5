"""Template tags that load the Build Queue and Build Executor Status widgets, so any page can
include them (``{% include "builds/widgets/executors.html" with node=node %}``) without its
view preparing anything."""

from __future__ import annotations

from django import template

from builds import widgets
from console.permissions import can

register = template.Library()


@register.simple_tag(takes_context=True)
def build_queue_status(context) -> widgets.BuildQueue | None:
    """The live queue, or None when the user may not see jobs."""
    request = context.get("request")
    if request is None or not can(request.user, "builds.view_job"):
        return None
    return widgets.build_queue()


@register.simple_tag(takes_context=True)
def executor_status(context, node=None) -> widgets.ExecutorStatus | None:
    """Executors of every node, or of ``node``; None when the user may not see nodes."""
    request = context.get("request")
    if request is None or not can(request.user, "nodes.view_node"):
        return None
    return widgets.executor_status(node or None)
