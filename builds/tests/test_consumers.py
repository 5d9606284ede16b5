"""The build console WebSocket: who may connect, replay from an offset then live, reconnects
without gaps or duplicates (bytes and colours), and the build's state for "Finished: X"."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from builds.models import Build, Job
from builds.routing import websocket_urlpatterns
from builds.services import build_group
from console import logs
from console.models import LogChunk, LogStream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

application = URLRouter(websocket_urlpatterns)


def communicator(build_id: int, user, query: str = "") -> WebsocketCommunicator:
    path = f"/ws/builds/{build_id}/console/" + (f"?{query}" if query else "")
    com = WebsocketCommunicator(application, path)
    com.scope["user"] = user  # what AuthMiddlewareStack puts there for a signed-in session
    return com


@sync_to_async
def make_build(status: str = "running") -> Build:
    job = Job.objects.create(name=f"job{Job.objects.count()}")
    return Build.objects.create(job=job, number=1, status=status)


@sync_to_async
def write(build: Build, data: bytes, *, complete: bool = False) -> int:
    """Stored first, as the build task does; the announcement is sent by the test itself."""
    stream = logs.open_stream(build.log_key)
    offset = stream.size
    LogChunk.objects.create(stream=stream, offset=offset, data=data)
    LogStream.objects.filter(pk=stream.pk).update(size=offset + len(data), complete=complete)
    return offset + len(data)


async def announce(build: Build, size: int) -> None:
    await get_channel_layer().group_send(
        build.log_key, {"type": "log.append", "key": build.log_key, "size": size}
    )


async def read_until(com: WebsocketCommunicator, size: int) -> tuple[str, str, list[dict]]:
    """Everything sent until the client's ``next`` reaches ``size``: (text, html, messages)."""
    text, html, seen = "", "", []
    while True:
        message = await com.receive_json_from(timeout=3)
        seen.append(message)
        text += message.get("text", "")
        html += message.get("html", "")
        if message.get("next") == size:
            return text, html, seen


async def receive_state(com: WebsocketCommunicator) -> dict:
    """The next build-state message (status-only log messages before it are skipped)."""
    while True:
        message = await com.receive_json_from(timeout=3)
        if "build" in message:
            return message["build"]
        assert "text" not in message, message


async def test_anonymous_and_users_without_permission_are_rejected():
    from django.contrib.auth import get_user_model

    build = await make_build()
    com = communicator(build.pk, AnonymousUser())
    connected, code = await com.connect()
    assert not connected and code == 4403
    nobody = await sync_to_async(get_user_model().objects.create_user)("nobody")  # no group
    com = communicator(build.pk, nobody)
    connected, code = await com.connect()
    assert not connected and code == 4403


async def test_unknown_build_is_4404(viewer):
    com = communicator(999_999, viewer)
    connected, code = await com.connect()
    assert not connected and code == 4404


async def test_replay_from_an_offset_then_live_without_duplicates(viewer):
    build = await make_build()
    size = await write(build, b"Started by user admin\nline 1\n")
    com = communicator(build.pk, viewer, "offset=0")
    connected, _ = await com.connect()
    assert connected
    text, html, seen = await read_until(com, size)
    assert text == "Started by user admin\nline 1\n" and html == text
    assert seen[0]["offset"] == 0
    assert await receive_state(com) == {"status": "running", "building": True, "result": None}

    # Live: a new chunk is announced; exactly the new bytes arrive, once.
    size = await write(build, b"line 2\n")
    await announce(build, size)
    text, _, seen = await read_until(com, size)
    assert text == "line 2\n" and seen[0]["offset"] == size - 7
    # A duplicate or late announcement sends nothing twice.
    await com.receive_json_from(timeout=3)  # "caught up at size"
    await announce(build, size)
    message = await com.receive_json_from(timeout=3)
    assert "text" not in message and message["next"] == size
    await com.disconnect()


async def test_reconnecting_from_next_has_no_gap_and_no_duplicate(viewer):
    build = await make_build()
    size = await write(build, b"one\ntwo\n")
    com = communicator(build.pk, viewer, "offset=4")  # the page already showed "one\n"
    assert (await com.connect())[0]
    text, _, seen = await read_until(com, size)
    assert text == "two\n"
    resume = seen[-1]["next"]
    await com.disconnect()

    # While the browser was away, the build went on.
    size = await write(build, b"three\nfour\n")
    com = communicator(build.pk, viewer, f"offset={resume}")
    assert (await com.connect())[0]
    text, _, _ = await read_until(com, size)
    assert text == "three\nfour\n"
    await com.disconnect()


async def test_a_cut_utf8_character_or_escape_sequence_is_resent_after_a_reconnect(viewer):
    build = await make_build()
    data = "naïve \x1b[31mred\x1b[3".encode()
    size = await write(build, data[:3])  # "na" and the first byte of "ï"
    com = communicator(build.pk, viewer)
    assert (await com.connect())[0]
    message = await com.receive_json_from(timeout=3)
    assert message["text"] == "na" and message["next"] == 2
    size = await write(build, data[3:])
    await announce(build, size)
    text, html, seen = "", "", []
    while not seen or seen[-1].get("next") != size - 3:
        seen.append(await com.receive_json_from(timeout=3))
        text += seen[-1].get("text", "")
        html += seen[-1].get("html", "")
    # The trailing "\x1b[3" is held back: next stops before it, the colour state is red.
    assert html == 'ïve <span class="ansi-red">red</span>'
    assert seen[-1]["sgr"] == "31"
    resume, sgr = seen[-1]["next"], seen[-1]["sgr"]
    await com.disconnect()

    size = await write(build, b"2mgreen\n")
    com = communicator(build.pk, viewer, f"offset={resume}&sgr={sgr}")
    assert (await com.connect())[0]
    _, html, _ = await read_until(com, size)
    assert html == '<span class="ansi-green">green</span>\n'
    await com.disconnect()

    # Resuming in the middle of a red passage keeps it red.
    com = communicator(build.pk, viewer, f"offset={len('naïve '.encode()) + 5}&sgr=31")
    assert (await com.connect())[0]
    _, html, _ = await read_until(com, size)
    assert html.startswith('<span class="ansi-red">red</span>')
    await com.disconnect()


async def test_output_is_html_escaped(viewer):
    build = await make_build()
    size = await write(build, b"<script>alert(1)</script>\n")
    com = communicator(build.pk, viewer)
    assert (await com.connect())[0]
    _, html, _ = await read_until(com, size)
    assert html == "&lt;script&gt;alert(1)&lt;/script&gt;\n"
    await com.disconnect()


async def test_the_end_of_the_build_is_announced(viewer):
    build = await make_build()
    com = communicator(build.pk, viewer)
    assert (await com.connect())[0]
    # No log yet (a pending build): the state arrives, the log follows when it starts.
    assert await receive_state(com) == {"status": "running", "building": True, "result": None}
    size = await write(build, b"Finished: SUCCESS\n", complete=True)
    await sync_to_async(Build.objects.filter(pk=build.pk).update)(
        status="finished", result="SUCCESS"
    )
    await announce(build, size)
    text, _, seen = await read_until(com, size)
    assert text == "Finished: SUCCESS\n" and seen[-1]["complete"] is True
    assert await receive_state(com) == {
        "status": "finished",
        "building": False,
        "result": "SUCCESS",
    }
    while not await com.receive_nothing(timeout=0.2):  # the trailing "caught up" messages
        assert "build" not in await com.receive_json_from(timeout=1)
    # The finish_build announcement does not repeat a state the page already has.
    await get_channel_layer().group_send(
        build_group(build.pk), {"type": "builds.changed", "event": "finished"}
    )
    assert await com.receive_nothing(timeout=0.3)
    await com.disconnect()


async def test_a_restarted_log_resets_the_page(viewer):
    build = await make_build()
    await write(build, b"old run output\n")
    com = communicator(build.pk, viewer, "offset=15")
    assert (await com.connect())[0]
    await receive_state(com)

    @sync_to_async
    def restart() -> int:
        stream = logs.open_stream(build.log_key, reset=True)
        LogChunk.objects.create(stream=stream, offset=0, data=b"new\n")
        LogStream.objects.filter(pk=stream.pk).update(size=4)
        return 4

    size = await restart()
    await announce(build, size)
    assert await com.receive_json_from(timeout=3) == {"reset": True}
    text, _, _ = await read_until(com, size)
    assert text == "new\n"
    await com.disconnect()
