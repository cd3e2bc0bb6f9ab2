"""Shared fixtures: a real Redis for integration tests (never skipped), and a key prefix per test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/0"


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping())
    except (redis.RedisError, OSError):
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis: the one at BOXCUT_TEST_REDIS_URL when it answers, else a private redis-server.

    A test that needs Redis fails (never skips) when neither is possible.
    """
    url = os.environ.get("BOXCUT_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)
    if _answers(url):
        yield url
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail(f"no Redis answers at {url} and no redis-server is installed: run scripts/ensure-redis-server")
    port = _free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not _answers(url):
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("a private redis-server did not start within 10 s")
        time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def key_prefix() -> str:
    """A key prefix of this test's own, so tests can share a Redis with `make run` and with each other."""
    return f"boxcut-test-{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def real_redis(redis_url: str, key_prefix: str) -> Iterator[redis.Redis]:
    """A client of the real Redis; every key under this test's prefix is deleted afterwards."""
    client = redis.Redis.from_url(redis_url)
    yield client
    keys = list(client.scan_iter(match=f"{key_prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(autouse=True)
def _archive_of_its_own(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test's boxcut (settings read from the environment, and the processes it starts) archives into an
    SQLite file of the test's own, never the default file in the working directory; a test that names its own
    BOXCUT_ARCHIVE_URL keeps it."""
    if "BOXCUT_ARCHIVE_URL" not in os.environ:
        path = tmp_path_factory.mktemp("archive") / "archive.sqlite3"
        monkeypatch.setenv("BOXCUT_ARCHIVE_URL", f"sqlite:///{path}")
