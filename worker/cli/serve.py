"""`boxcut intake`: the intake app wired to Celery, served by uvicorn in one process or several on one port.

With `--workers N` uvicorn starts N processes (spawned, not forked) that share the listening socket. Each one
imports a factory below by name and builds its own app: its own Redis client, Celery app and broker connection,
never one inherited from the parent. Settings reach them as they reach the parent, from the environment and
.env; the parent has already checked them (and the `--insecure-dev` host) before any child starts.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from config import Settings, load_settings
from worker import logs

if TYPE_CHECKING:
    from fastapi import FastAPI

# The factories uvicorn's worker processes import (`module:function`); two, so that no environment variable can
# turn the insecure mode on: only `boxcut intake --insecure-dev` names the second one, after its loopback check.
APP_FACTORY = f"{__name__}:intake_app_from_environment"
INSECURE_DEV_APP_FACTORY = f"{__name__}:insecure_dev_intake_app_from_environment"


def intake_app(settings: Settings, *, insecure_dev: bool = False) -> FastAPI:
    """The intake app for these settings, enqueuing through a Celery app of its own.

    Raises SettingsError for a setting the intake refuses."""
    from tasks.app import broker_check, create_app, enqueuer
    from worker.intake.build import build_intake_app

    celery = create_app(settings)
    return build_intake_app(settings, enqueue=enqueuer(celery), broker_check=broker_check(celery),
                            insecure_dev=insecure_dev)


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
    uvicorn.run(INSECURE_DEV_APP_FACTORY if insecure_dev else APP_FACTORY, factory=True, **options)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
