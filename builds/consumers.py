"""The build console WebSocket: the log from the client's byte offset, then live, as HTML with
ANSI colours, plus the build's state (building, result) so the page can say "Finished: X".

``ws/builds/<id>/console/?offset=N&sgr=1;31``: ``sgr`` is the colour state at ``offset`` (the
page and every message carry it), so a reconnect resumes colours as well as bytes.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from builds.ansi import AnsiConverter
from builds.models import Build
from builds.services import build_group
from console.log_consumers import LogFollowConsumer
from console.permissions import can


@database_sync_to_async
def _build_state(build_id: int) -> dict | None:
    row = Build.objects.filter(pk=build_id).values_list("status", "result").first()
    if row is None:
        return None
    status, result = row
    return {
        "status": status,
        "building": status != Build.Status.FINISHED,
        "result": result or None,
    }


class BuildConsoleConsumer(LogFollowConsumer):
    async def has_permission(self, user) -> bool:
        return await database_sync_to_async(can)(user, "builds.view_build")

    async def get_stream_key(self) -> str | None:
        self.build_id = self.scope["url_route"]["kwargs"]["build_id"]
        exists = await database_sync_to_async(Build.objects.filter(pk=self.build_id).exists)()
        # The log stream itself may not exist yet (a pending build): follow it anyway.
        return f"build-{self.build_id}-log" if exists else None

    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.converter = AnsiConverter(query.get("sgr", [""])[0])
        self.last_state: dict | None = None
        await super().connect()
        if hasattr(self, "key"):
            self.build_channel_group = build_group(self.build_id)
            await self.channel_layer.group_add(self.build_channel_group, self.channel_name)
            await self._send_state()

    async def disconnect(self, code: int) -> None:
        await super().disconnect(code)
        if hasattr(self, "build_channel_group"):
            await self.channel_layer.group_discard(self.build_channel_group, self.channel_name)

    async def send_json(self, content: dict, close: bool = False) -> None:
        """Every log message also carries the text as HTML; ``next`` excludes an escape
        sequence cut at the end of a chunk (it is sent again from there on reconnect)."""
        if content.get("reset"):
            self.converter = AnsiConverter()
        if "text" in content:
            content["html"] = self.converter.feed(content["text"])
        if "next" in content:
            content["next"] -= len(self.converter.pending.encode())
            content["sgr"] = self.converter.state.codes()
        await super().send_json(content, close=close)
        if content.get("complete"):
            await self._send_state()

    async def builds_changed(self, event: dict) -> None:
        await self._send_state()

    async def _send_state(self) -> None:
        state = await _build_state(self.build_id)
        if state is None:
            await super().send_json({"build": {"deleted": True}})
            return
        if state != self.last_state:
            self.last_state = state
            await super().send_json({"build": state})
