"""An intake app on fakeredis with a recording enqueue, for tests that need no worker."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fakeredis
from fastapi.testclient import TestClient

from config import Settings, load_settings
from worker.intake.app import intake_app_from_deps
from worker.intake.auth import Authenticator, signature
from worker.intake.build import set_receiver
from worker.intake.deps import IntakeDeps
from worker.intake.service import AlertIntake
from worker.jobs.idempotency import IdempotencyKeys
from worker.jobs.store import JobStore

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "siem"

INTAKE_TOKEN = "intake-token-1"
ROTATED_TOKEN = "intake-token-2"
OPERATOR_TOKEN = "operator-token-1"
HMAC_SECRET = "hmac-secret-old"
ROTATED_HMAC_SECRET = "hmac-secret-new"

BASE_ENV = {
    "BOXCUT_INTAKE_TOKENS": f"{INTAKE_TOKEN},{ROTATED_TOKEN}",
    "BOXCUT_INTAKE_HMAC_SECRETS": f"{HMAC_SECRET},{ROTATED_HMAC_SECRET}",
    "BOXCUT_OPERATOR_TOKENS": OPERATOR_TOKEN,
}


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


@dataclass
class IntakeUnderTest:
    """The app, its store and what it enqueued."""

    client: TestClient
    store: JobStore
    settings: Settings
    enqueued: list[str] = field(default_factory=list)
    redis: fakeredis.FakeRedis = field(default_factory=fakeredis.FakeRedis)
    server: fakeredis.FakeServer | None = None  # `server.connected = False` takes Redis down

    def post(self, path: str, payload: Any, *, token: str | None = INTAKE_TOKEN,
             headers: Mapping[str, str] | None = None) -> Any:
        sent = {"Content-Type": "application/json", **(headers or {})}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        return self.client.post(path, content=json.dumps(payload), headers=sent)

    def post_signed(self, path: str, payload: Any, *, secret: str = HMAC_SECRET, timestamp: float | None = None,
                    tamper: bool = False, headers: Mapping[str, str] | None = None) -> Any:
        body = json.dumps(payload).encode()
        stamp = str(int(timestamp if timestamp is not None else time.time()))
        headers = {"Content-Type": "application/json", "X-Boxcut-Timestamp": stamp,
                   "X-Boxcut-Signature": signature(secret, stamp, body), **(headers or {})}
        return self.client.post(path, content=body + (b" " if tamper else b""), headers=headers)

    def operator_get(self, path: str, token: str = OPERATOR_TOKEN) -> Any:
        return self.client.get(path, headers={"Authorization": f"Bearer {token}"})


def make_intake(extra_env: Mapping[str, str] | None = None, *, insecure_dev: bool = False,
                refused_enqueues: Collection[int] = ()) -> IntakeUnderTest:
    """The intake on fakeredis; its enqueue records job ids, but refuses the enqueues whose 0-based numbers are in
    `refused_enqueues` (as a broker that is down would; the test client then returns the error answer)."""
    settings = load_settings({**BASE_ENV, **(extra_env or {})}, env_file=None)
    server = fakeredis.FakeServer()
    redis = fakeredis.FakeRedis(server=server)
    store = JobStore(redis, key_prefix="t:")
    enqueued: list[str] = []
    attempts = itertools.count()

    def enqueue(job_id: str) -> None:
        if next(attempts) in refused_enqueues:
            raise ConnectionError("the broker refused the task")
        enqueued.append(job_id)

    keys = IdempotencyKeys(redis, key_prefix="t:", ttl_seconds=settings.idempotency_ttl_seconds)
    intake = AlertIntake(store=store, enqueue=enqueue, keys=keys)
    deps = IntakeDeps(settings=settings, store=store, intake=intake, auth=Authenticator(settings),
                      readiness=lambda: {"redis": "ok", "broker": "ok"}, insecure_dev=insecure_dev,
                      ssf=set_receiver(settings, redis, store, enqueue) if settings.ssf_transmitters else None)
    client = TestClient(intake_app_from_deps(deps), raise_server_exceptions=not refused_enqueues)
    return IntakeUnderTest(client, store, settings, enqueued, redis, server)
