"""Console-wide records: the runtime check (a task that proves worker → browser works)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class RuntimeCheck(models.Model):
    """One run of the "Test the runtime" diagnostic on the System Information page.

    The request creates the row and enqueues a Celery task with its id; the worker runs it
    and pushes its progress to browsers over the channel layer.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        INTERRUPTED = "interrupted", "Interrupted"

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    steps_done = models.PositiveIntegerField(default=0)
    steps_total = models.PositiveIntegerField(default=5)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Runtime check #{self.pk} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in {self.Status.DONE, self.Status.INTERRUPTED}


class LogStream(models.Model):
    """One append-only log (a node's launch log, a build's console): bytes with offsets.

    ``size`` is the committed length; chunks tile ``[0, size)`` without gaps or overlaps.
    """

    key = models.CharField(max_length=200, unique=True)
    size = models.BigIntegerField(default=0)
    complete = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.key


class LogChunk(models.Model):
    stream = models.ForeignKey(LogStream, on_delete=models.CASCADE, related_name="chunks")
    offset = models.BigIntegerField()
    data = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["stream", "offset"], name="log_chunk_unique_offset")
        ]
        ordering = ["offset"]

    def __str__(self) -> str:
        return f"{self.stream_id}@{self.offset}"

    @property
    def end(self) -> int:
        return self.offset + len(self.data)
