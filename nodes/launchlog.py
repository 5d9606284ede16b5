"""The agent log of one launch: timestamped lines in the SSH launcher's format, stored through
the console's append-only log (live in browsers), kept for the last launches of each node."""

from __future__ import annotations

from django.utils import timezone

from console import logs
from console.models import LogStream

KEEP_LAUNCHES = 10


def timestamp() -> str:
    return timezone.localtime().strftime("[%m/%d/%y %H:%M:%S]")


class LaunchLog:
    def __init__(self, node, launch_number: int, *, append: bool = False) -> None:
        self.key = f"node-{node.pk}-log-{launch_number}"
        stream = logs.open_stream(self.key) if append else logs.open_stream(self.key, reset=True)
        self.writer = logs.LogWriter(stream)
        if not append:
            prune(node.pk, launch_number)

    def line(self, text: str) -> None:
        """A timestamped line: ``[11/29/26 10:00:00] [SSH] Opening SSH connection …``."""
        self.writer.write(f"{timestamp()} {text}\n")

    def raw(self, text: str) -> None:
        """An untimestamped line (e.g. the launcher description, a remote program's output)."""
        self.writer.write(text if text.endswith("\n") else text + "\n")

    def flush(self) -> None:
        self.writer.flush()

    def close(self, complete: bool = True) -> None:
        self.writer.close(complete=complete)


def prune(node_id: int, launch_number: int) -> None:
    """Old launches stay readable: keep the last KEEP_LAUNCHES logs of the node."""
    oldest_kept = launch_number - KEEP_LAUNCHES + 1
    stale = [
        key
        for key in LogStream.objects.filter(key__startswith=f"node-{node_id}-log-").values_list(
            "key", flat=True
        )
        if int(key.rsplit("-", 1)[1]) < oldest_kept
    ]
    if stale:
        LogStream.objects.filter(key__in=stale).delete()


def launch_numbers(node_id: int) -> list[int]:
    keys = LogStream.objects.filter(key__startswith=f"node-{node_id}-log-").values_list(
        "key", flat=True
    )
    return sorted((int(k.rsplit("-", 1)[1]) for k in keys), reverse=True)
