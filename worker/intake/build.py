"""Wiring the intake from settings: Redis, the job store, auth and readiness; the queue seam is handed in."""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from fastapi import FastAPI

from config import Settings, SettingsError, defaults
from config.settings import BoxAuthMode, identity_paths_variable
from worker.connections import redis_client
from worker.intake.adapters.registry import check_paths
from worker.intake.app import intake_app_from_deps
from worker.intake.auth import Authenticator
from worker.intake.deps import IntakeDeps
from worker.intake.loopback import is_loopback_url
from worker.intake.service import AlertIntake
from worker.jobs.history import history_of
from worker.jobs.idempotency import IdempotencyKeys
from worker.jobs.store import JobStore
from worker.jobs.submit import TaskWrites
from worker.ssf.keys import TransmitterKeys
from worker.ssf.receiver import SetReceiver
from worker.ssf.verifier import SetVerifier

log = logging.getLogger(__name__)

# What /readyz says of a dependency that does not answer: the why (Redis's error names its host and port)
# goes to the log, never to whoever asks.
UNAVAILABLE = "unavailable"


def check_identity_paths(settings: Settings) -> None:
    """Refuse, at start, identity paths that a source's adapter would refuse on every request."""
    for source, paths in settings.identity_paths.items():
        try:
            check_paths(source, paths)
        except (KeyError, ValueError) as exc:
            raise SettingsError(identity_paths_variable(source), str(exc)) from None


# The variable that sets each kind of Box credentials, to name in a refusal.
_CREDENTIAL_VARIABLES = {BoxAuthMode.DEVELOPER_TOKEN: "BOX_DEVELOPER_TOKEN", BoxAuthMode.JWT: "BOX_JWT_CONFIG_FILE",
                         BoxAuthMode.CLIENT_CREDENTIALS: "BOX_CLIENT_ID"}


def check_insecure_dev(settings: Settings) -> None:
    """Refuse `--insecure-dev` beside real Box credentials: jobs anyone on this machine could post unchecked would
    end real people's sessions. Credentials for the simulator (boxsim, on loopback) are not real."""
    if has_real_box_credentials(settings):
        variable = _CREDENTIAL_VARIABLES.get(settings.box_auth_mode, "BOX_CLIENT_ID")
        raise SettingsError(variable, f"--insecure-dev refuses to start with real Box credentials (Box API "
                                      f"{settings.box_api_base_url}): unset them, or point BOX_API_BASE_URL and "
                                      "BOX_OAUTH_URL at a simulator on loopback")


def has_real_box_credentials(settings: Settings) -> bool:
    """Whether Box credentials are set for a Box that is not on this machine: the API, or the token endpoint for
    the kinds that fetch a token (a developer token fetches none)."""
    if not settings.has_box_credentials:
        return False
    urls = [settings.box_api_base_url]
    if settings.box_auth_mode is not BoxAuthMode.DEVELOPER_TOKEN:
        urls.append(settings.box_oauth_url)
    return not all(is_loopback_url(url) for url in urls)


def build_intake_app(settings: Settings, *, enqueue: Callable[[str], None], broker_check: Callable[[], None],
                     insecure_dev: bool = False, task_writes: TaskWrites | None = None) -> FastAPI:
    """The intake app, connected to the Redis that settings name; `enqueue` hands a job id to the workers and
    `broker_check` raises unless the broker answers (both from `tasks.app`, handed in by the CLI). `task_writes`
    (`tasks.publishing`, when the broker is that Redis) lets an alert's job be claimed, recorded and enqueued in
    one Redis step."""
    check_identity_paths(settings)
    if insecure_dev:  # here as well as in the CLI: every uvicorn worker process builds its own app
        check_insecure_dev(settings)
    client = redis_client(settings)
    store = JobStore.from_settings(client, settings)
    keys = IdempotencyKeys(client, key_prefix=settings.key_prefix, ttl_seconds=settings.idempotency_ttl_seconds)

    def readiness() -> dict[str, str]:
        checks = {}
        try:  # a write, not a ping: a full Redis (noeviction) answers pings but refuses every job
            client.set(f"{settings.key_prefix}intake:readyz", "1", px=10_000)
            checks["redis"] = "ok"
        except (redis.RedisError, OSError) as exc:
            log.warning("readiness: Redis refused a write: %s", exc)
            checks["redis"] = UNAVAILABLE
        try:
            broker_check()
            checks["broker"] = "ok"
        except Exception as exc:  # kombu raises many kinds; any of them means "not ready"
            log.warning("readiness: the broker does not answer: %s: %s", type(exc).__name__, exc)
            checks["broker"] = UNAVAILABLE
        return checks

    shield_keys = IdempotencyKeys(client, key_prefix=settings.key_prefix,
                                  ttl_seconds=defaults.SHIELD_EVENT_KEY_TTL_SECONDS)
    intake = AlertIntake(store=store, enqueue=enqueue, keys=keys, expand_groups=settings.expand_groups,
                         shield_rules=settings.shield_rules, shield_keys=shield_keys, task_writes=task_writes)
    deps = IntakeDeps(settings=settings, store=store, intake=intake, auth=Authenticator(settings),
                      readiness=readiness, insecure_dev=insecure_dev,
                      ssf=set_receiver(settings, client, store, enqueue) if settings.ssf_transmitters else None,
                      history=history_of(settings, store))
    return intake_app_from_deps(deps)


def set_receiver(settings: Settings, client: redis.Redis, store: JobStore,
                 enqueue: Callable[[str], None]) -> SetReceiver:
    """The Shared Signals receiver for the configured transmitters; a SET's `jti` is remembered at least as long
    as its `iat` is accepted, so a replay inside the window is refused as one."""
    verifier = SetVerifier(settings.ssf_transmitters,
                           TransmitterKeys(cache_seconds=settings.ssf_jwks_cache_seconds),
                           max_age_seconds=settings.ssf_max_age_seconds)
    ttl = max(settings.idempotency_ttl_seconds,
              settings.ssf_max_age_seconds + defaults.SSF_FUTURE_LEEWAY_SECONDS + 3600)
    return SetReceiver(verifier=verifier, store=store, enqueue=enqueue,
                       keys=IdempotencyKeys(client, key_prefix=settings.key_prefix, ttl_seconds=ttl))
