"""WebSocket routes of the build screens (added to console/routing.py)."""

from django.urls import path

from builds import consumers

websocket_urlpatterns = [
    path("ws/builds/<int:build_id>/console/", consumers.BuildConsoleConsumer.as_asgi()),
]
