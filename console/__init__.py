"""Steward's Django project: settings, URLs, ASGI, the Celery app and console-wide pages."""

from console.celery import app as celery_app

__all__ = ["celery_app"]
