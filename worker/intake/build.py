"""Wiring the intake from settings: Redis, the job store, the Celery producer, auth and readiness checks."""

from __future__ import annotations

import redis
from fastapi import FastAPI

from config import Settings, SettingsError, defaults
from config.settings import identity_paths_variable
from worker.celery_app import create_app as create_celery_app
from worker.celery_app import enqueuer
from worker.idempotency import IdempotencyKeys
from worker.intake.adapters.registry import check_paths
from worker.intake.app import create_app
from worker.intake.auth import Authenticator
from worker.intake.deps import IntakeDeps
from worker.intake.replays import SeenSignatures
from worker.intake.service import AlertIntake
from worker.job_store import JobStore
from worker.runtime import redis_client


def check_identity_paths(settings: Settings) -> None:
    """Refuse, at start, identity paths that a source's adapter would refuse on every request."""
    for source, paths in settings.identity_paths.items():
        try:
            check_paths(source, paths)
        except (KeyError, ValueError) as exc:
            raise SettingsError(identity_paths_variable(source), str(exc)) from None


def build_intake_app(settings: Settings, *, insecure_dev: bool = False) -> FastAPI:
    """The intake app, connected to the Redis and broker that settings name."""
    check_identity_paths(settings)
    client = redis_client(settings)
    celery = create_celery_app(settings)
    store = JobStore(client, key_prefix=settings.key_prefix)
    keys = IdempotencyKeys(client, key_prefix=settings.key_prefix, ttl_seconds=settings.idempotency_ttl_seconds)

    def readiness() -> dict[str, str]:
        checks = {}
        try:
            client.ping()
            checks["redis"] = "ok"
        except (redis.RedisError, OSError) as exc:
            checks["redis"] = f"unavailable: {exc}"
        try:
            with celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
            checks["broker"] = "ok"
        except Exception as exc:  # kombu raises many kinds; any of them means "not ready"
            checks["broker"] = f"unavailable: {type(exc).__name__}"
        return checks

    replays = SeenSignatures(client, key_prefix=settings.key_prefix, tolerance_seconds=defaults.HMAC_TOLERANCE_SECONDS)
    intake = AlertIntake(store=store, enqueue=enqueuer(celery), keys=keys, replays=replays,
                         expand_groups=settings.expand_groups)
    deps = IntakeDeps(settings=settings, store=store, intake=intake, auth=Authenticator(settings),
                      readiness=readiness, insecure_dev=insecure_dev)
    return create_app(deps)
