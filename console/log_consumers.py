"""WebSocket consumer base for following an append-only log (console/logs.py).

The client connects with ``?offset=N`` (0 for the whole log, or the offset it last saw); the
consumer sends what is stored from there, then follows the log's group. Every send reads from
the database at the consumer's own offset, so nothing is missed or duplicated even if the
channel layer dropped or reordered an announcement.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from console import logs
from console.models import LogStream

SEND_LIMIT = 64 * 1024


class LogFollowConsumer(AsyncJsonWebsocketConsumer):
    """Subclasses implement ``get_stream_key`` (None = not found) and ``has_permission``."""

    async def has_permission(self, user) -> bool:
        raise NotImplementedError

    async def get_stream_key(self) -> str | None:
        raise NotImplementedError

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not await self.has_permission(user):
            await self.close(code=4403)
            return
        key = await self.get_stream_key()
        if key is None:
            await self.close(code=4404)
            return
        self.key = key
        self.group = logs.log_group(key)
        self._lock = asyncio.Lock()
        query = parse_qs(self.scope.get("query_string", b"").decode())
        try:
            offset = max(0, int(query.get("offset", ["0"])[0]))
        except ValueError:
            offset = 0
        self.cursor = logs.TextCursor(offset)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self._catch_up()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def log_append(self, event: dict) -> None:
        await self._catch_up()

    async def _catch_up(self) -> None:
        async with self._lock:
            while True:
                stream_id, size, complete = await self._stream_state()
                if stream_id is None:
                    return
                if self.cursor.offset > size:  # the log was restarted (a new launch)
                    self.cursor = logs.TextCursor(0)
                    await self.send_json({"reset": True})
                if self.cursor.offset >= size:
                    await self.send_json(
                        {"next": self.cursor.resume_offset, "size": size, "complete": complete}
                    )
                    return
                data = await database_sync_to_async(logs.read)(
                    stream_id, self.cursor.offset, SEND_LIMIT
                )
                if not data:
                    return
                start = self.cursor.resume_offset
                text = self.cursor.feed(data)
                await self.send_json(
                    {
                        "offset": start,
                        "text": text,
                        "next": self.cursor.resume_offset,
                        "size": size,
                        "complete": complete and self.cursor.offset >= size,
                    }
                )

    @database_sync_to_async
    def _stream_state(self) -> tuple[int | None, int, bool]:
        row = LogStream.objects.filter(key=self.key).values_list("pk", "size", "complete").first()
        return row if row else (None, 0, False)
