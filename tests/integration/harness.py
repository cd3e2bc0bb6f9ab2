"""The real stack for integration tests: a real Redis, boxsim over HTTP, and real Celery workers (prefork)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from boxsim import BoxSim, SimConfig
from config import Settings, load_settings
from tasks.app import build_celery_app, enqueuer
from worker.connections import redis_client
from worker.intake.auth import signature
from worker.jobs.history import JobHistory, history_of
from worker.jobs.model import Job, JobState
from worker.jobs.store import JobStore
from worker.jobs.submit import JobRequest, build_job, submit

REPO = Path(__file__).resolve().parents[2]

# Short limits so a drill's redelivery takes seconds, not the production half hour; they still satisfy the
# rule that the visibility timeout exceeds a task run's hard time limit (checked by load_settings).
FAST_ENV = {
    "BOXCUT_VISIBILITY_TIMEOUT": "25",
    "BOXCUT_RUN_BUDGET_SECONDS": "2",
    "BOXCUT_RETRY_BUDGET_SECONDS": "5",
    "BOXCUT_HTTP_READ_TIMEOUT": "2",
    "BOXCUT_HTTP_CONNECT_TIMEOUT": "2",
    "BOXCUT_RATE_LIMIT_PER_MINUTE": "6000",
    # Box's event stream is read only by the tests about it (test_box_shield.py), so no other test's request
    # counts or rate limits see its calls.
    "BOXCUT_EVENTS_POLL_SECONDS": "0",
    # Notifications go out only where a test names receivers (BOXCUT_NOTIFY_URLS; test_notifications.py); there
    # the audit stream is followed twice a second.
    "BOXCUT_NOTIFY_POLL_SECONDS": "0.5",
    # The brake across jobs is on only where a test sets it (test_brake.py): the storms and drills send hundreds
    # of users from one source within seconds, which is what the brake exists to hold.
    "BOXCUT_BRAKE_USERS": "0",
    "BOXCUT_BRAKE_TOTAL_USERS": "0",
}


@dataclass
class ChildProcess:
    """A boxcut child process (a worker or the intake) in a session of its own, so it can be killed whole."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    def wait_ready(self, timeout: float = 30.0, *, marker: str = "ready.") -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.log_path.stem} did not start:\n"
                                   f"{self.log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes: no goodbye, no acknowledgement."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=45)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Stack:
    """One test module's boxcut: its own key prefix on the shared Redis, its own boxsim, its workers."""

    redis_url: str
    sim: BoxSim
    tmp: Path
    extra_env: Mapping[str, str] = field(default_factory=dict)
    key_prefix: str = field(default_factory=lambda: f"boxcut-test-{uuid.uuid4().hex[:10]}:")
    workers: list[ChildProcess] = field(default_factory=list)
    servers: list[ChildProcess] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        config = self.sim.config
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BOX_", "BOXCUT_"))}
        env.update(FAST_ENV)
        env.update(
            BOXCUT_REDIS_URL=self.redis_url,
            BOXCUT_KEY_PREFIX=self.key_prefix,
            BOX_API_BASE_URL=self.sim.base_url,
            BOX_OAUTH_URL=self.sim.oauth_url,
            BOX_CLIENT_ID=config.client_id,
            BOX_CLIENT_SECRET=config.client_secret,
            BOX_ENTERPRISE_ID=config.enterprise_id,
            # The stack's own archive, never the default file in the working directory (the repository).
            BOXCUT_ARCHIVE_URL=f"sqlite:///{self.tmp}/archive.sqlite3",
        )
        env.update(self.extra_env)
        return env

    def settings(self) -> Settings:
        return load_settings(self.env, env_file=None)

    def store(self) -> JobStore:
        return JobStore(redis_client(self.settings()), key_prefix=self.key_prefix)

    def history(self) -> JobHistory:
        """Reads of jobs wherever they are: Redis, their packed copies, the stack's archive."""
        return history_of(self.settings(), self.store())

    def submit(self, targets: list[dict[str, str]], *, dry_run: bool = False, reason: str = "test") -> str:
        settings = self.settings()
        request = JobRequest(targets=targets, source="test", reason=reason, requested_by="pytest", dry_run=dry_run)
        return submit(store=self.store(), enqueue=enqueuer(build_celery_app(settings)), job=build_job(request)).job_id

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """Poll the job record until it is final (or waits for approval); fail with the record if it never is."""
        store, deadline = self.store(), time.monotonic() + timeout
        while True:
            job = store.load(job_id)
            if job.state.is_final or job.state is JobState.AWAITING_APPROVAL:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job.state.value} after {timeout} s: {job.to_dict()}")
            time.sleep(0.1)

    def start_worker(self, *, concurrency: int = 2, extra_env: Mapping[str, str] | None = None,
                     loglevel: str | None = "DEBUG", beat: bool = True) -> ChildProcess:
        args = ["worker", "--concurrency", str(concurrency), *(["--loglevel", loglevel] if loglevel else []),
                *([] if beat else ["--no-beat"])]
        # Named by how many were started before (not how many run): a worker started in a killed one's place
        # keeps its own log.
        worker = self._spawn(f"worker-{len(list(self.tmp.glob('worker-*.log')))}", args, extra_env)
        self.workers.append(worker)
        worker.wait_ready()
        return worker

    def start_service(self, command: str, *args: str, ready: str,
                      extra_env: Mapping[str, str] | None = None) -> ChildProcess:
        """Run another long-lived `boxcut` command (e.g. `beat`) until its log shows `ready`."""
        service = self._spawn(f"{command}-{len(self.servers)}", [command, *args], extra_env)
        self.servers.append(service)
        service.wait_ready(marker=ready)
        return service

    def _spawn(self, name: str, args: list[str], extra_env: Mapping[str, str] | None) -> ChildProcess:
        log_path = self.tmp / f"{name}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", *args],
                env={**self.env, **(extra_env or {})}, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return ChildProcess(proc, log_path)

    def start_intake(self, *, extra_env: Mapping[str, str] | None = None, port: int | None = None) -> str:
        """Serve `boxcut intake` on `port` (a free loopback one by default); return its base URL once /healthz
        answers."""
        port = port or free_port()
        log_path = self.tmp / f"intake-{port}-{len(self.servers)}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "intake", "--port", str(port)],
                env={**self.env, **(extra_env or {})}, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.servers.append(ChildProcess(proc, log_path))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while not _answers(url + "/healthz"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"intake did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        return url

    def worker_logs(self) -> str:
        return "".join(w.log_path.read_text(errors="replace") for w in self.workers)

    def terminate_requests(self, endpoint: str = "/users/terminate_sessions") -> list[dict[str, Any]]:
        return [r for r in self.sim.requests(path=f"/2.0{endpoint}") if r["method"] == "POST"]

    def close(self) -> None:
        for process in self.servers + self.workers:
            process.stop()
        client = redis_client(self.settings())
        keys = list(client.scan_iter(match=f"{self.key_prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def until(done: Callable[[], bool], what: str, *, timeout: float = 30.0, interval: float = 0.1,
          ignoring: tuple[type[Exception], ...] = ()) -> None:
    """Poll `done` until it is true; fail saying `what` was awaited. Errors in `ignoring` count as not yet (a
    server still starting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if done():
                return
        except ignoring:
            pass
        assert time.monotonic() < deadline, f"still waiting for {what} after {timeout} s"
        time.sleep(interval)


def post_signed(url: str, secret: str, payload: object) -> requests.Response:
    """POST `payload` as JSON, signed as a sender with `secret` signs it (X-Boxcut-Timestamp/-Signature)."""
    body = json.dumps(payload).encode()
    stamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Boxcut-Timestamp": stamp,
               "X-Boxcut-Signature": signature(secret, stamp, body)}
    return requests.post(url, data=body, headers=headers, timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


@contextmanager
def running_stack(redis_url: str, tmp: Path, *, sim_config: SimConfig | None = None,
                  extra_env: Mapping[str, str] | None = None, worker: bool = True,
                  concurrency: int = 2) -> Iterator[Stack]:
    """A stack with boxsim (seeded) and, unless told otherwise, one worker; cleaned up afterwards."""
    sim = BoxSim(sim_config or SimConfig(port=0)).start()
    stack = Stack(redis_url=redis_url, sim=sim, tmp=tmp, extra_env=extra_env or {})
    try:
        if worker:
            stack.start_worker(concurrency=concurrency)
        yield stack
    finally:
        stack.close()
        sim.stop()
