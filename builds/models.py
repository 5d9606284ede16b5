"""Jobs (freestyle projects), the queue, builds and executor slots.

The executor slot row is what makes scheduling safe: a build claims a slot with a conditional
UPDATE (``... WHERE build IS NULL``) that must change exactly one row, so two schedulers
running at once can never double-book it, on SQLite or PostgreSQL.
"""

from __future__ import annotations

from django.db import models
from django.urls import reverse


class Job(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    disabled = models.BooleanField(default=False)
    label_expression = models.CharField("Label Expression", max_length=1000, blank=True)
    concurrent_build = models.BooleanField("Execute concurrent builds if necessary", default=False)
    quiet_period = models.PositiveIntegerField("Quiet period", null=True, blank=True)
    # [{"type": "shell", "command": "...", "unstable_return": null}, ...]
    steps = models.JSONField(default=list, blank=True)
    stuck_timeout_minutes = models.PositiveIntegerField(null=True, blank=True)
    delete_workspace = models.BooleanField("Delete workspace before build starts", default=False)
    timestamps = models.BooleanField("Add timestamps to the Console Output", default=False)

    # "This project is parameterized": the definitions, in order. Each is
    # {"type": "string" | "boolean" | "choice" | "password", "name", "description",
    #  "default" (string: text, boolean: true/false, choice: unused), "trim" (string),
    #  "choices" (choice: the list; the first is the default)}. A password parameter's default
    # is never here: it is in ``encrypted_secrets``.
    parameters = models.JSONField(default=list, blank=True)
    # Ciphertext (credentials.crypto, purpose JOB_SECRETS_PURPOSE) of a JSON object
    # {"<parameter name>": "<default password>"}; blank when there is none.
    encrypted_secrets = models.TextField(blank=True, editable=False)

    # Build Triggers.
    # "Trigger builds remotely (e.g., from scripts)": only a SHA-256 of the token is kept.
    remote_token_hash = models.CharField(max_length=64, blank=True, editable=False)
    # "Build after other projects are built": comma-separated job names, and the worst result
    # of theirs that still triggers this job (blank: the trigger is off).
    upstream_projects = models.CharField("Projects to watch", max_length=2000, blank=True)
    upstream_threshold = models.CharField(
        max_length=16,
        blank=True,
        choices=[
            ("SUCCESS", "Trigger only if build is stable"),
            ("UNSTABLE", "Trigger even if the build is unstable"),
            ("FAILURE", "Trigger even if the build fails"),
        ],
    )
    # "Build periodically": Jenkins' cron syntax (builds.cron); blank: off.
    timer_spec = models.TextField("Schedule", blank=True)
    # The last minute the timer was evaluated for, so a controller that was down does not
    # fire the runs it missed.
    timer_checked_at = models.DateTimeField(null=True, blank=True, editable=False)

    # Build Environment: "Use secret text(s) or file(s)". Each binding is
    # {"kind": "usernamePassword" | "usernameColonPassword" | "string" | "file"
    #           | "sshUserPrivateKey", "credential_id": "...", and the kind's variables:
    #  usernamePassword: "username_variable", "password_variable";
    #  usernameColonPassword, string, file: "variable";
    #  sshUserPrivateKey: "key_file_variable", "passphrase_variable", "username_variable"}.
    bindings = models.JSONField(default=list, blank=True)

    # "Discard old builds" (Log Rotation): blank = keep.
    discard_old_builds = models.BooleanField("Discard old builds", default=False)
    discard_days = models.PositiveIntegerField("Days to keep builds", null=True, blank=True)
    discard_num = models.PositiveIntegerField("Max # of builds to keep", null=True, blank=True)

    next_build_number = models.PositiveIntegerField(default=1)
    last_built_on = models.ForeignKey(
        "nodes.Node", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("build_job", "Can start a build of a job"),
            ("cancel_build", "Can abort a build"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("builds:job", args=[self.name])


class QueueItem(models.Model):
    class State(models.TextChoices):
        WAITING = "waiting", "In the quiet period"
        BLOCKED = "blocked", "Blocked"
        BUILDABLE = "buildable", "Waiting for an executor"
        LEFT = "left", "Left the queue"

    LIVE_STATES = (State.WAITING, State.BLOCKED, State.BUILDABLE)

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="queue_items")
    state = models.CharField(max_length=16, choices=State.choices, default=State.WAITING)
    due_at = models.DateTimeField()
    in_queue_since = models.DateTimeField(auto_now_add=True)
    # [{"text": "Started by user admin", "count": 2, "kind": "user", ...}, ...]: folded duplicate
    # requests count up. ``kind`` is "user" (+ "user"), "timer", "remote" (+ "addr", "note"),
    # "upstream" (+ "project", "build") or "scm"; the text is what the pages show.
    causes = models.JSONField(default=list)
    # The values this request was made with: [{"name", "value"}] in the job's order; a password
    # parameter is {"name", "secret": true} here and its value is in ``encrypted_parameters``.
    parameters = models.JSONField(default=list, blank=True)
    encrypted_parameters = models.TextField(blank=True, editable=False)
    # A keyed digest of all the values (passwords included): requests with the same values fold
    # into one item, different values make a new one (JENKINS.md d3).
    parameters_key = models.CharField(max_length=64, blank=True, editable=False)
    why = models.CharField(max_length=1000, blank=True)
    cancelled = models.BooleanField(default=False)
    build = models.OneToOneField(
        "Build", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    left_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["due_at", "id"]
        indexes = [models.Index(fields=["state", "due_at"])]

    def __str__(self) -> str:
        return f"queue item {self.pk} ({self.job.name})"


class Build(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        FINISHED = "finished", "Finished"

    class Result(models.TextChoices):
        SUCCESS = "SUCCESS", "Success"
        UNSTABLE = "UNSTABLE", "Unstable"
        FAILURE = "FAILURE", "Failed"
        NOT_BUILT = "NOT_BUILT", "Not built"
        ABORTED = "ABORTED", "Aborted"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="builds")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    result = models.CharField(max_length=16, choices=Result.choices, blank=True)
    causes = models.JSONField(default=list)
    # As on the queue item it came from.
    parameters = models.JSONField(default=list, blank=True)
    encrypted_parameters = models.TextField(blank=True, editable=False)
    node = models.ForeignKey(
        "nodes.Node", null=True, blank=True, on_delete=models.SET_NULL, related_name="builds"
    )
    node_name = models.CharField(max_length=200, blank=True)
    executor_number = models.PositiveIntegerField(null=True, blank=True)
    workspace = models.CharField(max_length=2000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.BigIntegerField(null=True, blank=True)
    abort_requested = models.BooleanField(default=False)
    aborted_by = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="build_unique_number")
        ]
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"{self.job.name} #{self.number}"

    def get_absolute_url(self) -> str:
        return reverse("builds:build", args=[self.job.name, self.number])

    @property
    def log_key(self) -> str:
        return f"build-{self.pk}-log"

    @property
    def building(self) -> bool:
        return self.status != self.Status.FINISHED


class Executor(models.Model):
    """One executor slot of a node. ``build`` is set only by a conditional UPDATE."""

    node = models.ForeignKey("nodes.Node", on_delete=models.CASCADE, related_name="executors")
    number = models.PositiveIntegerField()
    build = models.OneToOneField(
        Build, null=True, blank=True, on_delete=models.SET_NULL, related_name="executor"
    )

    class Meta:
        ordering = ["node_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["node", "number"], name="executor_unique_slot")
        ]

    def __str__(self) -> str:
        return f"executor #{self.number} of node {self.node_id}"
