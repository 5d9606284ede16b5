"""Django admin for nodes: configuration is readable and editable; the state facts are shown
but only changed through nodes.services (the admin actions call the same functions)."""

from __future__ import annotations

from django.contrib import admin, messages

from nodes import services
from nodes.models import MonitorSettings, Node, NodeHostKey

STATE_FIELDS = (
    "connection",
    "connection_cause",
    "connection_changed_at",
    "launch_number",
    "launch_attempt",
    "consecutive_failures",
    "next_launch_at",
    "connected_at",
    "offline",
    "offline_message",
    "offline_by",
    "offline_at",
    "monitor_at",
    "agent_info",
    "monitor_data",
)


class NodeHostKeyInline(admin.TabularInline):
    model = NodeHostKey
    extra = 0
    fields = ("algorithm", "fingerprint", "trusted", "seen_at", "trusted_at", "trusted_by")
    readonly_fields = fields
    can_delete = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ("name", "is_builtin", "launcher", "num_executors", "connection", "offline")
    list_filter = ("connection", "offline", "launcher", "retention", "mode")
    search_fields = ("name", "label_string", "description")
    readonly_fields = ("is_builtin",) + STATE_FIELDS
    inlines = [NodeHostKeyInline]
    actions = ["mark_offline", "bring_online", "launch"]

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.is_builtin:
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request, obj: Node) -> None:
        services.delete_node(obj)

    def delete_queryset(self, request, queryset) -> None:
        for node in queryset.filter(is_builtin=False):
            services.delete_node(node)

    @admin.action(description="Mark this node temporarily offline", permissions=["change"])
    def mark_offline(self, request, queryset) -> None:
        for node in queryset:
            services.mark_offline(node, request.user, "")

    @admin.action(description="Bring this node back online", permissions=["change"])
    def bring_online(self, request, queryset) -> None:
        for node in queryset:
            services.bring_online(node)

    @admin.action(description="Launch agent", permissions=["change"])
    def launch(self, request, queryset) -> None:
        for node in queryset:
            try:
                services.request_launch(node, reason=f"Launched by {request.user.get_username()}")
            except services.NodeError as exc:
                self.message_user(request, f"{node}: {exc}", messages.WARNING)


@admin.register(MonitorSettings)
class MonitorSettingsAdmin(admin.ModelAdmin):
    list_display = ("interval_seconds", "free_disk_threshold", "free_temp_threshold", "last_run_at")
    readonly_fields = ("last_run_at",)

    def has_add_permission(self, request) -> bool:
        return not MonitorSettings.objects.exists()
