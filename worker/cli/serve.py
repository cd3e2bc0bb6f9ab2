"""`boxcut intake`: the intake app wired to Celery, served by uvicorn in one process or several on one port.

With `--workers N` uvicorn starts N processes (spawned, not forked) on one port, each listening on a socket of
its own (`PerWorkerSocket`). Each one imports a factory below by name and builds its own app: its own Redis
client, Celery app and broker connection, never one inherited from the parent. Settings reach them as they reach
the parent, from the environment and .env; the parent has already checked them (and the `--insecure-dev` host)
before any child starts.
"""

from __future__ import annotations

import importlib.util
import logging
import socket
import sys
from typing import TYPE_CHECKING, Any, TypeVar

from config import Settings, load_settings
from worker import logs

if TYPE_CHECKING:
    from fastapi import FastAPI

# The factories uvicorn's worker processes import (`module:function`); two, so that no environment variable can
# turn the insecure mode on: only `boxcut intake --insecure-dev` names the second one, after its loopback check.
APP_FACTORY = f"{__name__}:intake_app_from_environment"
INSECURE_DEV_APP_FACTORY = f"{__name__}:insecure_dev_intake_app_from_environment"


def intake_app(settings: Settings, *, insecure_dev: bool = False) -> FastAPI:
    """The intake app for these settings, enqueuing through a Celery app of its own: in the same Redis step as
    each job's record when the broker is the records' Redis (`tasks.publishing`).

    Raises SettingsError for a setting the intake refuses."""
    from tasks.app import broker_check, build_celery_app, enqueuer
    from tasks.publishing import task_writes
    from worker.intake.build import build_intake_app

    celery = build_celery_app(settings)
    return build_intake_app(settings, enqueue=enqueuer(celery), broker_check=broker_check(celery),
                            insecure_dev=insecure_dev, task_writes=task_writes(celery, settings))


def intake_app_from_environment() -> FastAPI:
    """The app of one uvicorn worker process: settings from the environment, as the parent read them."""
    return _worker_app(insecure_dev=False)


def insecure_dev_intake_app_from_environment() -> FastAPI:
    """As `intake_app_from_environment`, accepting requests without credentials (`--insecure-dev`)."""
    return _worker_app(insecure_dev=True)


def _worker_app(*, insecure_dev: bool) -> FastAPI:
    settings = load_settings()
    # What `boxcut`'s main() and _settings() do in the parent: a spawned process starts with logging unset.
    logs.configure(level=settings.log_level, fmt=settings.log_format)
    return intake_app(settings, insecure_dev=insecure_dev)


def uvicorn_options(settings: Settings, *, host: str, port: int, workers: int) -> dict[str, Any]:
    """uvicorn's settings: httptools and uvloop when installed (else its pure-Python parser and asyncio), and no
    access log: it would print query strings, and a Splunk `?token=` is a secret. The app logs paths."""
    return {
        "host": host,
        "port": port,
        "workers": workers,
        "http": "httptools" if _installed("httptools") else "h11",
        "loop": "uvloop" if _installed("uvloop") else "asyncio",
        "access_log": False,
        "log_level": settings.log_level.lower(),
        "log_config": None,  # uvicorn's lines go through boxcut's handler (JSON or text, worker/logs.py)
    }


def serve(settings: Settings, *, host: str, port: int, workers: int = 1, insecure_dev: bool = False) -> None:
    """Serve the intake until stopped. The app is built here first, so a bad setting stops the start with
    SettingsError before any process is spawned; with several workers each then builds its own."""
    import uvicorn

    app = intake_app(settings, insecure_dev=insecure_dev)
    options = uvicorn_options(settings, host=host, port=port, workers=workers)
    if workers == 1:
        uvicorn.run(app, **options)
        return
    del app  # each worker process builds its own, with its own connections
    factory = INSECURE_DEV_APP_FACTORY if insecure_dev else APP_FACTORY
    if not hasattr(socket, "SO_REUSEPORT"):  # Windows: the workers share one socket, as uvicorn has them
        uvicorn.run(factory, factory=True, **options)
        return
    run_workers(factory, options)


def run_workers(factory: str, options: dict[str, Any]) -> None:
    """uvicorn's worker processes (its supervisor: health checks, a dead worker started again), each serving the
    app `factory` builds on a listening socket of its own (`PerWorkerSocket`)."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(factory, factory=True, **options)
    log = logging.getLogger("uvicorn.error")
    try:
        address = PerWorkerSocket.reserve(options["host"], options["port"])
    except OSError as error:  # as uvicorn says it when it binds
        log.error(error)
        sys.exit(STARTUP_FAILURE)
    log.info("Uvicorn running on http://%s:%d (Press CTRL+C to quit)", options["host"], address.getsockname()[1])
    Multiprocess(config, sockets=[address]).run()


class PerWorkerSocket(socket.socket):
    """The intake's address, as uvicorn hands it to each worker process it spawns: unpickled there as a socket of
    that worker's own, bound to the address with SO_REUSEPORT, so the kernel spreads new connections over the
    workers (by a hash of each connection's addresses) instead of letting them race for one.

    With one socket shared by every worker, whichever wakes first accepts every connection waiting: keep-alive
    senders that connect together pile onto one worker while the others idle (16 connections made at once split
    16:0 to 9:7 over two workers in tests here, and the intake took no more alerts than one worker did). The
    parent's socket is bound (it holds the port, with SO_REUSEPORT) but never listens, so it takes none."""

    @classmethod
    def reserve(cls, host: str, port: int) -> PerWorkerSocket:
        """The parent's socket: bound to the address, not listening."""
        return _bound(cls(socket.AF_INET6 if ":" in host else socket.AF_INET), (host, port))

    def __reduce__(self) -> tuple[Any, ...]:
        return _own_socket, (self.family, self.getsockname())


def _own_socket(family: socket.AddressFamily, address: tuple[Any, ...]) -> socket.socket:
    """A worker's own socket at `address` (uvicorn's server makes it listen)."""
    return _bound(socket.socket(family), address)


_Socket = TypeVar("_Socket", bound=socket.socket)


def _bound(sock: _Socket, address: tuple[Any, ...]) -> _Socket:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
