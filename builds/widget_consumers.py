"""``ws/widgets/?widgets=queue,executors,jobs``: tells a page that builds or nodes changed, so
it re-fetches its widgets. Authenticated, and each widget only for users who may see it."""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from builds.services import EXECUTORS_GROUP, QUEUE_GROUP
from console.permissions import can
from nodes.services import NODES_GROUP

# widget -> (permission, groups whose messages change what it shows)
WIDGETS: dict[str, tuple[str, tuple[str, ...]]] = {
    # Whys change when nodes come and go.
    "queue": ("builds.view_job", (QUEUE_GROUP, NODES_GROUP)),
    "executors": ("nodes.view_node", (EXECUTORS_GROUP, NODES_GROUP)),
    # Balls turn, and last success/failure change, as builds start and finish.
    "jobs": ("builds.view_job", (QUEUE_GROUP, EXECUTORS_GROUP)),
}


# New monitor data or host keys change nothing the widgets show (a monitor that takes a node
# offline announces a "state" change of its own); nodes report monitor data every minute.
QUIET_NODE_EVENTS = frozenset({"monitor", "hostkey"})


@database_sync_to_async
def _allowed(user, names: list[str]) -> list[str]:
    return [name for name in names if can(user, WIDGETS[name][0])]


class WidgetsConsumer(AsyncJsonWebsocketConsumer):
    """Forwards ``builds.changed`` and ``node.changed`` as ``{"kind", "event"}``."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4403)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode())
        asked = ",".join(query.get("widgets", [])).split(",")
        names = [name for name in dict.fromkeys(asked) if name in WIDGETS] or ["queue", "executors"]
        allowed = await _allowed(user, names)
        if not allowed:
            await self.close(code=4403)
            return
        self.groups_joined = sorted({group for name in allowed for group in WIDGETS[name][1]})
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", ()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def builds_changed(self, event: dict) -> None:
        await self.send_json({"kind": "builds", "event": event.get("event", "")})

    async def node_changed(self, event: dict) -> None:
        kind = event.get("event", "state")
        if kind in QUIET_NODE_EVENTS:
            return
        await self.send_json({"kind": "node", "event": kind})
