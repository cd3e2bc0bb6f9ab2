"""`boxcut dev`: the whole stack on one machine, with embedded stand-ins for what is not there.

Redis: the configured one when it answers; else a private `redis-server` on the configured port when one is
installed; else fakeredis's TCP server on that port. Box: the real one when credentials are set; else boxsim,
the local simulator, clearly labelled. Then a Celery worker in a child process.

Unless BOXCUT_KEY_PREFIX is set, the stack keeps its keys and its Celery queues under a prefix of its own, made for
this run (`boxcut-dev-1a2b3c4d:`) and removed when it stops: a second `boxcut dev` beside it, or a production
stack on a Redis that `.env` names, shares nothing with it, so neither's worker takes the other's jobs.

Once up, it writes `boxcut-dev.env` where it was started (`write_env_file`): a file a shell beside it sources
(`. ./boxcut-dev.env`) to reach this stack, with `$TOKEN`, `$OPERATOR_TOKEN`, `$INTAKE_URL`, `$BOXSIM_URL` and the
settings a `boxcut` command needs; readable by its owner only (it holds tokens), removed when the stack stops.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse

import redis

from config import Settings, defaults
from config.settings import displayable_url

# boxsim's port in `boxcut dev` when free: fixed, so a printed sample command stays valid between runs.
BOXSIM_PORT = 8765

# What `boxcut dev` writes where it was started, for a shell beside it to source (`. ./boxcut-dev.env`).
ENV_FILE_NAME = "boxcut-dev.env"


@dataclass(frozen=True)
class IntakeAccess:
    """Where `boxcut dev`'s intake listens and the tokens a person can paste (generated ones only)."""

    url: str
    intake_token: str | None
    operator_token: str | None


@dataclass
class DevStack:
    """What `boxcut dev` started, and how to stop it."""

    settings: Settings
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    lines: list[str] = field(default_factory=list)
    _stops: list[Callable[[], None]] = field(default_factory=list)
    simulated_box: bool = False
    intake: IntakeAccess | None = None
    own_prefix: bool = False  # the key prefix was made for this run (BOXCUT_KEY_PREFIX is not set)
    boxsim_url: str | None = None  # the simulator's root (its /_boxsim endpoints), when Box is simulated
    box_env: dict[str, str] = field(default_factory=dict)  # the Box settings given to the worker (boxsim's)

    def start(self, *, worker_concurrency: int = 2, intake_port: int = defaults.INTAKE_PORT) -> None:
        """Start Redis, Box, a worker and the intake as needed, noting each in `lines`; `settings` then says
        where this stack keeps its keys."""
        self.isolate()
        self._ensure_redis()
        self._forget_own_keys_at_stop()
        self._ensure_box()
        port = intake_port if _port_free(intake_port) else _free_port()
        tokens = self._make_tokens()
        console = self._turn_console_on(f"http://127.0.0.1:{port}")  # before the worker: its notices link there
        self._start_worker(worker_concurrency)
        self._start_intake(port, tokens, console=console)

    def stop(self) -> None:
        for stop in reversed(self._stops):
            with contextlib.suppress(Exception):
                stop()
        self._stops.clear()

    # -- key prefix -----------------------------------------------------------------------------------------

    def isolate(self) -> None:
        """A key prefix of this run's own, unless BOXCUT_KEY_PREFIX names one. With it, the Redis broker keeps the
        Celery queues under the prefix too, so RabbitMQ (whose queues no prefix separates) is not used."""
        if self.settings.key_prefix_chosen:
            self.lines.append(f"keys    under {self.settings.key_prefix} (BOXCUT_KEY_PREFIX)")
            return
        self.settings = replace(self.settings, key_prefix=dev_prefix(), rabbitmq_url=None)
        self.env["BOXCUT_KEY_PREFIX"] = self.settings.key_prefix
        self.env["BOXCUT_BROKER_URL"] = ""
        self.own_prefix = True
        self.lines.append(f"keys    under {self.settings.key_prefix}, this run's own: its jobs and queues are no other "
                          "stack's (BOXCUT_KEY_PREFIX chooses another)")

    def _forget_own_keys_at_stop(self) -> None:
        """Remove this run's keys when it stops (after its worker and intake, before a private Redis)."""
        from worker.connections import redis_client

        if self.own_prefix:
            settings = self.settings
            self._stops.append(lambda: forget_keys(redis_client(settings), settings.key_prefix))

    # -- Redis -----------------------------------------------------------------------------------------------

    def _ensure_redis(self) -> None:
        url = self.settings.redis_url
        if self.settings.sentinel is not None:
            self._use_sentinels()
            return
        if _redis_answers(url):
            self.lines.append(f"redis   using the Redis at {displayable_url(url)}")
            return
        parsed = urlparse(url)
        host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
        server = shutil.which("redis-server")
        if server:
            self._start_redis_server(server, host, port)
            self.lines.append(f"redis   started a private redis-server on {host}:{port} (nothing answered at "
                              f"{displayable_url(url)})")
        else:
            self._start_fake_redis(host, port)
            self.lines.append(f"redis   started fakeredis's TCP server on {host}:{port} (no redis-server installed;"
                              " in memory, for trying boxcut out only)")
        _wait_until(lambda: _redis_answers(url), what=f"Redis at {url}")

    def _use_sentinels(self) -> None:
        """Sentinels name a Redis that is somebody's service: used when its primary answers, never stood in for."""
        from worker.connections import redis_client

        redis_client(self.settings).ping()  # a RedisError is said in one line, as for any command
        self.lines.append(f"redis   using the primary that the Sentinels at {self.settings.redis_shown} name")

    def _start_redis_server(self, server: str, host: str, port: int) -> None:
        proc = subprocess.Popen(
            [server, "--port", str(port), "--bind", host, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._stops.append(lambda: _end(proc))

    def _start_fake_redis(self, host: str, port: int) -> None:
        from fakeredis import TcpFakeServer

        server = TcpFakeServer((host, port), server_type="redis")
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self._stops.append(server.shutdown)

    # -- Box -------------------------------------------------------------------------------------------------

    def _ensure_box(self) -> None:
        if self.settings.has_box_credentials:
            self.lines.append(f"box     REAL Box at {self.settings.box_api_base_url} "
                              f"({self.settings.box_auth_mode.value})")
            return
        from boxsim import BoxSim, SimConfig

        port = BOXSIM_PORT if _port_free(BOXSIM_PORT) else 0
        sim = BoxSim(SimConfig(port=port)).start()
        self._stops.append(sim.stop)
        config = sim.config
        self.box_env = {
            "BOX_API_BASE_URL": sim.base_url,
            "BOX_OAUTH_URL": sim.oauth_url,
            "BOX_CLIENT_ID": config.client_id,
            "BOX_CLIENT_SECRET": config.client_secret,
            "BOX_ENTERPRISE_ID": config.enterprise_id,
        }
        self.env.update(self.box_env)
        self.boxsim_url = sim.admin_url.removesuffix("/_boxsim")
        self.simulated_box = True
        self._mark_simulated_box(sim.base_url)
        self.lines.append(f"box     SIMULATED: boxsim at {sim.base_url} (no Box credentials are set; "
                          "seeded users such as jdoe@example.com)")

    def _mark_simulated_box(self, api_url: str) -> None:
        """Say in Redis, under this run's prefix, that its Box is boxsim at `api_url` (`boxcut doctor` reads it,
        so it tells the dev stack's simulator from a Box it cannot reach); gone when the stack stops."""
        from worker.connections import redis_client

        client, key = redis_client(self.settings), simulated_box_key(self.settings.key_prefix)
        client.set(key, api_url)

        def unmark() -> None:
            client.delete(key)

        self._stops.append(unmark)

    # -- worker ----------------------------------------------------------------------------------------------

    def _start_worker(self, concurrency: int) -> None:
        self.env["BOXCUT_REDIS_URL"] = self.settings.redis_url
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "worker", "--concurrency", str(concurrency)], env=self.env
        )
        self._stops.append(lambda: _end(proc))
        # Up once it keeps its heartbeat; a worker that refused to start (no usable Box credentials) has exited.
        joined = self._worker_joined(proc.pid)
        _wait_until(lambda: proc.poll() is not None or joined(), what="the worker", timeout=60)
        if proc.poll() is not None:
            raise DevStackError(f"the worker did not start (exit {proc.returncode}): its reason is above")
        self.lines.append(f"worker  a Celery worker (prefork, {concurrency} processes), pid {proc.pid}")
        self.lines.append(f"archive {self._archive_shown()}")

    def _worker_joined(self, pid: int) -> Callable[[], bool]:
        """A check of whether the worker of process `pid` keeps its heartbeat among this prefix's workers
        (worker/run/fleet.py), on one Redis client however often it is asked."""
        from worker.connections import redis_client
        from worker.run.fleet import Fleet

        fleet = Fleet(redis_client(self.settings), key_prefix=self.settings.key_prefix)
        return lambda: any(member.worker.endswith(f":{pid}") for member in fleet.live())

    def _archive_shown(self) -> str:
        """Where finished jobs settle: the archive's URL with its password hidden, and whether it is embedded."""
        from worker.archive.store import Archive

        archive = Archive(self.settings.archive_location)
        try:
            if archive.embedded:
                return f"{archive.where}: an embedded SQLite file (BOXCUT_ARCHIVE_URL unset; one host only)"
            return f"{archive.where} (BOXCUT_ARCHIVE_URL; `boxcut migrate` brings its schema up to date)"
        finally:
            archive.close()


    # -- intake --------------------------------------------------------------------------------------------

    def _make_tokens(self) -> tuple[str | None, str | None]:
        """With no intake or operator tokens configured, make some for this session (every process of the stack
        gets them: the console's sign-in is checked by the worker's settings too); the ones made."""
        intake_token = operator_token = None
        if not (self.settings.intake_tokens or self.settings.intake_hmac_secrets):
            intake_token = self.env["BOXCUT_INTAKE_TOKENS"] = "dev-intake-" + secrets.token_urlsafe(16)
        if not self.settings.operator_tokens:
            operator_token = self.env["BOXCUT_OPERATOR_TOKENS"] = "dev-operator-" + secrets.token_urlsafe(16)
        return intake_token, operator_token

    def _start_intake(self, port: int, tokens: tuple[str | None, str | None], *, console: bool = False) -> None:
        """Serve the intake on loopback, and show the tokens made for this session (`tokens`)."""
        intake_token, operator_token = tokens
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "intake", "--host", "127.0.0.1", "--port", str(port)], env=self.env
        )
        self._stops.append(lambda: _end(proc))
        _wait_until(lambda: _http_ok(url + "/healthz"), what=f"the intake at {url}", timeout=30)
        self.intake = IntakeAccess(url, intake_token, operator_token)
        made = " (tokens made for this session, shown below)" if intake_token or operator_token else ""
        self.lines.append(f"intake  {url}, pid {proc.pid}{made}")
        if console:
            self.lines.append(f"console {url}/console (sign in with the operator token: OPERATOR_TOKEN in "
                              f"{ENV_FILE_NAME})")

    def _turn_console_on(self, url: str) -> bool:
        """The operator console too, served over plain http on loopback at `url` and signed in with an operator
        token, unless BOXCUT_CONSOLE says otherwise; whether it is on. Left off when nobody could sign in, or when
        BOXCUT_PUBLIC_URL names another address (its cookie and origin would be that address's, not this one's)."""
        if self.env.get("BOXCUT_CONSOLE", "").strip():
            return self.settings.console
        if not (self.settings.console_token_signin or self.settings.oidc_issuer):
            return False  # nobody could sign in: the console stays off, as the settings would refuse it
        from worker.console.session import LOOPBACK_HOSTS

        public = self.settings.public_url
        if public and not (urlparse(public).scheme == "http" and urlparse(public).hostname in LOOPBACK_HOSTS):
            self.lines.append(f"console off: BOXCUT_PUBLIC_URL names {public}, not this stack's intake "
                              "(BOXCUT_CONSOLE=on serves it anyway)")
            return False
        self.env["BOXCUT_CONSOLE"] = "on"
        self.env["BOXCUT_PUBLIC_URL"] = public or url  # links in notices point here; the cookie is not Secure
        return True

    # -- the env file ----------------------------------------------------------------------------------------

    def env_file_text(self) -> str:
        """A shell file that gives another shell this stack: the intake's URL and tokens, boxsim's URL, and the
        settings a `boxcut` command needs to reach the same Redis, keys, broker and Box. Values shell-quoted."""
        lines = ["# `boxcut dev`'s stack, for a shell beside it: . ./" + ENV_FILE_NAME,
                 f"# written when it started (pid {os.getpid()}), removed when it stops; it holds tokens, so it is "
                 "readable by you only.",
                 "# Start another `boxcut dev` from a shell without it: that one would take this stack's key prefix "
                 "and Box."]
        exports: dict[str, str] = {}
        if self.intake is not None:
            lines += self._token_lines(exports)
            exports["INTAKE_URL"] = self.intake.url
        if self.boxsim_url is not None:
            exports["BOXSIM_URL"] = self.boxsim_url
        # What the worker was given that a shell beside it lacks: its Redis, its own key prefix, its broker (an
        # empty BOXCUT_BROKER_URL is the Redis, whatever `.env` says) and, with boxsim, the Box settings.
        exports["BOXCUT_REDIS_URL"] = self.settings.redis_url
        exports["BOXCUT_KEY_PREFIX"] = self.settings.key_prefix
        exports["BOXCUT_BROKER_URL"] = self.settings.rabbitmq_url or ""
        exports.update(self.box_env)
        lines += [f"export {name}={shlex.quote(value)}" for name, value in exports.items()]
        return "\n".join(lines) + "\n"

    def _token_lines(self, exports: dict[str, str]) -> list[str]:
        """TOKEN and OPERATOR_TOKEN: the ones made for this session, else the first configured one (said in a
        comment), else unset with the reason."""
        access = self.intake
        assert access is not None
        lines: list[str] = []
        if access.intake_token is not None:
            exports["TOKEN"] = access.intake_token
        elif self.settings.intake_tokens:
            lines.append("# TOKEN: the first of BOXCUT_INTAKE_TOKENS, as configured (boxcut dev made none)")
            exports["TOKEN"] = self.settings.intake_tokens[0].secret.reveal()
        else:
            lines += ["# no TOKEN: the intake takes HMAC-signed alerts only (BOXCUT_INTAKE_HMAC_SECRETS is set, "
                      "BOXCUT_INTAKE_TOKENS is not)", "unset TOKEN"]
        if access.operator_token is not None:
            exports["OPERATOR_TOKEN"] = access.operator_token
        elif self.settings.operator_tokens:
            lines.append("# OPERATOR_TOKEN: the first of BOXCUT_OPERATOR_TOKENS, as configured (boxcut dev made "
                         "none)")
            exports["OPERATOR_TOKEN"] = self.settings.operator_tokens[0].secret.reveal()
        return lines

    def write_env_file(self, folder: Path) -> Path:
        """Write `folder/boxcut-dev.env` (replacing one there; mode 0600, it holds tokens) and remove it when the
        stack stops, unless another stack has replaced it since. Returns its path."""
        path = folder / ENV_FILE_NAME
        text = self.env_file_text()
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{ENV_FILE_NAME}.")  # made 0600
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as out:
                out.write(text)
            os.chmod(temporary, 0o600)
            os.replace(temporary, path)  # whole or not at all, for a shell sourcing it meanwhile
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        self._stops.append(lambda: _remove_if_ours(path, text))
        return path


def _remove_if_ours(path: Path, text: str) -> None:
    """Remove the env file this stack wrote, not one a later `boxcut dev` in the same folder wrote over it."""
    with contextlib.suppress(OSError):
        if path.read_text(encoding="utf-8") == text:
            path.unlink()


def simulated_box_key(prefix: str) -> str:
    """Where a running `boxcut dev` names the boxsim it started as its Box (the simulator's API URL)."""
    return f"{prefix}dev:simulated_box"


def dev_prefix() -> str:
    """A key prefix for one `boxcut dev` run: random, so two runs on one Redis never meet."""
    return f"boxcut-dev-{secrets.token_hex(4)}:"


def forget_keys(client: redis.Redis, prefix: str) -> None:
    """Delete every key under `prefix` (one of this run's own, so nobody else's)."""
    batch = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


class DevStackError(RuntimeError):
    """A part of the dev stack did not come up; the message says which (and the part's own output says why)."""


def _wait_until(check: Callable[[], bool], *, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise DevStackError(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.1)


def _end(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
