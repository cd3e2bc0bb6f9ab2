"""boxcut's runtime: Celery app, Box client, job store, resolver, policy, runner and CLI."""
