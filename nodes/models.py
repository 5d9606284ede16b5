"""Nodes (Jenkins "computers"): their configuration, their connection and availability state,
their launches (each with its own agent log), their trusted SSH host keys and monitor data.

Connection and availability are two separate facts (JENKINS.md f#14): a node is connected,
connecting, disconnected or failed; independently it is accepting tasks or offline by a user,
by a monitor, or idle (demand retention). Each fact records who or what caused it and when.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse

BUILT_IN_NAME = "(built-in)"
BUILT_IN_DISPLAY_NAME = "Built-In Node"
BUILT_IN_LABEL = "built-in"


class Node(models.Model):
    class Mode(models.TextChoices):
        NORMAL = "NORMAL", "Use this node as much as possible"
        EXCLUSIVE = "EXCLUSIVE", "Only build jobs with label expressions matching this node"

    class Retention(models.TextChoices):
        ALWAYS = "always", "Keep this agent online as much as possible"
        DEMAND = "demand", "Bring this agent online when in demand, and take offline when idle"

    class Connection(models.TextChoices):
        DISCONNECTED = "disconnected", "Disconnected"
        CONNECTING = "connecting", "Connecting"
        CONNECTED = "connected", "Connected"
        FAILED = "failed", "Failed"

    class Offline(models.TextChoices):
        NONE = "", "Accepting tasks"
        USER = "user", "Offline by user"
        MONITOR = "monitor", "Offline by monitor"
        IDLE = "idle", "Offline because idle"

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    num_executors = models.PositiveIntegerField("Number of executors", default=1)
    remote_fs = models.CharField("Remote root directory", max_length=1000, blank=True)
    label_string = models.CharField("Labels", max_length=1000, blank=True)
    mode = models.CharField("Usage", max_length=16, choices=Mode.choices, default=Mode.NORMAL)
    is_builtin = models.BooleanField(default=False, editable=False)
    launcher = models.CharField("Launch method", max_length=32, default="ssh")
    launcher_config = models.JSONField(default=dict, blank=True)
    retention = models.CharField(
        "Availability", max_length=16, choices=Retention.choices, default=Retention.ALWAYS
    )
    in_demand_delay = models.PositiveIntegerField("In demand delay", default=0)
    idle_delay = models.PositiveIntegerField("Idle delay", default=1)
    env_vars = models.JSONField("Environment variables", default=list, blank=True)
    disk_thresholds = models.JSONField("Disk Space Monitoring Thresholds", default=dict, blank=True)
    hold_off_launch = models.BooleanField(default=False)

    # --- connection (what the launcher says)
    connection = models.CharField(
        max_length=16, choices=Connection.choices, default=Connection.DISCONNECTED
    )
    connection_cause = models.TextField(blank=True)
    connection_changed_at = models.DateTimeField(null=True, blank=True)
    launch_number = models.PositiveIntegerField(default=0)
    launch_attempt = models.PositiveIntegerField(default=0)
    consecutive_failures = models.PositiveIntegerField(default=0)
    next_launch_at = models.DateTimeField(null=True, blank=True)
    launch_cancel_requested = models.BooleanField(default=False)
    connected_at = models.DateTimeField(null=True, blank=True)
    was_online = models.BooleanField(default=False)  # relaunch after a controller restart
    agent_info = models.JSONField(default=dict, blank=True)

    # --- availability (who or what took it offline)
    offline = models.CharField(max_length=16, choices=Offline.choices, default="", blank=True)
    offline_message = models.TextField(blank=True)
    offline_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    offline_at = models.DateTimeField(null=True, blank=True)
    idle_since = models.DateTimeField(null=True, blank=True)
    demand_since = models.DateTimeField(null=True, blank=True)

    # --- the latest monitor data (one row read for the whole Nodes list)
    monitor_data = models.JSONField(default=dict, blank=True)
    monitor_at = models.DateTimeField(null=True, blank=True)
    response_timeouts = models.PositiveIntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-is_builtin", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_builtin"], condition=models.Q(is_builtin=True), name="one_builtin_node"
            )
        ]
        permissions = [
            ("connect_node", "Can launch (connect) an agent"),
            ("disconnect_node", "Can disconnect an agent or take it offline"),
        ]

    def __str__(self) -> str:
        return self.display_name

    def get_absolute_url(self) -> str:
        return reverse("nodes:detail", args=[self.url_name])

    def get_absolute_url_safe(self) -> str:
        """The node page URL, or "" while the nodes URLs are not loaded (e.g. in a worker)."""
        try:
            return self.get_absolute_url()
        except Exception:  # NoReverseMatch
            return ""

    @property
    def display_name(self) -> str:
        return BUILT_IN_DISPLAY_NAME if self.is_builtin else self.name

    @property
    def url_name(self) -> str:
        return BUILT_IN_NAME if self.is_builtin else self.name

    @property
    def environment(self) -> dict[str, str]:
        """The Environment variables node property, as stored by the form: name/value rows."""
        return {str(row["name"]): str(row.get("value", "")) for row in self.env_vars or []}

    @property
    def is_online(self) -> bool:
        """Connected and accepting tasks (Jenkins' "online")."""
        return self.connection == self.Connection.CONNECTED and not self.offline

    @property
    def log_key(self) -> str:
        return f"node-{self.pk}-log-{self.launch_number}"


class NodeHostKey(models.Model):
    """SSH host keys for the "Manually trusted key" strategy: one trusted, at most one pending."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="host_keys")
    algorithm = models.CharField(max_length=64)
    key_base64 = models.TextField()
    fingerprint = models.CharField(max_length=100)
    trusted = models.BooleanField(default=False)
    seen_at = models.DateTimeField(auto_now_add=True)
    trusted_at = models.DateTimeField(null=True, blank=True)
    trusted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["node"], condition=models.Q(trusted=True), name="one_trusted_host_key"
            ),
            models.UniqueConstraint(
                fields=["node"], condition=models.Q(trusted=False), name="one_pending_host_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.algorithm} {self.fingerprint}"


class MonitorSettings(models.Model):
    """Configure Node Monitors: one row (pk=1)."""

    interval_seconds = models.PositiveIntegerField(default=60)
    free_disk_threshold = models.CharField(max_length=32, default="1GiB")
    free_disk_warning = models.CharField(max_length=32, default="2GiB")
    free_temp_threshold = models.CharField(max_length=32, default="1GiB")
    free_temp_warning = models.CharField(max_length=32, default="2GiB")
    disk_ignored = models.BooleanField("Don't mark agents temporarily offline", default=False)
    temp_ignored = models.BooleanField("Don't mark agents temporarily offline", default=False)
    response_ignored = models.BooleanField("Don't mark agents temporarily offline", default=False)
    last_run_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return "Node monitor settings"

    @classmethod
    def load(cls) -> MonitorSettings:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj
