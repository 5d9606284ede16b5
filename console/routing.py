"""WebSocket routes of every app, collected in one list."""

from django.urls import path

from builds.routing import websocket_urlpatterns as builds_websocket_urlpatterns
from builds.widget_consumers import WidgetsConsumer
from console import consumers
from nodes.routing import websocket_urlpatterns as nodes_websocket_urlpatterns

websocket_urlpatterns = [
    path("ws/runtime-check/<int:check_id>/", consumers.RuntimeCheckConsumer.as_asgi()),
    *nodes_websocket_urlpatterns,
    *builds_websocket_urlpatterns,
    path("ws/widgets/", WidgetsConsumer.as_asgi()),
]
