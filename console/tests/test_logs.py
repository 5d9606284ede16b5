"""The append-only log: offsets, batching, UTF-8 across chunks, follow-from-offset consumer."""

import asyncio
import time

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import path

from console import logs
from console.log_consumers import LogFollowConsumer
from console.models import LogChunk, LogStream


@pytest.mark.django_db
def test_append_and_read_by_offset():
    stream = logs.open_stream("test-log-1")
    logs.append(stream, b"hello ")
    logs.append(stream, b"world\n")
    assert LogStream.objects.get(pk=stream.pk).size == 12
    assert logs.read(stream.pk, 0) == b"hello world\n"
    assert logs.read(stream.pk, 3) == b"lo world\n"
    assert logs.read(stream.pk, 6) == b"world\n"
    assert logs.read(stream.pk, 12) == b""
    assert b"".join(logs.iter_bytes(stream.pk, 2)) == b"llo world\n"


@pytest.mark.django_db
def test_reset_starts_a_new_log():
    stream = logs.open_stream("test-log-2")
    logs.append(stream, b"old")
    stream = logs.open_stream("test-log-2", reset=True)
    assert stream.size == 0
    assert logs.read(stream.pk, 0) == b""


@pytest.mark.django_db
def test_a_second_writer_with_a_stale_offset_fails_loudly():
    stream = logs.open_stream("test-log-3")
    stale = LogStream.objects.get(pk=stream.pk)
    logs.append(stream, b"first")
    with pytest.raises(RuntimeError, match="concurrent writer"):
        logs.append(stale, b"second")
    assert logs.read(stream.pk, 0) == b"first"


def test_text_cursor_keeps_multibyte_characters_whole():
    data = "naïve ☃ snow".encode()
    cursor = logs.TextCursor()
    text = "".join(cursor.feed(data[i : i + 1]) for i in range(len(data)))
    assert text == "naïve ☃ snow"
    split = logs.TextCursor()
    first = split.feed(data[:8])  # ends inside "☃" (3 bytes starting at offset 7)
    assert first == "naïve "
    assert split.resume_offset == 7  # resume before the incomplete character


@pytest.mark.django_db(transaction=True)
def test_writer_batches_many_small_writes_into_few_chunks():
    stream = logs.open_stream("test-log-4")
    writer = logs.LogWriter(stream)
    for i in range(2000):
        writer.write(f"line {i}\n")
    writer.close()
    expected = "".join(f"line {i}\n" for i in range(2000)).encode()
    assert b"".join(logs.iter_bytes(stream.pk)) == expected
    chunks = LogChunk.objects.filter(stream=stream).count()
    assert chunks < 20, f"{chunks} chunks for 2000 writes: not batched"
    assert LogStream.objects.get(pk=stream.pk).complete


@pytest.mark.django_db(transaction=True)
def test_writer_flushes_a_slow_trickle_promptly():
    stream = logs.open_stream("test-log-5")
    writer = logs.LogWriter(stream)
    writer.write("one line\n")
    deadline = time.monotonic() + 2
    while LogStream.objects.get(pk=stream.pk).size == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert LogStream.objects.get(pk=stream.pk).size == len(b"one line\n")
    writer.close()


class OpenLogConsumer(LogFollowConsumer):
    async def has_permission(self, user) -> bool:
        return True

    async def get_stream_key(self):
        return self.scope["url_route"]["kwargs"]["key"]


application = URLRouter([path("ws/log/<str:key>/", OpenLogConsumer.as_asgi())])


class FakeUser:
    is_authenticated = True


async def _receive_until(communicator, predicate, timeout=5):
    messages = []
    while True:
        message = await communicator.receive_json_from(timeout=timeout)
        messages.append(message)
        if predicate(message):
            return messages


@pytest.mark.django_db(transaction=True)
def test_consumer_replays_from_offset_then_follows_without_gaps_or_duplicates():
    stream = logs.open_stream("test-log-6")
    logs.append(stream, b"abc\n")
    logs.append(stream, b"def\n")

    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws/log/test-log-6/?offset=2")
        communicator.scope["user"] = FakeUser()
        connected, _ = await communicator.connect()
        assert connected
        first = await _receive_until(communicator, lambda m: m.get("next") == 8)
        replayed = "".join(m.get("text", "") for m in first)
        assert replayed == "c\ndef\n"
        await database_sync_to_async(logs.append)(stream, "ghï\n".encode())
        live = await _receive_until(communicator, lambda m: m.get("next") == 13)
        assert "".join(m.get("text", "") for m in live) == "ghï\n"
        await communicator.disconnect()

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_consumer_rejects_anonymous():
    logs.open_stream("test-log-7")

    async def scenario():
        class Anonymous:
            is_authenticated = False

        communicator = WebsocketCommunicator(application, "/ws/log/test-log-7/")
        communicator.scope["user"] = Anonymous()
        connected, code = await communicator.connect()
        assert not connected

    asyncio.run(scenario())
