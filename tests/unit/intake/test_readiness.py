"""`/readyz` asks Redis for a write: a full Redis answers pings but refuses every job."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
import redis
from fastapi.testclient import TestClient

from config import load_settings
from worker.intake import build

ENV = {"BOXCUT_INTAKE_TOKENS": "intake-token-1", "BOXCUT_OPERATOR_TOKENS": "operator-token-1"}


class _FullRedis(fakeredis.FakeRedis):
    def set(self, *args: Any, **kwargs: Any) -> Any:
        raise redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")


@pytest.mark.parametrize(("client", "status"), [(fakeredis.FakeRedis, 200), (_FullRedis, 503)])
def test_readyz_is_503_while_redis_refuses_writes(client: type[fakeredis.FakeRedis], status: int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "redis_client", lambda _settings: client())
    app = build.build_intake_app(load_settings(ENV, env_file=None), enqueue=lambda _job_id: None,
                                 broker_check=lambda: None)
    answer = TestClient(app).get("/readyz")
    assert answer.status_code == status
    assert (answer.json()["checks"]["redis"] == "ok") is (status == 200)
