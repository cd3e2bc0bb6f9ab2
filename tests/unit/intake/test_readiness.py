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


def test_readyz_says_unavailable_without_naming_redis_and_logs_why(caplog: pytest.LogCaptureFixture) -> None:
    # Nothing listens on port 1: Redis's error would name its host and port, which are nobody's business here.
    settings = load_settings({**ENV, "BOXCUT_REDIS_URL": "redis://127.0.0.1:1/0"}, env_file=None)

    def broker_down() -> None:
        raise ConnectionRefusedError("[Errno 111] Connection refused: amqp://broker.internal:5672")

    app = build.build_intake_app(settings, enqueue=lambda _job_id: None, broker_check=broker_down)
    with caplog.at_level("WARNING", logger=build.__name__):
        answer = TestClient(app).get("/readyz")
    assert answer.status_code == 503
    assert answer.json() == {"status": "unavailable", "checks": {"redis": "unavailable", "broker": "unavailable"}}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("127.0.0.1:1" in w for w in warnings) and any("broker.internal" in w for w in warnings)
