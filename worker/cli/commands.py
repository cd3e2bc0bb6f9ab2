"""The `boxcut` command line."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from config import Settings, SettingsError, defaults, load_settings
from config.settings import displayable_url
from worker import logs
from worker.errors import (
    InvalidOffboardFile,
    InvalidRequest,
    InvalidTransition,
    JobNotFound,
    NotEnqueued,
    describe_error,
)
from worker.jobs.model import JobState  # enums only (stdlib): `jobs --state` lists the states

# `boxcut --help` must stay fast: Celery, FastAPI, redis, requests and the job store are imported by the commands
# that use them, not here (tests/unit/cli/test_startup.py pins it).
if TYPE_CHECKING:
    from celery import Celery

    from worker.cli.dev_stack import DevStack, IntakeAccess
    from worker.jobs.history import JobHistory
    from worker.jobs.model import Job
    from worker.jobs.store import JobStore
    from worker.jobs.submit import Enqueue, JobRequest, Submitted

# Exit codes: scripts can tell a full success from the rest; 64 a bad command line, 65 a bad input file.
EXIT_OK, EXIT_FAILED, EXIT_PARTIAL, EXIT_USAGE, EXIT_DATA = 0, 1, 2, 64, 65
# `--wait` ended with the job waiting for a person's approval: nothing was sent yet.
EXIT_AWAITING_APPROVAL = 3
# `report --verify`: the report is unchanged since signed, but by a key nobody said to trust.
EXIT_UNTRUSTED = 4
# 69 (EX_UNAVAILABLE): Redis, which holds the records and the queue, is down or full.
EXIT_UNAVAILABLE = 69


def _fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"boxcut: {message}", err=True)
    sys.exit(code)


def _settings() -> Settings:
    try:
        settings = load_settings()
    except SettingsError as exc:
        _fail(f"bad setting {exc}", EXIT_USAGE)
    # BOXCUT_LOG_LEVEL and BOXCUT_LOG_FORMAT reach every logger of this process and, through the fork, of a
    # worker's pool and its beat.
    logs.configure(level=settings.log_level, fmt=settings.log_format)
    return settings


def _store(settings: Settings) -> JobStore:
    from worker.connections import redis_client
    from worker.jobs.store import JobStore

    return JobStore.from_settings(redis_client(settings), settings)


def _history(settings: Settings) -> JobHistory:
    from worker.jobs.history import history_of

    return history_of(settings, _store(settings))


@contextlib.contextmanager
def _archive_read() -> Iterator[None]:
    """A read the archive cannot answer stops the command, saying why (never the archive's URL)."""
    from worker.archive.store import ArchiveError

    try:
        yield
    except ArchiveError as error:
        _fail(f"the archive cannot be read now: {error}", EXIT_UNAVAILABLE)


def celery_app(settings: Settings) -> Celery:
    """The Celery app for these settings (`tasks.app.build_celery_app`, imported only by the commands that need
    it)."""
    from tasks.app import build_celery_app

    return build_celery_app(settings)


def enqueuer(app: Celery) -> Enqueue:
    """The enqueue seam for `app` (`tasks.app.enqueuer`)."""
    from tasks.app import enqueuer as make_enqueuer

    return make_enqueuer(app)


class _Commands(click.Group):
    """boxcut's commands, with the failures every command may meet said in one line, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except NotEnqueued as refused:
            _fail(f"{refused}; try again when the broker answers (boxcut doctor checks it)")
        except Exception as error:
            if not _is_redis_error(error):
                raise
            _fail(f"Redis at {_redis_url()} {_redis_trouble(error)}", EXIT_UNAVAILABLE)


def _is_redis_error(error: BaseException) -> bool:
    # redis is imported only by the commands that use it (start-up time): name the class, not import it.
    return any(c.__module__.startswith("redis") and c.__name__ == "RedisError" for c in type(error).__mro__)


def _redis_trouble(error: BaseException) -> str:
    """What went wrong and what to do. A full Redis's own words quote the command it refused (job fields): not
    repeated here."""
    name = type(error).__name__
    if name == "OutOfMemoryError":
        return ("is full (maxmemory reached) and refuses writes; free memory or raise its maxmemory "
                "(boxcut doctor checks it)")
    said = describe_error(error).rstrip(".")
    trouble = "does not answer" if name in ("ConnectionError", "TimeoutError") else "refused the request"
    return f"{trouble}: {said}; start it or fix BOXCUT_REDIS_URL (boxcut doctor checks it)"


def _redis_url() -> str:
    """The Redis URL (or the Sentinels) the settings name, without any login: a one-line error shows no user."""
    from urllib.parse import urlsplit

    try:
        settings = load_settings()
    except SettingsError:
        return "(BOXCUT_REDIS_URL)"
    if settings.sentinel:
        return settings.redis_shown
    url = urlsplit(settings.redis_url)
    host = url.hostname or ""
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{host}{port}{url.path}"


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="boxcut", prog_name="boxcut", message="%(prog)s %(version)s")
def main() -> None:
    """boxcut: end Box sessions of the users and groups an alert or offboarding names, and record Box's answer.

    Settings come from the environment and .env (see docs/configuration.md).
    """
    logs.configure(level=logging.INFO, fmt=os.environ.get("BOXCUT_LOG_FORMAT", "").lower() or None)


# What `boxcut worker --queues` may name (docs/notifications.md: a worker of its own for notify).
WORKER_QUEUES = ("jobs", "send", "notify")


@main.command()
@click.option("--concurrency", "-c", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Worker processes (prefork).")
@click.option("--loglevel", type=click.Choice(["DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL"],
                                             case_sensitive=False),
              default=None, help="Overrides BOXCUT_LOG_LEVEL for this worker.  [default: BOXCUT_LOG_LEVEL]")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="Serve Prometheus metrics of this worker (all its processes) on this port, at /metrics.")
@click.option("--beat/--no-beat", default=True, show_default=True,
              help="Run the periodic tasks (Celery beat) inside this worker; --no-beat where `boxcut beat` runs "
                   "them. One beat is enough; more do no harm.")
@click.option("--queues", "-Q", default=",".join(WORKER_QUEUES), show_default=True,
              help="The work this worker takes, comma-separated: jobs (running jobs), send (the Box calls and "
                   "periodic tasks), notify (notifications). A worker of its own for notify keeps a slow "
                   "receiver from taking a process a Box call could use.")
def worker(concurrency: int, loglevel: str | None, beat: bool, metrics_port: int | None, queues: str) -> None:
    """Run a Celery worker that executes boxcut jobs and sends their Box calls."""
    from worker.cli import worker_metrics

    chosen = _queues(queues)

    if metrics_port is not None:
        worker_metrics.prepare()  # before prometheus-client is imported, here or in a pool process
    settings = _settings()
    _wait_for_redis(settings)
    _check_box_credentials(settings, chosen)
    if metrics_port is not None:
        worker_metrics.serve(settings, metrics_port)
    loglevel = (loglevel or settings.log_level).upper()
    logging.getLogger().setLevel(loglevel)
    _quiet_periodic_tasks()
    app = celery_app(settings)
    quiet = ["--quiet"] if logs.choose_format(settings.log_format, sys.stderr) == "json" else []  # no banner
    stop_heartbeat = _join_fleet(settings, chosen)
    try:
        app.worker_main([*quiet, "worker", "--pool=prefork", f"--concurrency={concurrency}",
                         f"--queues={','.join(chosen)}", f"--loglevel={loglevel}", "--without-gossip",
                         "--without-mingle", *(["--beat"] if beat else [])])
    finally:
        stop_heartbeat()


# How long `boxcut worker` tries Redis (the records, and the queue unless RabbitMQ is the broker) before it gives up
# with EXIT_UNAVAILABLE: a Redis starting beside it (compose) has this long to answer.
REDIS_START_WAIT_SECONDS = 10.0


def _wait_for_redis(settings: Settings, *, wait_seconds: float = REDIS_START_WAIT_SECONDS) -> None:
    """Ping the Redis that holds the records, once a second for `wait_seconds`; then exit 69 saying so. Without
    it the worker would start, and every task (and its Celery consumer, on a Redis broker) retry for ever."""
    import redis

    from worker.connections import redis_client

    client, deadline = redis_client(settings), time.monotonic() + wait_seconds
    while True:
        try:
            client.ping()
            return
        except redis.AuthenticationError as refused:  # a wrong password is no outage: waiting mends nothing
            _fail(f"refusing to start: Redis at {_redis_url()} refused the credentials ({refused}); fix "
                  "BOXCUT_REDIS_URL or BOXCUT_REDIS_PASSWORD", EXIT_USAGE)
        except (redis.RedisError, OSError) as error:
            if time.monotonic() >= deadline:
                _fail(f"refusing to start: Redis at {_redis_url()} {_redis_trouble(error)}; tried for "
                      f"{wait_seconds:.0f} s", EXIT_UNAVAILABLE)
        time.sleep(1.0)


def _check_box_credentials(settings: Settings, queues: list[str]) -> None:
    """Refuse to start without Box credentials, or with ones Box refuses (one fresh token request, its answer
    said without a secret). A Box that does not answer is no refusal: outages are expected, and jobs wait for it.
    A worker for notifications alone talks to no Box. A developer token is not tried (it cannot be refreshed;
    `boxcut doctor` tries it)."""
    import requests

    from config import BoxAuthMode
    from config.celery_settings import QUEUE, SEND_QUEUE
    from worker.box.auth import token_fetcher_for
    from worker.errors import BoxAuthError, BoxTransportError

    if not {QUEUE, SEND_QUEUE} & set(queues):
        return
    if not settings.has_box_credentials:
        _fail("refusing to start: no Box credentials: set BOX_CLIENT_ID, BOX_CLIENT_SECRET and BOX_ENTERPRISE_ID, "
              "or BOX_JWT_CONFIG_FILE, or BOX_DEVELOPER_TOKEN (`boxcut dev` simulates Box)", EXIT_USAGE)
    if settings.box_auth_mode is BoxAuthMode.DEVELOPER_TOKEN:
        return
    try:
        with requests.Session() as session:
            token_fetcher_for(settings, session).fetch()
    except BoxAuthError as refused:
        _fail(f"refusing to start: {refused}; fix the Box settings (boxcut doctor checks them)", EXIT_USAGE)
    except BoxTransportError as unreachable:
        click.echo(f"boxcut worker: {unreachable}: starting anyway; jobs wait for Box to answer", err=True)


def _quiet_periodic_tasks() -> None:
    """Celery's per-round INFO lines about the periodic tasks at DEBUG (tasks/periodic_logs.py)."""
    from tasks.periodic_logs import quiet_periodic_tasks

    quiet_periodic_tasks()


def _join_fleet(settings: Settings, queues: list[str]) -> Callable[[], None]:
    """Refuse to start beside live workers that talk to another Box API (worker/run/fleet.py), else keep this
    worker's heartbeat; return what stops it. A worker for notifications alone talks to no Box."""
    from config.celery_settings import QUEUE, SEND_QUEUE
    from worker.connections import redis_client
    from worker.run.fleet import OtherBox, join

    if not {QUEUE, SEND_QUEUE} & set(queues):
        return lambda: None
    try:
        return join(settings, redis_client(settings)).stop
    except OtherBox as refused:
        _fail(f"refusing to start: {refused}", EXIT_USAGE)


def _queues(text: str) -> list[str]:
    """The Celery queues of the work `--queues` names, or a usage error naming what it does not know."""
    from config.celery_settings import NOTIFY_QUEUE, QUEUE, SEND_QUEUE

    named = {"jobs": QUEUE, "send": SEND_QUEUE, "notify": NOTIFY_QUEUE}
    words = [w.strip().lower() for w in text.split(",") if w.strip()]
    unknown = [w for w in words if w not in named]
    if unknown or not words:
        _fail(f"--queues: {', '.join(unknown) or 'none given'}: choose from {', '.join(WORKER_QUEUES)}", EXIT_USAGE)
    return [named[w] for w in dict.fromkeys(words)]


@main.command()
@click.option("--loglevel", type=click.Choice(["DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL"],
                                             case_sensitive=False),
              default=None, help="Overrides BOXCUT_LOG_LEVEL for this service.  [default: BOXCUT_LOG_LEVEL]")
def beat(loglevel: str | None) -> None:
    """Run boxcut's periodic tasks (Celery beat): the sweep, the directory refresh, the expiry and the event-stream
    reader (Box Shield alerts, the watch after termination), every interval.

    For workers started with --no-beat (a deployment's own `beat` service). It only schedules: workers run the
    tasks. One is enough; more do no harm (every round is safe to repeat). It keeps no schedule file."""
    settings = _settings()
    loglevel = (loglevel or settings.log_level).upper()
    logging.getLogger().setLevel(loglevel)
    _quiet_periodic_tasks()
    app = celery_app(settings)
    app.start(["beat", f"--loglevel={loglevel}"])


@main.command()
@click.option("--host", default=defaults.INTAKE_HOST, show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=defaults.INTAKE_PORT, show_default=True)
@click.option("--workers", "-w", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Intake processes serving the one port (uvicorn workers), each with its own Redis and broker "
                   "connections; about one per core.")
@click.option("--insecure-dev", is_flag=True,
              help="Accept requests without credentials, addressed to loopback only and never beside real Box "
                   "credentials; for trying boxcut out.")
def intake(host: str, port: int, workers: int, insecure_dev: bool) -> None:
    """Serve the HTTP intake: alert webhooks and the operator API."""
    from worker.cli.serve import serve

    settings = _settings()
    if insecure_dev:
        _check_insecure_dev(settings, host)
    # Shared Signals transmitters authenticate by their signatures: an intake for them alone needs no tokens.
    senders = settings.intake_tokens or settings.intake_hmac_secrets or settings.ssf_transmitters
    if not senders and not insecure_dev:
        _fail("no intake credentials: set BOXCUT_INTAKE_TOKENS, BOXCUT_INTAKE_HMAC_SECRETS or "
              "BOXCUT_SSF_TRANSMITTERS (or use --insecure-dev on loopback to try boxcut out)", EXIT_USAGE)
    if settings.console and workers > 1 and settings.console_session_secret is None:
        # Each process would sign sessions with a key of its own: a session would work on one process in N.
        _fail("bad setting BOXCUT_CONSOLE_SESSION_SECRET: missing: the console on more than one intake process "
              "(--workers) needs the key its sessions are signed with (e.g. `openssl rand -hex 32`)", EXIT_USAGE)
    if insecure_dev:
        click.echo("boxcut intake: INSECURE DEV MODE: no credentials are checked", err=True)
    elif not settings.operator_tokens:
        click.echo("boxcut intake: no BOXCUT_OPERATOR_TOKENS: the operator API refuses every request", err=True)
    try:
        serve(settings, host=host, port=port, workers=workers, insecure_dev=insecure_dev)
    except SettingsError as exc:
        _fail(f"bad setting {exc}", EXIT_USAGE)


def _check_insecure_dev(settings: Settings, host: str) -> None:
    """`--insecure-dev` serves on loopback only, and never beside real Box credentials."""
    from worker.intake.build import check_insecure_dev
    from worker.intake.loopback import is_loopback_host

    if not is_loopback_host(host):
        _fail(f"--insecure-dev serves only on loopback (127.0.0.1, ::1, localhost), not {host}", EXIT_USAGE)
    try:
        check_insecure_dev(settings)
    except SettingsError as exc:
        _fail(str(exc), EXIT_USAGE)


def _target_specs(users: tuple[str, ...], groups: tuple[str, ...]) -> list[dict[str, str]]:
    """`--user` values are ids when all digits, else logins; `--group` values are ids or names likewise."""
    specs = [{"type": "user", ("id" if u.isdigit() else "login"): u} for u in users]
    specs += [{"type": "group", ("id" if g.isdigit() else "name"): g} for g in groups]
    return specs


@main.command()
@click.option("--user", "users", multiple=True, metavar="LOGIN|ID", help="A user's login (e-mail) or id; repeat.")
@click.option("--group", "groups", multiple=True, metavar="NAME|ID", help="A group's exact name or id; repeat.")
@click.option("--dry-run", is_flag=True, help="Resolve and check policy, but call no terminate endpoint.")
@click.option("--reason", default="", help="Why: kept in the job record and the audit stream.")
@click.option("--expand-groups", is_flag=True, help="Record the member logins of each group in the job.")
@click.option("--wait", is_flag=True, help="Show progress until the job ends, then its record.")
def terminate(users: tuple[str, ...], groups: tuple[str, ...], dry_run: bool, reason: str, expand_groups: bool,
              wait: bool) -> None:
    """Terminate the Box sessions of users and groups; prints the job id."""
    from worker.cli.output import describe_job
    from worker.jobs.submit import JobRequest, build_job, submit

    if not users and not groups:
        _fail("name at least one --user or --group", EXIT_USAGE)
    settings = _settings()
    store = _store(settings)
    request = JobRequest(targets=_target_specs(users, groups), source="cli", reason=reason,
                         requested_by=_actor(), dry_run=dry_run, expand_groups=expand_groups)
    try:
        job = submit(store=store, enqueue=enqueuer(celery_app(settings)), job=build_job(request))
    except InvalidRequest as exc:
        _fail(str(exc), EXIT_USAGE)
    click.echo(job.job_id)
    if wait:
        _wait_and_exit(store, job.job_id, show=describe_job)


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job record as JSON.")
def status(job_id: str, as_json: bool) -> None:
    """Show a job's record: its state, every target, and every Box call with Box's answer."""
    from worker.cli.output import describe_job

    with _archive_read():
        try:
            found = _history(_settings()).find(job_id)
        except JobNotFound:
            _fail(f"no job {job_id}")
    if as_json:
        click.echo(json.dumps(found.job.to_dict(), indent=2))
        click.echo(f"boxcut: read from {found.stored}", err=True)
    else:
        click.echo(describe_job(found.job))
        click.echo(f"stored:   {found.stored}")


@main.command()
@click.option("--state", type=click.Choice([s.value for s in JobState] + ["dead", "active-after"]),
              help="Only jobs in this state (dead: jobs holding targets whose retries ran out; active-after: jobs "
                   "whose users acted in Box after Box accepted their termination).")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def jobs(state: str | None, limit: int, as_json: bool) -> None:
    """List jobs, newest first."""
    from worker.cli.output import describe_listing

    with _archive_read():
        rows, _ = _history(_settings()).list_jobs(state=state, limit=limit)
    click.echo(json.dumps([r.to_dict() for r in rows], indent=2) if as_json else describe_listing(rows))


def _actor() -> str:
    return f"cli:{_whoami()}"


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Resolve and check policy; list what would be terminated. Calls nothing.")
@click.option("--reason", default="", help="Why (each row may also give its own in a `reason` column).")
@click.option("--id", "submission_id", metavar="ID", help="Submit again with the same id: you get the first job back.")
@click.option("--approve", is_flag=True, help="Approve the job as you submit it, for an operator who means it.")
@click.option("--expand-groups", is_flag=True, help="Record the member logins of each group in the job.")
@click.option("--wait", is_flag=True, help="Show a progress bar until the job ends, then a summary.")
def offboard(file: Path, dry_run: bool, reason: str, submission_id: str | None, approve: bool,
             expand_groups: bool, wait: bool) -> None:
    """End the Box sessions of every user and group in a CSV file (columns as the Box CLI's bulk files:
    user_id, user_login, group_id, group_name, and an optional reason). The whole file is checked first;
    one bad row and nothing is submitted."""
    from worker.cli.output import summary_table
    from worker.jobs.offboarding import offboarding_key, offboarding_request
    from worker.jobs.offboarding_file import parse_csv

    settings = _settings()
    try:
        parsed = parse_csv(file.read_bytes())
    except InvalidOffboardFile as exc:
        _fail(f"{file}: {exc}", EXIT_DATA)
    request = offboarding_request(parsed, reason=reason or f"offboarding file {file.name}", actor=_actor(),
                                  dry_run=dry_run, approve=approve, expand_groups=expand_groups,
                                  submission_id=submission_id)
    store = _store(settings)
    made = _submit_idempotent(settings, store, request, offboarding_key(submission_id, dry_run=dry_run))
    note = " (submitted before with this --id: this is that job)" if made.duplicate else ""
    click.echo(made.job_id + note)
    click.echo(f"{len(parsed.targets):,} targets from {parsed.rows:,} rows ({parsed.merged:,} repeats merged)",
               err=True)
    if wait or dry_run:
        _wait_and_exit(store, made.job_id, show=_would_terminate if dry_run else summary_table)


def _submit_idempotent(settings: Settings, store: JobStore, request: JobRequest, key: str | None) -> Submitted:
    from worker.jobs.idempotency import IdempotencyKeys
    from worker.jobs.submit import build_job, submit

    keys = IdempotencyKeys(store.redis, key_prefix=settings.key_prefix, ttl_seconds=settings.idempotency_ttl_seconds)
    try:
        job = build_job(request)
    except InvalidRequest as exc:
        _fail(str(exc), EXIT_USAGE)
    return submit(store=store, enqueue=enqueuer(celery_app(settings)), job=job, keys=keys, key=key)


def _would_terminate(job: Job) -> str:
    from worker.cli.output import summary_table
    from worker.jobs.model import TargetStatus

    lines = [f"dry run {job.job_id}: nothing was sent to Box", summary_table(job)]
    would = [t for t in job.targets if t.status is TargetStatus.WOULD_TERMINATE]
    lines += [f"  would terminate {t.type.value} {t.login or t.group_name} ({t.box_id})" for t in would]
    if job.approval and job.approval.required:
        lines.append("a real run would wait for approval: " + "; ".join(job.approval.reasons))
    return "\n".join(lines)


def _wait_and_exit(store: JobStore, job_id: str, *, show: Callable[[Job], str] | None = None) -> NoReturn:
    """Show progress until the job ends (or waits for approval), print it (`show`: the summary table unless
    given), and exit with its outcome."""
    from worker.cli.output import summary_table, wait_for_job

    show = show or summary_table
    final = wait_for_job(store, job_id)
    click.echo(show(final))
    if final.state is JobState.AWAITING_APPROVAL:
        click.echo(_approval_hint(final), err=True)
    sys.exit(_exit_code(final))


def _approval_hint(job: Job) -> str:
    reasons = "; ".join(job.approval.reasons if job.approval else [])
    return f"job {job.job_id} waits for approval ({reasons}); approve it with: boxcut approve {job.job_id}"


@main.command()
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Show progress until the job ends.")
def approve(job_id: str, wait: bool) -> None:
    """Approve a job that waits for approval; it then runs. Who approved, and when, is recorded."""
    from worker.jobs import actions as job_actions

    settings = _settings()
    store = _store(settings)
    try:
        job = job_actions.approve(store=store, enqueue=enqueuer(celery_app(settings)), job_id=job_id, actor=_actor())
    except (JobNotFound, InvalidTransition) as exc:
        _fail(_not_possible(job_id, exc))
    click.echo(f"approved {job.job_id} ({job.approval.approved_by if job.approval else None})")
    if wait:
        _wait_and_exit(store, job_id)


@main.command()
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Show progress until the job ends.")
def retry(job_id: str, wait: bool) -> None:
    """Send again only the targets of a job that ended `failed` or `dead` (its other targets are left alone);
    a queued, resolving or terminating job that is not moving is enqueued again."""
    from worker.jobs import actions as job_actions

    settings = _settings()
    store = _store(settings)
    try:
        done = job_actions.retry(store=store, enqueue=enqueuer(celery_app(settings)), job_id=job_id,
                                 actor=_actor())
    except (JobNotFound, InvalidTransition) as exc:
        _fail(_not_possible(job_id, exc))
    if done.restarted:
        click.echo(f"enqueued {job_id} again ({done.targets:,} targets pending)")
    elif not done.targets:
        _fail(f"job {job_id} has no failed or dead targets to retry")
    else:
        click.echo(f"retrying {done.targets:,} targets of {job_id}")
    if wait:
        _wait_and_exit(store, job_id)


@main.command()
@click.argument("job_id")
def cancel(job_id: str) -> None:
    """Cancel a job; possible until it is settled: targets still waiting to be sent are then never sent."""
    from worker.jobs import actions as job_actions

    store = _store(_settings())
    try:
        job_actions.cancel(store=store, job_id=job_id, actor=_actor())
    except (JobNotFound, InvalidTransition) as exc:
        _fail(_not_possible(job_id, exc))
    click.echo(f"cancelled {job_id}")


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the brake's state as JSON.")
@click.pass_context
def brake(ctx: click.Context, as_json: bool) -> None:
    """The brake across jobs: users terminated per source and in all within the window, the sources it holds
    and the jobs waiting for it. `boxcut brake release SOURCE` lets a source's held jobs go in one decision."""
    if ctx.invoked_subcommand is not None:
        return
    from worker.jobs import actions as job_actions
    from worker.jobs.brake import Brake

    settings = _settings()
    store = _store(settings)
    shown = job_actions.brake_status(store=store, brake=Brake.from_settings(store.redis, settings),
                                     now_ms=int(time.time() * 1000))
    from worker.cli.output import brake_table

    click.echo(json.dumps(shown, indent=2) if as_json else brake_table(shown))


@brake.command("release")
@click.argument("source")
def brake_release(source: str) -> None:
    """Release the brake for SOURCE (as `boxcut brake` lists it; `*` for every source): every job it holds for
    that source is approved, by you, and the source is not held again for the rest of the window."""
    from worker.jobs import actions as job_actions
    from worker.jobs.brake import Brake

    settings = _settings()
    store = _store(settings)
    try:
        done = job_actions.release_brake(store=store, brake=Brake.from_settings(store.redis, settings),
                                         enqueue=enqueuer(celery_app(settings)), source=source, actor=_actor())
    except InvalidTransition as exc:
        _fail(str(exc), EXIT_USAGE)
    click.echo(f"released {source} until {done.until}: {len(done.approved):,} held jobs approved"
               + (f", {len(done.skipped):,} no longer waiting" if done.skipped else ""))
    for job_id in done.approved:
        click.echo(f"  approved {job_id}")


def _not_possible(job_id: str, exc: Exception) -> str:
    return f"no job {job_id}" if isinstance(exc, JobNotFound) else str(exc)


@main.command()
def sweep() -> None:
    """Run the periodic sweep once, now: enqueue again jobs that lost their task, start senders for targets
    nobody carries, settle jobs nothing carries any more. Safe beside the workers' own sweeps."""
    from config.celery_settings import SEND_QUEUE
    from tasks import sending
    from tasks.app import enqueuer as make_enqueuer
    from worker.runtime import Runtime

    settings = _settings()
    app = celery_app(settings)

    def kick(endpoint: str, countdown: float = 0.0) -> None:
        app.send_task(sending.SEND, args=[endpoint], queue=SEND_QUEUE, countdown=countdown or None)

    found = sending.sweep(Runtime(settings).context(), kick, enqueue=make_enqueuer(app),
                          stale_job_seconds=settings.stale_job_seconds)
    click.echo(f"enqueued again: {found['requeued']} idle jobs; senders started: {found['kicked']}; "
               f"jobs settled: {found['settled']}")


@main.command()
def expire() -> None:
    """Remove now what BOXCUT_RETENTION_DAYS no longer keeps (the periodic tasks do it every hour): finished
    jobs created before the horizon, with their calls and audit trails, and older audit stream entries."""
    from worker.jobs.retention import expire as expire_old
    from worker.jobs.send_queue import SendQueue

    settings = _settings()
    history = _history(settings)
    store = history.store
    done = expire_old(store, SendQueue(store.redis, key_prefix=settings.key_prefix),
                      retention_days=settings.retention_days)
    click.echo(f"retention {settings.retention_days} days: removed {done.jobs} jobs, {done.calls} calls, "
               f"{done.audit_entries} audit stream entries from Redis")
    archive = history.readable_archive
    if archive is None:
        click.echo("archive: none made yet (the first archive pass makes the embedded file): nothing to remove")
        return
    with _archive_read():
        gone = archive.expire(created_before_us=int((time.time() - settings.retention_days * 86400) * 1_000_000))
    click.echo(f"archive ({archive.where}): removed {gone.jobs} jobs, {gone.calls} calls, "
               f"{gone.audit_entries} audit entries")


@main.command()
def migrate() -> None:
    """Bring the archive's schema (BOXCUT_ARCHIVE_URL, or the embedded SQLite file) to this version's, with
    Alembic; safe to run again. Run it before a new version's workers start."""
    from worker.archive.migrate import upgrade
    from worker.archive.store import Archive, ArchiveError

    settings = _settings()
    where = Archive(settings.archive_location).where
    try:
        before, after = upgrade(settings.archive_location)
    except ArchiveError as error:
        _fail(f"the archive cannot be migrated: {error}", EXIT_UNAVAILABLE)
    click.echo(f"archive {where}: schema {before or 'empty'} -> {after}" if before != after
               else f"archive {where}: schema at {after}, nothing to do")


@main.command(name="archive")
def archive_now() -> None:
    """Run one archive pass now (the periodic tasks run one every BOXCUT_ARCHIVE_EVERY_SECONDS): ship the audit
    stream, settle quiet finished jobs into the archive, let hot copies older than BOXCUT_HOT_DAYS go."""
    from tasks.retention import archiver
    from worker.runtime import Runtime

    settings = _settings()
    with _archive_read():
        moved = archiver(Runtime(settings).context(), settings).run()
    click.echo(f"audit entries shipped: {moved.shipped}; jobs settled: {moved.settled} "
               f"(archived only: {moved.archived_only}); hot copies evicted: {moved.evicted}; "
               f"finished jobs not quiet yet: {moved.waiting}")


@main.command()
@click.option("--since", "since", metavar="WHEN", default=None,
              help="From this time on: an ISO 8601 time (2026-12-01T00:00:00Z) or an age (90m, 24h, 7d). "
                   "[default: all that is kept]")
@click.option("--job", "job_id", metavar="JOB", default=None, help="Only this job's trail (whole).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one entry each, for shipping to a SIEM.")
def audit(since: str | None, job_id: str | None, as_json: bool) -> None:
    """Export the audit stream, oldest first: every job state change, target outcome and Box call."""
    from worker.cli.output import describe_audit_entry, parse_since

    try:
        since_ms = parse_since(since) if since else 0
    except ValueError as bad:
        _fail(f"--since: {bad}", EXIT_USAGE)
    history = _history(_settings())
    with _archive_read():
        try:
            entries = iter(history.audit(job_id)) if job_id else history.audit_since(since_ms=since_ms)
        except JobNotFound:
            _fail(f"no job {job_id}")
        for entry in entries:
            if job_id is None or int(entry["id"].partition("-")[0]) >= since_ms:
                click.echo(json.dumps(entry, separators=(",", ":")) if as_json else describe_audit_entry(entry))


@main.command()
@click.argument("job_id", required=False)
@click.option("--format", "fmt", type=click.Choice(["json", "md"]), default="json", show_default=True,
              help="json: signed (BOXCUT_REPORT_SIGNING_KEY); md: Markdown for reading, unsigned.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
              help="Write the report to this file.  [default: stdout]")
@click.option("--verify", "verify_file", metavar="FILE", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Check a JSON report: unchanged since boxcut wrote it, and signed.")
@click.option("--public-key", metavar="PEM", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --verify: the public key it must be signed by.  [default: the configured signing key's]")
@click.option("--export-public-key", is_flag=True, help="Print the PEM public key of the configured signing key.")
def report(job_id: str | None, fmt: str, output: Path | None, verify_file: Path | None, public_key: Path | None,
           export_public_key: bool) -> None:
    """Write a job's evidence report: who asked, the policy decisions and approvals, every Box call with Box's
    answer, the audit trail and activity after termination; or check one (--verify)."""
    if sum((job_id is not None, verify_file is not None, export_public_key)) != 1:
        _fail("name a JOB, or --verify FILE, or --export-public-key", EXIT_USAGE)
    if verify_file is not None:
        _verify_report(verify_file, public_key)
    elif export_public_key:
        _export_public_key()
    else:
        _write_report(str(job_id), fmt, output)


def _write_report(job_id: str, fmt: str, output: Path | None) -> None:
    from worker.jobs import evidence_signing
    from worker.jobs.report import build_report
    from worker.jobs.report_markdown import render_markdown

    settings = _settings()
    with _archive_read():
        try:
            built = build_report(_history(settings), job_id)
        except JobNotFound:
            _fail(f"no job {job_id}")
    key = evidence_signing.configured_key(settings) if fmt == "json" else None
    if fmt == "md":
        text = render_markdown(built)
    else:
        if key is None:
            click.echo("boxcut: no BOXCUT_REPORT_SIGNING_KEY: the report is unsigned, and --verify will refuse it",
                       err=True)
        text = evidence_signing.render(evidence_signing.sign(built, key))
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_bytes(text.encode("utf-8"))
        signed = f"signed by key {evidence_signing.key_id(key.public_key())}" if key else "unsigned"
        click.echo(f"wrote {output}: {fmt}, {signed}", err=True)


def _verify_report(path: Path, public_key: Path | None) -> None:
    from worker.jobs import evidence_signing

    try:
        trusted = (evidence_signing.load_trusted_key(public_key.read_bytes()) if public_key is not None
                   else evidence_signing.public_half(evidence_signing.configured_key(_settings())))
        verified = evidence_signing.verify(path.read_bytes(), trusted=trusted)
    except evidence_signing.ReportRejected as rejected:
        _fail(f"{path}: NOT VERIFIED: {rejected}")
    except OSError as unreadable:
        _fail(f"cannot read {unreadable.filename or path}: {unreadable.strerror or unreadable}", EXIT_USAGE)
    if verified.trusted:
        click.echo(f"{path}: verified: job {verified.job_id}, signed by the trusted key {verified.key_id}")
        return
    # Anyone can re-sign an edited report with a key of their own: without a trusted key, a script checking the
    # exit code must not take it for verified.
    click.echo(f"{path}: unchanged since signed by the key it carries ({verified.key_id}), job {verified.job_id}; "
               "NOT VERIFIED as boxcut's: that proves integrity, not origin. Give --public-key (or set "
               "BOXCUT_REPORT_SIGNING_KEY) to check who signed it", err=True)
    sys.exit(EXIT_UNTRUSTED)


def _export_public_key() -> None:
    from worker.jobs import evidence_signing

    key = evidence_signing.configured_key(_settings())
    if key is None:
        _fail("no BOXCUT_REPORT_SIGNING_KEY (or BOXCUT_REPORT_SIGNING_KEY_FILE) is set", EXIT_USAGE)
    click.echo(evidence_signing.public_key_pem(key), nl=False)


@main.command()
def doctor() -> None:
    """Check settings, Redis, the broker and a Box token; say what is wrong in words."""
    from worker.cli.doctor import run_checks

    ok = run_checks(load=load_settings, echo=click.echo)
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


@main.command()
@click.option("--demo", is_flag=True, help="Also run a sample job and print its record.")
@click.option("--concurrency", "-c", type=click.IntRange(1, 16), default=2, show_default=True)
def dev(demo: bool, concurrency: int) -> None:
    """Run the whole stack here: Redis and the Box simulator where none is set up, and a worker."""
    from worker.cli.dev_stack import DevStack, DevStackError

    settings = _settings()
    stack = DevStack(settings)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the children on SIGTERM too, not just Ctrl-C
    try:
        stack.start(worker_concurrency=concurrency)
        click.echo("boxcut dev is up:\n  " + "\n  ".join(stack.lines))
        _write_env_file(stack)
        click.echo(f"\ntry, in another shell:\n  {_sample_command(stack.settings, stack.simulated_box)}")
        if stack.intake is not None:
            click.echo(_sample_curl(stack.intake, stack.simulated_box))
        click.echo("stop with Ctrl-C")
        if demo:
            _demo(stack.settings, "jdoe@example.com" if stack.simulated_box else _fail_demo())
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        click.echo("\nstopping")
    except DevStackError as error:  # said, then the stack is stopped (finally)
        _fail(f"boxcut dev: {error}", EXIT_UNAVAILABLE)
    finally:
        stack.stop()


def _write_env_file(stack: DevStack) -> None:
    """Write ./boxcut-dev.env for a shell beside this one and say how to use it; only its path is shown (it holds
    tokens). A folder that cannot take it costs the file, not the stack."""
    from worker.cli.dev_stack import ENV_FILE_NAME

    try:
        path = stack.write_env_file(Path.cwd())
    except OSError as error:
        click.echo(f"\n(no {ENV_FILE_NAME} here: {error})")
        return
    click.echo(f"\nits URLs, tokens and settings are in {path} (readable by you only; removed at stop). "
               f"In another shell here:\n  . ./{ENV_FILE_NAME}")


def _sample_command(settings: Settings, simulated_box: bool) -> str:
    """A command a person can paste into another shell to reach this stack."""
    login = "jdoe@example.com" if simulated_box else "<a login>"
    beside = Path(sys.executable).with_name("boxcut")  # the venv's, when it is not on PATH
    program = shutil.which("boxcut") or (str(beside) if beside.exists() else f"{sys.executable} -m worker.cli")
    # Never the password: a URL that needs one is named without it (the shell has BOXCUT_REDIS_PASSWORD).
    env = "" if settings.redis_url == defaults.REDIS_URL else f"BOXCUT_REDIS_URL={displayable_url(settings.redis_url)} "
    if settings.key_prefix != defaults.KEY_PREFIX:  # the dev stack's own (or a chosen one): its jobs are there
        env += f"BOXCUT_KEY_PREFIX={shlex.quote(settings.key_prefix)} "
    return f"{env}{program} terminate --user {login} --reason 'trying boxcut' --wait"


def _sample_curl(access: IntakeAccess, simulated_box: bool) -> str:
    """Ready-to-paste curl commands for the dev intake: post an alert, then read the job."""
    login = "jdoe@example.com" if simulated_box else "<a login>"
    token = access.intake_token or "<one of BOXCUT_INTAKE_TOKENS>"
    operator = access.operator_token or "<one of BOXCUT_OPERATOR_TOKENS>"
    body = json.dumps({"id": f"dev-{int(time.time())}", "reason": "trying the intake",
                       "targets": [{"type": "user", "login": login}]})
    return (f"or post an alert to the intake:\n"
            f"  curl -sS -X POST {access.url}/v1/alerts -H 'Authorization: Bearer {token}' "
            f"-H 'Content-Type: application/json' -d '{body}'\n"
            f"and read the job it names:\n"
            f"  curl -sS {access.url}/v1/jobs/JOB_ID -H 'Authorization: Bearer {operator}'")


def _demo(settings: Settings, login: str) -> None:
    from worker.cli.output import describe_job, wait_for_job
    from worker.jobs.submit import JobRequest, build_job, submit

    store = _store(settings)
    request = JobRequest(targets=[{"type": "user", "login": login}], source="cli", reason="boxcut dev --demo",
                         requested_by=f"cli:{_whoami()}")
    job = submit(store=store, enqueue=enqueuer(celery_app(settings)), job=build_job(request))
    click.echo(f"\ndemo job {job.job_id}:")
    click.echo(describe_job(wait_for_job(store, job.job_id)))


def _fail_demo() -> NoReturn:
    _fail("--demo needs the simulated Box: it would end a real person's sessions", EXIT_USAGE)


def _exit_code(job: Job) -> int:
    if job.state is JobState.AWAITING_APPROVAL:
        return EXIT_AWAITING_APPROVAL
    if job.state in (JobState.SUCCEEDED, JobState.DRY_RUN):
        return EXIT_OK
    return EXIT_PARTIAL if job.state is JobState.PARTIAL else EXIT_FAILED


def _whoami() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


if __name__ == "__main__":
    main()
