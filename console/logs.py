"""The one append-only log mechanism: agent logs and build consoles both use it.

Writers buffer bytes and commit them as chunks (every ~50 ms or 64 KiB, never one INSERT per
line); after a chunk is committed a small message naming the new size goes to the log's
channel-layer group. Readers (HTTP or WebSocket) always read bytes from the database by offset,
so a late or reconnecting browser catches up without gaps or duplicates, whatever the channel
layer dropped.
"""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Iterator

from django.db import transaction
from django.db.models import F

from console.models import LogChunk, LogStream
from console.push import push

FLUSH_BYTES = 64 * 1024
FLUSH_SECONDS = 0.05
READ_LIMIT = 256 * 1024


def log_group(key: str) -> str:
    """Channel-layer group of a log: its key is already ``node-7-log-3``/``build-42-log``."""
    return key


def open_stream(key: str, *, reset: bool = False) -> LogStream:
    stream, created = LogStream.objects.get_or_create(key=key)
    if reset and not created:
        with transaction.atomic():
            LogChunk.objects.filter(stream=stream).delete()
            LogStream.objects.filter(pk=stream.pk).update(size=0, complete=False)
        stream.size, stream.complete = 0, False
    return stream


def append(stream: LogStream, data: bytes) -> int:
    """Commit ``data`` at the end of ``stream`` and announce it. Returns the new size.

    One writer per stream at a time (the task that owns it); the conditional UPDATE makes a
    second writer fail loudly instead of corrupting offsets.
    """
    if not data:
        return stream.size
    with transaction.atomic():
        offset = stream.size
        updated = LogStream.objects.filter(pk=stream.pk, size=offset).update(
            size=F("size") + len(data)
        )
        if updated != 1:
            raise RuntimeError(f"log {stream.key}: concurrent writer detected at offset {offset}")
        LogChunk.objects.create(stream=stream, offset=offset, data=bytes(data))
    stream.size = offset + len(data)
    push(
        log_group(stream.key),
        {"type": "log.append", "key": stream.key, "size": stream.size},
    )
    return stream.size


def finish(stream: LogStream) -> None:
    LogStream.objects.filter(pk=stream.pk).update(complete=True)
    stream.complete = True
    push(
        log_group(stream.key),
        {"type": "log.append", "key": stream.key, "size": stream.size, "complete": True},
    )


def read(stream_id: int, start: int, limit: int = READ_LIMIT) -> bytes:
    """Bytes of the log from ``start`` (at most about ``limit``), from committed chunks only."""
    chunks = (
        LogChunk.objects.filter(stream_id=stream_id, offset__lt=start + limit)
        .filter(offset__gte=_first_chunk_offset(stream_id, start))
        .order_by("offset")
        .values_list("offset", "data")
    )
    out = bytearray()
    for offset, data in chunks:
        data = bytes(data)
        if offset + len(data) <= start:
            continue
        out += data[max(0, start - offset) :]
        if len(out) >= limit:
            break
    return bytes(out)


def _first_chunk_offset(stream_id: int, start: int) -> int:
    found = (
        LogChunk.objects.filter(stream_id=stream_id, offset__lte=start)
        .order_by("-offset")
        .values_list("offset", flat=True)
        .first()
    )
    return found if found is not None else 0


def iter_bytes(stream_id: int, start: int = 0) -> Iterator[bytes]:
    """The whole log from ``start``, chunk by chunk (for downloads: memory stays flat)."""
    position = start
    while True:
        data = read(stream_id, position)
        if not data:
            return
        yield data
        position += len(data)


class TextCursor:
    """Decodes a log as UTF-8 across chunk boundaries and reports the byte offset of the last
    complete character, so a reconnecting reader resumes exactly there."""

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset  # bytes read from the log so far
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        self.offset += len(data)
        return self._decoder.decode(data)

    @property
    def resume_offset(self) -> int:
        pending, _ = self._decoder.getstate()
        return self.offset - len(pending)


class LogWriter:
    """Buffers writes and commits them in batches (size or age), from one thread.

    ``write`` never blocks on the database for small writes; ``flush``/``close`` commit.
    A timer thread flushes a buffer older than FLUSH_SECONDS so a slow trickle of lines still
    reaches browsers promptly.
    """

    def __init__(self, stream: LogStream, masker=None) -> None:
        self.stream = stream
        self.masker = masker
        self._buffer = bytearray()
        self._first_write = 0.0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._timer = threading.Thread(target=self._flush_loop, daemon=True, name="log-flush")
        self._timer.start()

    def write(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        with self._lock:
            if not self._buffer:
                self._first_write = time.monotonic()
            self._buffer += data
            if len(self._buffer) >= FLUSH_BYTES:
                self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._buffer:
            return
        data = bytes(self._buffer)
        self._buffer.clear()
        if self.masker is not None:
            data = self.masker(data)
        append(self.stream, data)

    def _flush_loop(self) -> None:
        from django.db import connection

        try:
            while not self._closed.wait(FLUSH_SECONDS / 2):
                with self._lock:
                    if self._buffer and time.monotonic() - self._first_write >= FLUSH_SECONDS:
                        self._flush_locked()
        finally:
            connection.close()

    def close(self, complete: bool = True) -> None:
        self._closed.set()
        self._timer.join(2)
        self.flush()
        if complete:
            finish(self.stream)
