"""The node WebSockets: who may connect, what "node changed" and the live agent log send."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from console import logs
from nodes.models import Node
from nodes.routing import websocket_urlpatterns
from nodes.services import NODES_GROUP, node_group

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

application = URLRouter(websocket_urlpatterns)


def communicator(path: str, user) -> WebsocketCommunicator:
    com = WebsocketCommunicator(application, path)
    com.scope["user"] = user  # what AuthMiddlewareStack puts there for a signed-in session
    return com


@sync_to_async
def make_node(name: str = "agent1", **fields) -> Node:
    return Node.objects.create(name=name, remote_fs="/srv/agent", **fields)


@sync_to_async
def write_log(key: str, text: str, *, reset: bool = False) -> int:
    stream = logs.open_stream(key, reset=reset)
    # Stored first, as the launch task does; the announcement is sent by the test itself.
    from console.models import LogChunk, LogStream

    offset = stream.size
    LogChunk.objects.create(stream=stream, offset=offset, data=text.encode())
    LogStream.objects.filter(pk=stream.pk).update(size=offset + len(text.encode()))
    return offset + len(text.encode())


async def receive_text(com: WebsocketCommunicator) -> dict:
    """The next message that carries log text (status-only messages say where the log ends)."""
    while True:
        message = await com.receive_json_from(timeout=2)
        if "text" in message:
            return message


async def test_anonymous_is_rejected_everywhere():
    node = await make_node()
    for path in ("/ws/computer/", f"/ws/computer/{node.pk}/", f"/ws/computer/{node.pk}/log/1/"):
        com = communicator(path, AnonymousUser())
        connected, code = await com.connect()
        assert not connected and code == 4403, path
        await com.disconnect()


async def test_node_page_socket_tells_about_changes_of_its_node_only(viewer):
    node = await make_node()
    other = await make_node("agent2")
    com = communicator(f"/ws/computer/{node.pk}/", viewer)
    connected, _ = await com.connect()
    assert connected
    layer = get_channel_layer()
    await layer.group_send(
        node_group(other.pk), {"type": "node.changed", "node": other.pk, "event": "state"}
    )
    await layer.group_send(
        node_group(node.pk), {"type": "node.changed", "node": node.pk, "event": "launch"}
    )
    assert await com.receive_json_from(timeout=2) == {"node": node.pk, "event": "launch"}
    assert await com.receive_nothing(timeout=0.2)
    await com.disconnect()


async def test_nodes_list_socket_hears_every_node(viewer):
    com = communicator("/ws/computer/", viewer)
    connected, _ = await com.connect()
    assert connected
    await get_channel_layer().group_send(
        NODES_GROUP, {"type": "node.changed", "node": 41, "event": "deleted"}
    )
    assert await com.receive_json_from(timeout=2) == {"node": 41, "event": "deleted"}
    await com.disconnect()


async def test_unknown_node_is_refused(viewer):
    com = communicator("/ws/computer/999999/", viewer)
    connected, code = await com.connect()
    assert not connected and code == 4404


async def test_user_without_view_permission_is_refused(django_user_model):
    user = await sync_to_async(django_user_model.objects.create_user)("nobody", password="x")
    com = communicator("/ws/computer/", user)
    connected, code = await com.connect()
    assert not connected and code == 4403


async def test_agent_log_needs_connect_permission(viewer, operator):
    node = await make_node(launch_number=1)
    com = communicator(f"/ws/computer/{node.pk}/log/1/", viewer)
    connected, code = await com.connect()
    assert not connected and code == 4403
    com = communicator(f"/ws/computer/{node.pk}/log/1/", operator)
    connected, _ = await com.connect()
    assert connected
    await com.disconnect()


async def test_agent_log_replays_then_follows_and_resumes_from_offset(operator):
    node = await make_node(launch_number=1)
    key = f"node-{node.pk}-log-1"
    await write_log(key, "[SSH] Opening SSH connection to agent1:22.\n")
    com = communicator(f"/ws/computer/{node.pk}/log/1/?offset=0", operator)
    connected, _ = await com.connect()
    assert connected
    first = await receive_text(com)
    assert first["text"] == "[SSH] Opening SSH connection to agent1:22.\n" and first["offset"] == 0
    size = await write_log(key, "[SSH] Authentication successful.\n")
    await get_channel_layer().group_send(key, {"type": "log.append", "key": key, "size": size})
    second = await receive_text(com)
    assert second["text"] == "[SSH] Authentication successful.\n"
    assert second["next"] == size
    await com.disconnect()

    # A reconnecting page sends its last "next": it gets only what came after.
    await write_log(key, "Agent successfully connected and online\n")
    com = communicator(f"/ws/computer/{node.pk}/log/1/?offset={second['next']}", operator)
    connected, _ = await com.connect()
    assert connected
    again = await receive_text(com)
    assert again["text"] == "Agent successfully connected and online\n"
    await com.disconnect()


async def test_agent_log_announces_a_new_launch(operator):
    node = await make_node(launch_number=1)
    com = communicator(f"/ws/computer/{node.pk}/log/1/", operator)
    connected, _ = await com.connect()
    assert connected
    assert await com.receive_nothing(timeout=0.2)  # the launch has written nothing yet
    await sync_to_async(Node.objects.filter(pk=node.pk).update)(launch_number=2)
    await get_channel_layer().group_send(
        node_group(node.pk), {"type": "node.changed", "node": node.pk, "event": "launch"}
    )
    assert await com.receive_json_from(timeout=2) == {"launch": 2}
    await com.disconnect()


async def test_agent_log_of_a_launch_that_never_happened_is_refused(operator):
    node = await make_node(launch_number=1)
    com = communicator(f"/ws/computer/{node.pk}/log/5/", operator)
    connected, code = await com.connect()
    assert not connected and code == 4404
