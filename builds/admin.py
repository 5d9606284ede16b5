"""Django admin for jobs, the queue, builds and executor slots. Job settings are editable;
queue items, builds and slots are facts the scheduler owns, so they are read-only here and
only changed through builds.services (the admin actions call the same functions)."""

from __future__ import annotations

from django.contrib import admin, messages

from builds import services
from builds.models import Build, Executor, Job, QueueItem


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("name", "disabled", "label_expression", "concurrent_build", "next_build_number")
    list_filter = ("disabled", "concurrent_build")
    search_fields = ("name", "description", "label_expression")
    readonly_fields = ("next_build_number", "last_built_on", "created_at")
    actions = ["build_now"]

    @admin.action(description="Build Now", permissions=["build"])
    def build_now(self, request, queryset) -> None:
        for job in queryset:
            try:
                services.schedule_build(job, services.user_cause(request.user))
            except services.BuildError as error:
                self.message_user(request, str(error), messages.ERROR)
        self.message_user(request, "Build scheduled")

    def has_build_permission(self, request) -> bool:
        return request.user.has_perm("builds.build_job")

    def delete_model(self, request, obj: Job) -> None:
        services.delete_job(obj)


@admin.register(QueueItem)
class QueueItemAdmin(ReadOnlyAdmin):
    list_display = ("id", "job", "state", "why", "due_at", "in_queue_since", "cancelled", "build")
    list_filter = ("state", "cancelled")
    search_fields = ("job__name", "why")
    actions = ["cancel"]

    @admin.action(description="Cancel the queued build", permissions=["cancel"])
    def cancel(self, request, queryset) -> None:
        cancelled = sum(services.cancel_item(item.pk) for item in queryset)
        self.message_user(request, f"Cancelled {cancelled} queued build(s)")

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm("builds.cancel_build")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Build)
class BuildAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "status", "result", "node_name", "started_at", "duration_ms")
    list_filter = ("status", "result")
    search_fields = ("job__name", "node_name")
    actions = ["abort"]

    @admin.action(description="Abort", permissions=["cancel"])
    def abort(self, request, queryset) -> None:
        aborted = sum(services.abort_build(build, request.user) for build in queryset)
        self.message_user(request, f"Aborting {aborted} build(s)")

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm("builds.cancel_build")

    def has_delete_permission(self, request, obj=None) -> bool:
        # A finished build may go; a running one holds an executor slot and a log writer.
        return obj is not None and not obj.building and super().has_delete_permission(request, obj)


@admin.register(Executor)
class ExecutorAdmin(ReadOnlyAdmin):
    list_display = ("node", "number", "build")
    list_filter = ("node",)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
