"""WebSocket consumers of the node screens: "this node changed" for the node page and the
Nodes list (the page then re-fetches its state partial), and the live agent log.
Both authenticate and ask console.permissions.can, like the views, before accepting."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from console.log_consumers import LogFollowConsumer
from console.permissions import can
from nodes.models import Node
from nodes.services import NODES_GROUP, node_group


async def _can(user, perm: str) -> bool:
    if user is None or not user.is_authenticated:
        return False
    return await database_sync_to_async(can)(user, perm)


@database_sync_to_async
def _node_exists(node_id: int) -> bool:
    return Node.objects.filter(pk=node_id).exists()


@database_sync_to_async
def _launch_number(node_id: int) -> int | None:
    return Node.objects.filter(pk=node_id).values_list("launch_number", flat=True).first()


class NodeChangesConsumer(AsyncJsonWebsocketConsumer):
    """``ws/computer/`` (every node: the Nodes list) or ``ws/computer/<id>/`` (one node).

    Sends ``{"node": id, "event": "state"|"launch"|"deleted"|...}`` for each change."""

    async def connect(self) -> None:
        if not await _can(self.scope.get("user"), "nodes.view_node"):
            await self.close(code=4403)
            return
        node_id = self.scope["url_route"]["kwargs"].get("node_id")
        if node_id is not None and not await _node_exists(node_id):
            await self.close(code=4404)
            return
        self.group = node_group(node_id) if node_id is not None else NODES_GROUP
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def node_changed(self, event: dict) -> None:
        await self.send_json({"node": event.get("node"), "event": event.get("event", "state")})


class NodeLogConsumer(LogFollowConsumer):
    """``ws/computer/<id>/log/<launch>/?offset=N``: one launch's agent log, then live.

    It also follows the node, so that a new launch is announced as ``{"launch": n}`` and the
    page can switch to the new log."""

    async def has_permission(self, user) -> bool:
        return await _can(user, "nodes.connect_node")

    async def get_stream_key(self) -> str | None:
        kwargs = self.scope["url_route"]["kwargs"]
        self.node_id = kwargs["node_id"]
        latest = await _launch_number(self.node_id)
        # A launch just requested may not have written its log yet: follow it anyway.
        if latest is None or kwargs["launch"] > latest:
            return None
        return f"node-{self.node_id}-log-{kwargs['launch']}"

    async def connect(self) -> None:
        await super().connect()
        if hasattr(self, "key"):
            self.node_group = node_group(self.node_id)
            await self.channel_layer.group_add(self.node_group, self.channel_name)
            # A launch that started after the page was rendered: the page switches to it.
            latest = await _launch_number(self.node_id)
            if latest and latest > self.scope["url_route"]["kwargs"]["launch"]:
                await self.send_json({"launch": latest})

    async def disconnect(self, code: int) -> None:
        await super().disconnect(code)
        if hasattr(self, "node_group"):
            await self.channel_layer.group_discard(self.node_group, self.channel_name)

    async def node_changed(self, event: dict) -> None:
        if event.get("event") == "launch":
            latest = await _launch_number(self.node_id)
            await self.send_json({"launch": latest})
        elif event.get("event") == "deleted":
            await self.send_json({"deleted": True})
