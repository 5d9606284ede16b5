"""The console's models in the Django admin (/admin/). All are records written by the system
(runtime checks, append-only logs): the admin shows them read-only."""

from django.contrib import admin

from console.models import LogChunk, LogStream, RuntimeCheck


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records the system writes; an administrator may look and delete, never edit or add."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RuntimeCheck)
class RuntimeCheckAdmin(ReadOnlyAdmin):
    # A check is started from System Information, which also enqueues it.
    list_display = ("id", "status", "requested_by", "created_at", "finished_at", "worker")
    list_filter = ("status",)


class LogChunkInline(admin.TabularInline):
    model = LogChunk
    fields = ("offset", "length")
    readonly_fields = ("offset", "length")
    extra = 0
    can_delete = False
    show_change_link = False

    @admin.display(description="Bytes")
    def length(self, chunk: LogChunk) -> int:
        # The bytes themselves stay out of the admin: logs are read on their own pages.
        return len(chunk.data)

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(LogStream)
class LogStreamAdmin(ReadOnlyAdmin):
    list_display = ("key", "size", "complete", "created_at", "updated_at")
    list_filter = ("complete",)
    search_fields = ("key",)
    inlines = [LogChunkInline]


@admin.register(LogChunk)
class LogChunkAdmin(ReadOnlyAdmin):
    list_display = ("stream", "offset", "length")
    fields = ("stream", "offset", "length")
    list_select_related = ("stream",)

    @admin.display(description="Bytes")
    def length(self, chunk: LogChunk) -> int:
        return len(chunk.data)


admin.site.site_header = "Steward administration"
admin.site.site_title = "Steward admin"
admin.site.index_title = "Models"
