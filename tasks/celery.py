"""boxcut's Celery app where Celery's own tools look for it: `celery -A tasks inspect ping`, `celery -A tasks
events`, Flower (`celery -A tasks flower`) and celery-exporter. Built from the settings (environment and .env)
as `boxcut` builds it; importing it connects to nothing."""

from __future__ import annotations

from config import load_settings
from tasks.app import build_celery_app

app = build_celery_app(load_settings())

__all__ = ["app"]
