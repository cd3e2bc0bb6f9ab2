"""Signed notifications: when a job waits for approval and when it ends, a JSON summary POSTed to each receiver
in BOXCUT_NOTIFY_URLS (docs/notifications.md). The scanner follows the audit stream; a Celery task per receiver
delivers, retried with back-off; each delivery is recorded in its job."""
