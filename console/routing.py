"""WebSocket routes of every app, collected in one list."""

from django.urls import path

from console import consumers

websocket_urlpatterns = [
    path("ws/runtime-check/<int:check_id>/", consumers.RuntimeCheckConsumer.as_asgi()),
]
