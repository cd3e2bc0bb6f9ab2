"""`boxcut intake --workers N`: one process serves the app it built; several are uvicorn workers on one port,
each importing a factory that builds its own app (its own Redis and broker connections) from the environment, and
each listening on a socket of its own (SO_REUSEPORT), so that the kernel spreads connections over them."""

from __future__ import annotations

import importlib
import importlib.util
import socket
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi import FastAPI

from worker.cli import commands, serve

ENV = {"BOXCUT_INTAKE_TOKENS": "intake-token-1", "BOXCUT_OPERATOR_TOKENS": "operator-token-1",
       "BOXCUT_REDIS_URL": "redis://127.0.0.1:1/0"}


@pytest.fixture
def uvicorn_runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, Any]]]:
    import uvicorn

    runs: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: runs.append((app, options)))
    monkeypatch.setattr(serve, "run_workers", lambda factory, options: runs.append((factory, {**options,
                                                                                              "factory": True})))
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return runs


def _intake(*args: str) -> Any:
    return CliRunner().invoke(commands.main, ["intake", "--port", "8123", *args])


def test_one_worker_serves_the_app_built_in_this_process(uvicorn_runs: list[tuple[Any, dict[str, Any]]]) -> None:
    run = _intake()
    assert run.exit_code == 0, run.output
    [(app, options)] = uvicorn_runs
    assert isinstance(app, FastAPI)
    assert options["workers"] == 1 and options["port"] == 8123 and options["access_log"] is False


def test_several_workers_import_the_factory_by_name(uvicorn_runs: list[tuple[Any, dict[str, Any]]]) -> None:
    run = _intake("--workers", "3")
    assert run.exit_code == 0, run.output
    [(app, options)] = uvicorn_runs
    assert app == serve.APP_FACTORY and options["factory"] is True and options["workers"] == 3
    module, name = app.split(":")
    assert callable(getattr(importlib.import_module(module), name))


def test_insecure_dev_workers_use_the_insecure_factory_and_only_on_loopback(
        uvicorn_runs: list[tuple[Any, dict[str, Any]]]) -> None:
    assert _intake("--workers", "2", "--insecure-dev").exit_code == 0
    assert uvicorn_runs[-1][0] == serve.INSECURE_DEV_APP_FACTORY
    refused = _intake("--workers", "2", "--insecure-dev", "--host", "0.0.0.0")
    assert refused.exit_code == 64 and len(uvicorn_runs) == 1


def test_fast_parsers_when_installed(uvicorn_runs: list[tuple[Any, dict[str, Any]]]) -> None:
    _intake("-w", "2")
    options = uvicorn_runs[0][1]
    has = {m: importlib.util.find_spec(m) is not None for m in ("httptools", "uvloop")}
    assert options["http"] == ("httptools" if has["httptools"] else "h11")
    assert options["loop"] == ("uvloop" if has["uvloop"] else "asyncio")


def test_a_bad_setting_stops_before_any_worker_starts(uvicorn_runs: list[tuple[Any, dict[str, Any]]],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOXCUT_IDENTITY_PATHS_OKTA", "actor.alternateId")  # okta's adapter refuses it
    run = _intake("--workers", "2")
    assert run.exit_code == 64 and "bad setting" in run.output and uvicorn_runs == []


def test_each_worker_factory_builds_its_own_app_from_the_environment(
        uvicorn_runs: list[tuple[Any, dict[str, Any]]]) -> None:
    first, second = serve.intake_app_from_environment(), serve.intake_app_from_environment()
    assert isinstance(first, FastAPI) and first is not second
    assert isinstance(serve.insecure_dev_intake_app_from_environment(), FastAPI)


def test_each_worker_unpickles_the_address_as_a_listening_socket_of_its_own() -> None:
    """What uvicorn's spawned workers get: the parent's socket holds the port and never listens; each worker's
    is its own, on the same address, and the kernel spreads connections over them."""
    from multiprocessing.reduction import ForkingPickler

    parent = serve.PerWorkerSocket.reserve("127.0.0.1", 0)
    workers: list[socket.socket] = [ForkingPickler.loads(ForkingPickler.dumps(parent)) for _ in range(2)]
    clients: list[socket.socket] = []
    try:
        assert all(type(w) is socket.socket and w.getsockname() == parent.getsockname() for w in workers)
        assert not parent.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        for worker in workers:
            worker.listen(128)
            worker.settimeout(0.2)
        clients += [socket.create_connection(parent.getsockname()) for _ in range(64)]
        accepted = [_accept_all(worker) for worker in workers]
        assert sum(accepted) == 64 and min(accepted) > 0, accepted  # all on one: a chance of 2 in 2**64
    finally:
        for sock in [parent, *workers, *clients]:
            sock.close()


def _accept_all(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            return count
        conn.close()
        count += 1
