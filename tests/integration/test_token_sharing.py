"""The access token is shared by every worker process through Redis: one token request per refresh."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from boxsim import BoxSim, SimConfig
from config import load_settings
from worker.box.auth import token_source_for

pytestmark = pytest.mark.integration


def _get_token(env: dict[str, str], start: Any, out: Any) -> None:
    settings = load_settings(env, env_file=None)
    client = redis.Redis.from_url(settings.redis_url)
    source = token_source_for(settings=settings, redis=client, session=requests.Session())
    start.wait()
    out.put(source.get())


def _env(sim: BoxSim, redis_url: str, key_prefix: str) -> dict[str, str]:
    return {"BOXCUT_REDIS_URL": redis_url, "BOXCUT_KEY_PREFIX": key_prefix, "BOX_OAUTH_URL": sim.oauth_url,
            "BOX_API_BASE_URL": sim.base_url, "BOX_CLIENT_ID": sim.config.client_id,
            "BOX_CLIENT_SECRET": sim.config.client_secret, "BOX_ENTERPRISE_ID": sim.config.enterprise_id}


def test_two_processes_refresh_with_one_token_request(redis_url: str, key_prefix: str,
                                                      real_redis: redis.Redis, tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    with BoxSim(SimConfig(port=0)) as sim:
        env = _env(sim, redis_url, key_prefix)
        start, out = context.Barrier(2), context.Queue()
        procs = [context.Process(target=_get_token, args=(env, start, out)) for _ in range(2)]
        for proc in procs:
            proc.start()
        tokens = [out.get(timeout=30), out.get(timeout=30)]
        for proc in procs:
            proc.join(timeout=30)
        assert tokens[0] == tokens[1]
        assert len(sim.requests(path="/oauth2/token")) == 1
