"""WebSocket consumers of the console. Each rejects anonymous users before accepting and asks
the same permission function as the views."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from console.models import RuntimeCheck
from console.permissions import can
from console.tasks import runtime_check_group


class RuntimeCheckConsumer(AsyncJsonWebsocketConsumer):
    """Follows one runtime check: replays its stored state first, then live events."""

    async def connect(self) -> None:
        # Permissions come from the database: ask in a thread (Django forbids it on the loop).
        allowed = await database_sync_to_async(can)(
            self.scope.get("user"), "console.view_runtimecheck"
        )
        if not allowed:
            await self.close(code=4403)
            return
        self.check_id = self.scope["url_route"]["kwargs"]["check_id"]
        self.group = runtime_check_group(self.check_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        state = await self._state()
        if state is None:
            await self.send_json({"error": "No such runtime check"})
            await self.close()
            return
        await self.send_json({"replay": True, **state})

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def check_event(self, event: dict) -> None:
        await self.send_json({k: v for k, v in event.items() if k != "type"})

    @database_sync_to_async
    def _state(self) -> dict | None:
        check = RuntimeCheck.objects.filter(pk=self.check_id).first()
        if check is None:
            return None
        return {
            "status": check.status,
            "step": check.steps_done,
            "total": check.steps_total,
            "worker": check.worker,
            "text": f"Runtime check #{check.pk}: {check.get_status_display()}",
        }
