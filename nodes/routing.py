"""WebSocket routes of the node screens (added to console/routing.py)."""

from django.urls import path

from nodes import consumers

websocket_urlpatterns = [
    path("ws/computer/", consumers.NodeChangesConsumer.as_asgi()),
    path("ws/computer/<int:node_id>/", consumers.NodeChangesConsumer.as_asgi()),
    path("ws/computer/<int:node_id>/log/<int:launch>/", consumers.NodeLogConsumer.as_asgi()),
]
