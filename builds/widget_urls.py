"""URLs of the dashboard widgets and of Jenkins' queue endpoints (included at the root)."""

from django.urls import path

from builds import widget_views

urlpatterns = [
    path("widgets/buildQueue", widget_views.build_queue, name="build-queue"),
    path("widgets/executors", widget_views.executors, name="executors"),
    path("widgets/jobs", widget_views.job_list, name="jobs"),
    path("queue/cancelItem", widget_views.cancel_item, name="cancel-item"),
    path("queue/api/json", widget_views.queue_api, name="queue-api"),
]
